"""keras.applications networks (random weights, the smallest inputs they allow)
and tutorial-style models: which methods are refused (one message naming
every blocking layer, no graph built), and on the methods that run: finite
maps, LRP-z = gradient x input where the identity holds (ReLU networks, with
biases: the z-rule's ratio a / z is the ReLU's slope), DeepLIFT summation to
f(x) - f(0).

The refusal checks build no analyzer graph (fast). One analyzer graph of an
application takes 20-150 s on 2 shared cores, and calibrating the
BatchNormalization statistics (needed for DeepLIFT: with Keras's initial
statistics MobileNetV2's logits are ~1e-12, below deeplift's 1e-7 threshold)
takes ~100 s: LRP-z on MobileNetV2 (a ratio, scale free, no calibration) is
in the default run, the identities on all five networks run with ``-m heavy``.
"""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers import checks
from csc_analyzers.errors import InputError
from csc_analyzers.registry import ALL_METHODS, select_methods
from residual_support import layers as rlayers
from tensorflow import keras

import modern_models as mm

APPS = sorted(mm.APPLICATIONS)
#: application -> methods the checks must refuse, and a layer type named
REFUSED = {
    "MobileNetV2": ({"GuidedBP", "Deconv", "RectGrad", "DTD", "PatternAttr.", "PatternNet"},
                    "relu(max_value=6.0)"),
    "EfficientNetB0": ({"GuidedBP", "Deconv", "RectGrad", "DTD", "PatternAttr.", "PatternNet",
                        "DeepLIFT Rev.C.", "DeepLIFT Resc.", "DeepLIFT Abla."}, "swish"),
    "Xception": ({"PatternAttr.", "PatternNet"}, "SeparableConv2D"),
    "ResNet50V2": (set(), None),
    "DenseNet121": (set(), None),
}


def _refusals(model):
    found = {}
    for spec in ALL_METHODS:
        try:
            checks.check_layers(model, [spec])
            checks.check_activations(model, [spec])
        except InputError as error:
            found[spec.name] = str(error)
    return found


@pytest.mark.parametrize("name", APPS)
def test_refusals_name_every_blocking_layer(name):
    """Exactly the expected methods are refused; the gradient family and every
    LRP rule are accepted; each refusal lists every blocking layer."""
    model = mm.application(name, calibrate=False)
    refused = _refusals(model)
    expected, marker = REFUSED[name]
    assert set(refused) == expected
    for family in (rlayers.GRADIENT, rlayers.BACKPROP, rlayers.RULES):
        if family == rlayers.BACKPROP and name in ("MobileNetV2", "EfficientNetB0"):
            continue  # refused for the activations, not for layer types
        assert not rlayers.blocking_layers(model, family)
    if marker is not None:
        assert any(marker in message for message in refused.values()), refused
    if name == "EfficientNetB0":
        swish = [layer.name for layer in model.layers
                 if getattr(getattr(layer, "activation", None), "__name__", "") == "swish"]
        multiply = [layer.name for layer in model.layers if type(layer).__name__ == "Multiply"]
        for layer in swish:
            assert repr(layer) in refused["DeepLIFT Resc."]
        for layer in multiply:
            assert repr(layer) in refused["DeepLIFT Resc."]
            assert rlayers.gate_index(model.get_layer(layer)) == 1


def _float64_row(name, model, x):
    """LRP-z against gradient x input on ``name`` built in float64 with the
    weights of ``model``."""
    kwargs, size, input_range = mm.APPLICATIONS[name]
    floatx = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    try:
        wide = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=int(model.output.shape[-1]),
            classifier_activation=None, **kwargs)
        wide.set_weights([w.astype(np.float64) for w in model.get_weights()])
        return mm.method_row(select_methods("LRP-z")[0], wide, x.astype(np.float64),
                             input_range)
    finally:
        keras.backend.set_floatx(floatx)


@pytest.mark.heavy
@pytest.mark.parametrize("name", APPS)
def test_lrp_z_and_deeplift_identities(name):
    model = mm.application(name)
    x = mm.input_batch(model, mm.APPLICATIONS[name][2])
    z = mm.method_row(select_methods("LRP-z")[0], model, x, mm.APPLICATIONS[name][2])
    assert z["status"] == "runs"
    if name in ("ResNet50V2", "DenseNet121"):  # ReLU networks
        assert z["error"][1] < 1e-4, z["error"]  # measured: ResNet50V2 6.8e-5
    elif name == "Xception":
        # float32 gives 1e-3..5e-3 over its 36 separable convolutions (the error
        # depends on the random weights); the same weights in float64 give 2e-11,
        # so the rule is exact and the float32 gap is rounding
        assert np.isfinite(z["maps"]).all()
        z64 = _float64_row(name, model, x)
        assert z64["status"] == "runs" and z64["error"][1] < 1e-8, z64
    else:  # ReLU6 above 6 / swish and gates break the identity; the maps are finite
        assert np.isfinite(z["maps"]).all()
    if name != "EfficientNetB0":  # swish is not monotonic: DeepLIFT is refused there
        d = mm.method_row(select_methods("DeepLIFT Resc.")[0], model, x,
                          mm.APPLICATIONS[name][2])
        assert d["status"] == "runs" and d["error"][1] < 1e-4, d


@pytest.mark.slow
def test_mobilenet_lrp_z_is_gradient_times_input():
    """MobileNetV2 (depthwise convolutions, ReLU6, BN, Add): LRP-z runs and
    equals gradient x input (with the initial BN statistics every activation
    stays far below 6, where ReLU6 is a ReLU)."""
    model = mm.application("MobileNetV2", calibrate=False)
    x = mm.input_batch(model, mm.APPLICATIONS["MobileNetV2"][2])
    row = mm.method_row(select_methods("LRP-z")[0], model, x, mm.APPLICATIONS["MobileNetV2"][2])
    assert row["status"] == "runs" and row["error"][1] < 1e-4, row


@pytest.mark.slow
@pytest.mark.parametrize("build", sorted(mm.TUTORIALS))
def test_tutorial_models_first_call(build):
    """Every method that the checks accept runs on the first call and gives a
    finite map; LRP-z = gradient x input on the ReLU tutorials; DeepLIFT
    Rescale sums to f(x) - f(0)."""
    make, input_range = mm.TUTORIALS[build]
    model = make()
    x = mm.input_batch(model, input_range, n=2)
    names = "Gradient,SmoothGrad,Integrated Gradients,LRP-z,LRP a1b0,DeepLIFT Resc.,GuidedBP"
    rows = {spec.name: mm.method_row(spec, model, x, input_range)
            for spec in select_methods(names)}
    for name, row in rows.items():
        assert row["status"] in ("runs", "refused"), (name, row)
    for name in ("Gradient", "SmoothGrad", "Integrated Gradients"):
        assert rows[name]["status"] == "runs"
    if build == "tutorial LayerNorm":
        assert rows["LRP-z"]["status"] == "refused"
        assert "'layer_normalization', 'layer_normalization_1'" in rows["LRP-z"]["detail"]
        return
    assert rows["LRP-z"]["error"][1] < 1e-5
    assert rows["DeepLIFT Resc."]["error"][1] < 1e-5
    assert (rows["GuidedBP"]["status"] == "refused") == (build == "tutorial LeakyReLU")


def test_default_layer_names_twice_in_one_session():
    """Two models with default names in one session (Keras numbers them):
    analyzers work on the first call for both."""
    first, second = mm.tutorial_rescaling(), mm.tutorial_rescaling(seed=1)
    x = mm.input_batch(first, (0.0, 255.0))
    for model in (first, second):
        maps = csc_analyzers.create_analyzer("lrp.epsilon", model).analyze(x)
        assert np.isfinite(maps).all() and np.abs(maps).sum() > 0
    assert keras.backend.floatx() == "float32"
