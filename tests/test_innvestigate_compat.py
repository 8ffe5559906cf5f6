"""innvestigate compatibility: every name of innvestigate 2.1.2's analyzer
table gives innvestigate's numbers on every layer type innvestigate handles,
except the documented deviations (:mod:`csc_analyzers.deviations`), which
are asserted to differ in the documented way; save / load keeps the
project's class and numbers."""
import innvestigate
import innvestigate.analyzer as ianalyzer
import numpy as np
import pytest
from tensorflow import keras
from tensorflow.keras import layers as klayers

import csc_analyzers
from csc_analyzers.deviations import DEVIATIONS, deviations_markdown
from csc_analyzers.factory import INNVESTIGATE_ANALYZERS

NAMES = sorted(INNVESTIGATE_ANALYZERS)
#: constructor arguments a name needs
KWARGS = {
    "lrp": {"rule": "Z"},
    "lrp.alpha_beta": {"alpha": 3, "beta": 2},
    "deep_taylor.bounded": {"low": -1.0, "high": 1.0},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"augment_by_n": 4},
}
#: random analyzers: compared where the randomness cancels (see below)
RANDOM = {"random", "smoothgrad"}
LRP_NAMES = [n for n in NAMES if n.startswith("lrp")]


def _seeded(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def plain_cnn():
    """Conv, MaxPooling2D, AveragePooling2D, Activation, Flatten, Dropout, Dense."""
    x = keras.Input((8, 8, 2))
    h = klayers.Conv2D(3, 3, padding="same", activation="relu")(x)
    h = klayers.MaxPooling2D()(h)
    h = klayers.Conv2D(4, 2, padding="same")(h)
    h = klayers.Activation("relu")(h)
    h = klayers.AveragePooling2D()(h)
    h = klayers.Flatten()(h)
    h = klayers.Dropout(0.5)(h)
    h = klayers.Dense(5, activation="relu")(h)
    return _seeded(keras.Model(x, klayers.Dense(3)(h), name="plain_cnn"), 1)


def residual_net():
    """Add, Concatenate, GlobalAveragePooling2D."""
    x = keras.Input((6, 6, 2))
    h = klayers.Conv2D(3, 3, padding="same", activation="relu")(x)
    branch = klayers.Conv2D(3, 3, padding="same", activation="relu")(h)
    h2 = klayers.Activation("relu")(klayers.Add()([h, branch]))
    h2 = klayers.Concatenate()([h2, h])
    h2 = klayers.GlobalAveragePooling2D()(h2)
    return _seeded(keras.Model(x, klayers.Dense(3)(h2), name="residual_net"), 2)


def _bn_stats(bn, rng):
    c = bn.gamma.shape[0]
    bn.set_weights([rng.uniform(0.5, 2.0, c).astype("float32"),
                    rng.normal(0, 0.5, c).astype("float32"),
                    rng.normal(0, 0.5, c).astype("float32"),
                    rng.uniform(0.3, 3.0, c).astype("float32")])


def bn_net():
    """Dense -> BatchNormalization (non-default statistics) -> ReLU -> Dense."""
    x = keras.Input((5,))
    h = klayers.Dense(4)(x)
    bn = klayers.BatchNormalization()
    h = klayers.Activation("relu")(bn(h))
    model = _seeded(keras.Model(x, klayers.Dense(3)(h), name="bn_net"), 3)
    _bn_stats(bn, np.random.default_rng(3))
    return model


def bn_as_dense(model):
    """``bn_net`` with its BatchNormalization written as the exact Dense
    layer ``diag(k) x + b`` (k = gamma / sqrt(var + eps), b = beta - mean k)."""
    dense1, bn, dense2 = [l for l in model.layers if l.weights]
    gamma, beta, mean, var = bn.get_weights()
    k = gamma / np.sqrt(var + bn.epsilon)
    x = keras.Input((5,))
    h = klayers.Dense(4)(x)
    affine = klayers.Dense(4)  # no activation: Deep Taylor's W**2 layer, as its BN rule
    out = klayers.Dense(3)(klayers.Activation("relu")(affine(h)))
    twin = keras.Model(x, out, name="bn_as_dense")
    twin.set_weights(dense1.get_weights() + [np.diag(k), beta - mean * k]
                     + dense2.get_weights())
    return twin


def all_layers_net(separable=True):
    """Every layer type of the three nets above in one model (one analyzer
    build per name): Conv2D, MaxPooling2D, DepthwiseConv2D, SeparableConv2D,
    Conv2DTranspose, UpSampling2D, Add, Activation, Concatenate,
    AveragePooling2D, GlobalAveragePooling2D, Flatten, Dropout, Dense.
    ``separable=False`` writes the SeparableConv2D as its two factors, a
    DepthwiseConv2D and a 1x1 Conv2D (the same function)."""
    x = keras.Input((6, 6, 2))
    h = klayers.Conv2D(3, 3, padding="same", activation="relu")(x)
    h = klayers.MaxPooling2D()(h)
    h = klayers.DepthwiseConv2D(2, padding="same", activation="relu")(h)
    if separable:
        h = klayers.SeparableConv2D(3, 2, padding="same", activation="relu")(h)
    else:
        h = klayers.DepthwiseConv2D(2, padding="same", use_bias=False)(h)
        h = klayers.Conv2D(3, 1, activation="relu")(h)
    h = klayers.Conv2DTranspose(3, 2, padding="same", activation="relu")(h)
    h = klayers.UpSampling2D()(h)
    branch = klayers.Conv2D(3, 3, padding="same", activation="relu")(h)
    added = klayers.Activation("relu")(klayers.Add()([h, branch]))
    h = klayers.Concatenate()([added, h])
    pooled = klayers.AveragePooling2D()(h)
    flat = klayers.Dropout(0.5)(klayers.Flatten()(pooled))
    glob = klayers.GlobalAveragePooling2D()(h)
    h = klayers.Concatenate()([klayers.Dense(4, activation="relu")(flat), glob])
    return _seeded(keras.Model(x, klayers.Dense(3)(h), name="all_layers"), 6)


def modern_net():
    """DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, UpSampling2D."""
    x = keras.Input((6, 6, 2))
    h = klayers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    h = klayers.SeparableConv2D(3, 3, padding="same", activation="relu")(h)
    h = klayers.Conv2DTranspose(2, 3, strides=1, padding="same", activation="relu")(h)
    h = klayers.UpSampling2D()(h)
    h = klayers.Flatten()(h)
    return _seeded(keras.Model(x, klayers.Dense(3)(h), name="modern_net"), 4)


def linear_net():
    x = keras.Input((6,))
    return _seeded(keras.Model(x, klayers.Dense(3)(klayers.Dense(4)(x)), name="linear"), 5)


BUILDERS = {"plain_cnn": plain_cnn, "residual_net": residual_net, "bn_net": bn_net,
            "modern_net": modern_net, "linear": linear_net, "all_layers": all_layers_net,
            "all_layers_factored": lambda: all_layers_net(separable=False)}


class _Nets(dict):
    """Models built on first use in the test's graph (conftest clears the
    Keras session before every test), inputs uniform in [-1, 1] (seeded)."""

    def __missing__(self, name):
        model = bn_as_dense(self["bn_net"]) if name == "bn_as_dense" else BUILDERS[name]()
        self[name] = model
        return model


class _Inputs(dict):
    def __init__(self, models):
        super().__init__()
        self._models = models

    def __missing__(self, name):
        shape = (2,) + tuple(self._models[name].input_shape[1:])
        self[name] = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
        return self[name]


@pytest.fixture
def nets():
    models = _Nets()
    return models, _Inputs(models)


#: model checks the layers helper's branch lifts (modern layers): off on both sides
UNCHECKED = {"modern_net", "all_layers", "all_layers_factored"}
#: names whose rule splits weights by sign: on SeparableConv2D they deviate
#: (csc_analyzers.deviations: the rule on the layer's one linear map), so they
#: are compared on the same net with the separable layer written as its factors
SIGN_SPLITTING = {"deep_taylor", "deep_taylor.bounded", "lrp.alpha_1_beta_0",
                  "lrp.alpha_1_beta_0_IB", "lrp.alpha_2_beta_1", "lrp.alpha_2_beta_1_IB",
                  "lrp.alpha_beta", "lrp.sequential_preset_a", "lrp.sequential_preset_a_flat",
                  "lrp.sequential_preset_b", "lrp.sequential_preset_b_flat",
                  "lrp.sequential_preset_b_flat_until_idx", "lrp.z_plus", "lrp.z_plus_fast"}


def _both(name, model, x, **extra):
    kwargs = dict(KWARGS.get(name, {}), **extra)
    ours = csc_analyzers.create_analyzer(name, model, **kwargs).analyze(x)
    theirs = innvestigate.create_analyzer(name, model, **kwargs).analyze(x)
    return np.asarray(ours), np.asarray(theirs)


def _close(a, b):
    return np.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("net", ["all_layers"])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in RANDOM])
def test_equals_innvestigate(nets, name, net):
    """Equal numbers on Conv / Dense / max and average pooling / Add /
    Concatenate / Flatten / Dropout / Activation / depthwise, separable and
    transposed convolutions / upsampling (``plain_cnn``, ``residual_net`` and
    ``modern_net`` hold the same layers apart, to locate a difference)."""
    models, inputs = nets
    if name in SIGN_SPLITTING:
        net = "all_layers_factored"
    extra = {"disable_model_checks": True} if net in UNCHECKED else {}
    ours, theirs = _both(name, models[net], inputs[net], **extra)
    assert np.isfinite(theirs).all()
    assert _close(ours, theirs), np.abs(ours - theirs).max()


def _separable_and_composite():
    """A SeparableConv2D net and the same net with one Conv2D whose kernel is
    the composite depthwise x pointwise kernel (the same linear map)."""
    def build(layer):
        x = keras.Input((5, 5, 2))
        h = layer(x)
        return keras.Model(x, klayers.Dense(3)(klayers.Flatten()(h)))
    sep = _seeded(build(klayers.SeparableConv2D(3, 2, depth_multiplier=2, padding="same",
                                                activation="relu")), 11)
    conv = build(klayers.Conv2D(3, 2, padding="same", activation="relu"))
    depthwise, pointwise, bias, dense_w, dense_b = sep.get_weights()
    kh, kw, cin, mult = depthwise.shape
    kernel = np.einsum("hwcm,cmo->hwco", depthwise,
                       pointwise[0, 0].reshape(cin, mult, -1))
    conv.set_weights([kernel, bias, dense_w, dense_b])
    return sep, conv


@pytest.mark.parametrize("name", ["lrp.alpha_2_beta_1", "lrp.z_plus", "deep_taylor"])
def test_separable_conv_deviation_is_the_rule_on_the_composite_kernel(name):
    """The documented deviation: a sign-splitting rule on SeparableConv2D
    equals innvestigate's rule on the equivalent Conv2D; innvestigate itself
    splits each factor by sign and gives other numbers."""
    sep, conv = _separable_and_composite()
    x = np.random.default_rng(3).uniform(-1, 1, (2, 5, 5, 2)).astype("float32")
    np.testing.assert_allclose(sep.predict(x, verbose=0), conv.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    kwargs = dict(KWARGS.get(name, {}))
    ours = csc_analyzers.create_analyzer(name, sep, **kwargs).analyze(x)
    reference = innvestigate.create_analyzer(name, conv, **kwargs).analyze(x)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    theirs = innvestigate.create_analyzer(name, sep, disable_model_checks=True,
                                          **kwargs).analyze(x)
    assert not _close(ours, theirs)


#: names whose innvestigate analyzer raises on a model with BatchNormalization
#: (graph mode: the gradient family and Deep Taylor fail to build the analyzer
#: model, Keras history through BN's training branch; LRP without a BN rule
#: fails in BatchNormalizationReverseLayer on a BN after a Dense layer)
INNVESTIGATE_FAILS_ON_BN = {"deconvnet", "deep_taylor", "deep_taylor.bounded", "gradient",
                            "guided_backprop", "input_t_gradient",
                            "integrated_gradients", "lrp"}
#: LRP names whose BN rule innvestigate computes on its wrongly fused layer
#: (the documented deviation); the other LRP names give innvestigate's numbers
#: (flat / W**2 / z+ rules do not see the fusing error; the presets keep
#: innvestigate's own BN mapping)
BN_DEVIATION = {"lrp.z", "lrp.epsilon", "lrp.alpha_beta", "lrp.alpha_1_beta_0",
                "lrp.alpha_2_beta_1"}
#: innvestigate's own class in both tables: fails on BN in graph mode in both
BOTH_FAIL_ON_BN = {"gradient.baseline"}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in RANDOM])
def test_batch_normalization(nets, name):
    """With BatchNormalization: innvestigate's numbers where innvestigate
    computes them correctly; where it fails or (LRP) fuses BN wrongly, the
    numbers of innvestigate on the same model with BN written as the exact
    Dense layer diag(k) x + b."""
    models, inputs = nets
    if name in BOTH_FAIL_ON_BN:
        for module in (csc_analyzers, innvestigate):
            with pytest.raises(Exception):
                module.create_analyzer(name, models["bn_net"]).analyze(inputs["bn_net"])
        return
    ours = csc_analyzers.create_analyzer(name, models["bn_net"], **KWARGS.get(name, {}))
    ours = np.asarray(ours.analyze(inputs["bn_net"]))
    if name in INNVESTIGATE_FAILS_ON_BN:
        with pytest.raises(Exception):
            innvestigate.create_analyzer(name, models["bn_net"],
                                         **KWARGS.get(name, {})).analyze(inputs["bn_net"])
    else:
        theirs = np.asarray(innvestigate.create_analyzer(
            name, models["bn_net"], **KWARGS.get(name, {})).analyze(inputs["bn_net"]))
        assert _close(ours, theirs) != (name in BN_DEVIATION), np.abs(ours - theirs).max()
    if name in INNVESTIGATE_FAILS_ON_BN or name in BN_DEVIATION:
        exact = np.asarray(innvestigate.create_analyzer(
            name, models["bn_as_dense"], **KWARGS.get(name, {})).analyze(inputs["bn_net"]))
        assert _close(ours, exact), np.abs(ours - exact).max()


def test_batch_normalization_hand_example():
    """Input -> BN -> Dense(1, no bias): the exact LRP-z map is w k x; innvestigate's
    fused layer uses k' = gamma / sqrt(var**2 + eps), b' = beta - mean / sqrt(var**2 + eps)."""
    x_in = keras.Input((3,))
    bn = klayers.BatchNormalization(epsilon=1e-3)
    dense = klayers.Dense(1, use_bias=False)
    model = keras.Model(x_in, dense(bn(x_in)))
    gamma, beta = np.array([2.0, -1.0, 1.5], "f"), np.array([0.1, 0.2, -0.3], "f")
    mean, var = np.array([0.5, 1.0, -0.5], "f"), np.array([1.0, 0.25, 4.0], "f")
    bn.set_weights([gamma, beta, mean, var])
    dense.set_weights([np.array([[1.0], [1.0], [-0.5]], "f")])
    x = np.array([[1.0, 1.0, 2.0]], "f")
    w = dense.get_weights()[0][:, 0]
    k = gamma / np.sqrt(var + 1e-3)
    y = k * (x[0] - mean) + beta
    exact = w * k * x[0]
    np.testing.assert_allclose(exact, [1.999, -1.996, -0.750], atol=1e-3)  # by hand
    k_wrong = gamma / np.sqrt(var ** 2 + 1e-3)
    b_wrong = beta - mean / np.sqrt(var ** 2 + 1e-3)
    wrong = w * y * k_wrong * x[0] / (k_wrong * x[0] + b_wrong)
    ours = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)[0]
    theirs = innvestigate.create_analyzer("lrp.z", model).analyze(x)[0]
    np.testing.assert_allclose(ours, exact, rtol=1e-5)
    np.testing.assert_allclose(theirs, wrong, rtol=1e-4)
    np.testing.assert_allclose(theirs, [1.374, 0.103, -1.027], atol=1e-3)  # the README's
    assert np.abs(theirs - exact).max() > 0.1


def test_residual_rule_analyzer_differs_on_pooling_and_add(nets):
    """residual_rule="analyzer" (the paper's handling) is the option that
    changes the numbers: alpha2-beta1 through the global average pooling
    after a ReLU doubles the relevance."""
    models, inputs = nets
    model, x = models["residual_net"], inputs["residual_net"]
    default = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model).analyze(x)
    explicit = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model,
                                             residual_rule="innvestigate").analyze(x)
    own = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model,
                                        residual_rule="analyzer").analyze(x)
    np.testing.assert_array_equal(default, explicit)
    assert not _close(own, default)
    with pytest.raises(ValueError, match="residual_rule"):
        csc_analyzers.create_analyzer("lrp.z", model, residual_rule="paper-ish")


def test_registry_methods_use_the_analyzer_rule():
    from csc_analyzers.registry import ALL_METHODS
    for spec in ALL_METHODS:
        cls = csc_analyzers.analyzers[spec.analyzer]
        if hasattr(cls, "default_residual_rule"):
            assert spec.kwargs.get("residual_rule", cls.default_residual_rule) == "analyzer", \
                spec.name


def test_deep_taylor_negative_logit_deviation(nets):
    """deep_taylor explains a negative logit (innvestigate: zeros); relu_output=True
    gives innvestigate's map."""
    models, inputs = nets
    model, x = models["plain_cnn"], inputs["plain_cnn"]
    logits = model.predict(x, verbose=0)
    index = int(np.argmin(logits[0]))
    assert logits[0, index] < 0
    kwargs = {"neuron_selection_mode": "index"}
    theirs = innvestigate.create_analyzer("deep_taylor", model, **kwargs).analyze(
        x[:1], neuron_selection=index)
    ours = csc_analyzers.create_analyzer("deep_taylor", model, **kwargs).analyze(
        x[:1], neuron_selection=index)
    relu = csc_analyzers.create_analyzer("deep_taylor", model, relu_output=True,
                                         **kwargs).analyze(x[:1], neuron_selection=index)
    assert not theirs.any() and ours.sum() < 0
    np.testing.assert_array_equal(relu, theirs)


def test_random_analyzers(nets):
    """random is innvestigate's class; smoothgrad equals innvestigate's on a linear
    model (the gradient does not depend on the noise) and its noise has the
    documented standard deviation noise_scale (innvestigate: 1)."""
    assert csc_analyzers.analyzers["random"] is ianalyzer.Random
    models, inputs = nets
    ours, theirs = _both("smoothgrad", models["linear"], inputs["linear"])
    assert _close(ours, theirs)
    analyzer = csc_analyzers.create_analyzer("smoothgrad", models["linear"], noise_scale=0.3,
                                             augment_by_n=4000, seed=1)
    analyzer._rng = np.random.default_rng(1)
    samples = analyzer._samples(np.zeros(6, "float32"))
    assert abs(samples.std() - 0.3) < 0.01


@pytest.mark.parametrize("name", ["integrated_gradients", "smoothgrad", "gradient", "lrp.z"])
def test_neuron_selection_all(nets, name):
    """neuron_selection_mode "all" as innvestigate (smoothgrad on a linear model)."""
    models, inputs = nets
    net = "linear" if name == "smoothgrad" else "plain_cnn"
    ours, theirs = _both(name, models[net], inputs[net], neuron_selection_mode="all")
    assert _close(ours, theirs)


@pytest.mark.parametrize("name", sorted(csc_analyzers.analyzers))
def test_save_load_round_trip(nets, name, tmp_path):
    models, inputs = nets
    model, x = models["plain_cnn"], inputs["plain_cnn"]
    if name != "deep_lift.wrapper":  # deeplift's converter needs a convnet
        model, x = models["linear"], inputs["linear"]
    kwargs = dict(KWARGS.get(name, {}))
    if name.startswith("pattern."):
        from csc_analyzers.pattern.estimators import estimate_patterns
        kwargs["patterns"] = estimate_patterns(model, [x], estimator="linear")
    if name == "smoothgrad.seeded":
        kwargs.update(augment_by_n=3, noise_scale=0.2, seed=4)
    if name == "smoothgrad":
        kwargs.update(noise_scale=0.2, seed=4)
    if name.startswith("lrp.sequential_preset") or name.startswith("lrp.cmp"):
        kwargs["epsilon"] = 0.3  # not saved by innvestigate 2.1.2 itself
    analyzer = csc_analyzers.create_analyzer(name, model, **kwargs)
    before = analyzer.analyze(x)
    loaded = type(analyzer).load(*analyzer.save())
    analyzer.save_npz(tmp_path / "saved.npz")
    from_file = csc_analyzers.load_analyzer_npz(tmp_path / "saved.npz")
    for other in (loaded, from_file):
        assert type(other) is type(analyzer)
        assert hasattr(other, "propagate") == hasattr(analyzer, "propagate")
        if name != "random":
            np.testing.assert_allclose(other.analyze(x), before, rtol=1e-5, atol=1e-6)


def test_deviations_table():
    table = deviations_markdown()
    assert table.count("\n") == len(DEVIATIONS) + 2  # header, rule, one line each
    assert "[1.374, 0.103, -1.027]" in table and "[1.999, -1.996, -0.750]" in table
    assert "noise_scale" in table and "relu_output=True" in table


def test_softmax_deviation():
    """A softmax output: innvestigate refuses it; the project analyses the
    logits, equal to innvestigate on innvestigate.model_wo_softmax(model)."""
    x_in = keras.Input((6,))
    model = _seeded(keras.Model(x_in, klayers.Dense(3, activation="softmax")(
        klayers.Dense(4, activation="relu")(x_in))), 7)
    x = np.random.default_rng(7).uniform(-1, 1, (2, 6)).astype("float32")
    with pytest.raises(Exception):
        innvestigate.create_analyzer("lrp.z", model).analyze(x)
    ours = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)
    theirs = innvestigate.create_analyzer("lrp.z", innvestigate.model_wo_softmax(model))
    assert _close(ours, theirs.analyze(x))


def test_relu_layer_and_padding_deviations():
    """keras ReLU layers: innvestigate's LRP refuses them, the project gives the
    map of the same model with Activation("relu"). Bounded Deep Taylor behind
    ZeroPadding2D: the project applies z^B to the first convolution
    (innvestigate: z+), so the maps differ."""
    def net(relu_layer, padding):
        x_in = keras.Input((6, 6, 2))
        h = klayers.ZeroPadding2D()(x_in) if padding else x_in
        h = klayers.Conv2D(3, 3)(h)
        h = klayers.ReLU()(h) if relu_layer else klayers.Activation("relu")(h)
        return _seeded(keras.Model(x_in, klayers.Dense(2)(klayers.Flatten()(h))), 8)

    x = np.random.default_rng(8).uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    with_relu, with_activation = net(True, False), net(False, False)
    with pytest.raises(Exception):
        innvestigate.create_analyzer("lrp.z", with_relu).analyze(x)
    ours = csc_analyzers.create_analyzer("lrp.z", with_relu).analyze(x)
    assert _close(ours, innvestigate.create_analyzer("lrp.z", with_activation).analyze(x))
    padded = net(False, True)
    bounds = {"low": -1.0, "high": 1.0}
    ours = csc_analyzers.create_analyzer("deep_taylor.bounded", padded, **bounds).analyze(x)
    theirs = innvestigate.create_analyzer("deep_taylor.bounded", padded, **bounds).analyze(x)
    assert not _close(ours, theirs)
