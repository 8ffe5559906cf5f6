"""Every registered method runs on a small CNN, VGG-16 and ResNet-50.

PatternNet / PatternAttribution get linear-estimator patterns from random
inputs (their estimation is tested in test_pattern_*.py). On the ImageNet networks (random weights, one image)
SmoothGrad and Integrated Gradients run with 2 samples instead of 50 / 64 to
keep the test short; the averaging itself is tested in test_methods_rules.py.
"""
import numpy as np
import pytest
from tensorflow import keras

import csc_analyzers
from conftest import small_cnn
from csc_analyzers.registry import ALL_METHODS, available_methods


METHODS = available_methods(ALL_METHODS)
FEW_SAMPLES = {"augment_by_n": 2, "steps": 2}


def ids(specs):
    return [spec.name for spec in specs]


def run(spec, model, x, input_range, few_samples=False, canonize=False):
    kwargs = spec.analyzer_kwargs(input_range)
    if canonize:
        kwargs["canonize"] = True
    if few_samples:
        kwargs.update({k: v for k, v in FEW_SAMPLES.items() if k in kwargs})
        if spec.analyzer == "integrated_gradients":
            kwargs["steps"] = FEW_SAMPLES["steps"]
    if spec.needs_patterns:
        from csc_analyzers.logits import logit_model
        from csc_analyzers.pattern.estimators import estimate_patterns
        low, high = input_range
        sample = np.random.default_rng(1).uniform(low, high, (32,) + x.shape[1:])
        kwargs["patterns"] = estimate_patterns(logit_model(model), [sample.astype("float32")],
                                               "linear")
    analyzer = csc_analyzers.create_analyzer(spec.analyzer, model, **kwargs)
    result = analyzer.analyze(x)
    assert result.shape == x.shape, spec.name
    assert np.isfinite(result).all(), spec.name
    assert np.abs(result).sum() > 0, spec.name
    return result


@pytest.mark.parametrize("spec", METHODS, ids=ids(METHODS))
def test_method_runs_on_small_cnn(spec, images):
    run(spec, small_cnn(softmax=True), images, (-3.0, 3.0))


def test_registry_covers_the_methods_innvestigate_lacks():
    keys = {spec.analyzer for spec in METHODS}
    assert {"rectgrad", "smoothgrad.seeded", "lrp.cmp_alpha_1_beta_0", "lrp.cmp_alpha_2_beta_1",
            "excitation_backprop", "excitation_backprop.contrastive", "lrp.contrastive",
            "integrated_gradients"} <= keys


@pytest.fixture(autouse=True)
def fresh_graph():
    """The ImageNet networks live for a whole module: no graph reset per test."""
    yield


# VGG-16 at 64 x 64: the same layers as at 224 x 224, but fc1 has 2048 x 4096
# weights instead of 25088 x 4096. innvestigate's rules copy every weight they
# touch into new variables, and all analyzers of a module share one graph, so
# at 224 x 224 the copies of fc1 alone would take several GB.
# ResNet-50 (global average pooling) runs at its real input size.
NETWORKS = {
    "vgg16": lambda: keras.applications.VGG16(weights=None, input_shape=(64, 64, 3)),
    "resnet50": lambda: keras.applications.ResNet50(weights=None),
}


# alpha5-beta4 multiplies the relevance of every BN unit by 5 or -4: through
# ResNet-50's 53 BN layers it overflows float32 (README, "Residual networks");
# with BN folded into the convolutions (canonize=True) the map is finite
OVERFLOWS = {("resnet50", "LRP a5b4")}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def imagenet_net(request):
    keras.backend.clear_session()
    model = NETWORKS[request.param]()
    shape = (1,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
    yield request.param, model, x
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("spec", METHODS, ids=ids(METHODS))
def test_method_runs_on_imagenet_network(spec, imagenet_net):
    name, model, x = imagenet_net
    if not spec.runs_on(name):
        pytest.skip(f"{spec.name} is excluded from {name} in the registry")
    if (name, spec.name) in OVERFLOWS:
        with pytest.warns(RuntimeWarning, match="canonize=True"), pytest.raises(AssertionError):
            run(spec, model, x, (-1.0, 1.0), few_samples=True)
        run(spec, model, x, (-1.0, 1.0), few_samples=True, canonize=True)
        return
    run(spec, model, x, (-1.0, 1.0), few_samples=True)
