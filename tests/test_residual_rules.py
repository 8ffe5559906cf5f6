"""Rules through Add / BatchNormalization / pooling on a small ResNet, the
BN canonizer, the model check and the fast alpha-beta rules."""
import warnings

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers as klayers

import csc_analyzers
import innvestigate.analyzer as ianalyzer
from residual_support import UnsupportedLayerError, fold_batchnorm
from residual_support.linear import AddView, BatchNormView
from residual_support.rules import RuleSpec, apply_rule
from csc_analyzers.injection import session
from conftest import small_cnn
from residual_nets import small_resnet


@pytest.fixture
def resnet():
    return small_resnet(seed=0)


@pytest.fixture
def resnet_zero_shifts():
    return small_resnet(seed=1, zero_shifts=True)


@pytest.fixture
def x():
    return np.random.default_rng(5).normal(size=(2, 12, 12, 3)).astype("float32")


def rel_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_fold_batchnorm_small_resnet(resnet, x):
    before = [w.copy() for w in resnet.get_weights()]
    folded = fold_batchnorm(resnet)
    assert not any(isinstance(l, klayers.BatchNormalization) for l in folded.layers)
    assert sum(isinstance(l, klayers.BatchNormalization) for l in resnet.layers) == 9
    a, b = resnet.predict(x, verbose=0), folded.predict(x, verbose=0)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    after = resnet.get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(before, after))


def test_lrp_z_equals_gradient_times_input(resnet, x):
    lrp = csc_analyzers.create_analyzer("lrp.z", resnet).analyze(x)
    gxi = csc_analyzers.create_analyzer("input_t_gradient", resnet).analyze(x)
    assert rel_l2(lrp, gxi) < 1e-3


def test_rule_through_bn_equals_canonized_for_lrp_z(resnet, x):
    through = csc_analyzers.create_analyzer("lrp.z", resnet).analyze(x)
    canonized = csc_analyzers.create_analyzer("lrp.z", resnet, canonize=True).analyze(x)
    assert rel_l2(through, canonized) < 1e-3


@pytest.fixture
def resnet_conservative():
    """Zero biases and BN shifts, positive BN scales: every neuron with a
    positive output has a positive Z+, so alpha1-beta0 loses nothing."""
    return small_resnet(seed=1, zero_shifts=True, positive_scales=True)


def _explain_top_logit(model, x, name, layers):
    logits = model.predict(x, verbose=0)
    c = int(np.argmax(logits[0]))
    v = np.zeros((1, logits.shape[1]), np.float32)
    v[0, c] = logits[0, c]
    analyzer = csc_analyzers.create_analyzer(name, model, residual_rule="analyzer")
    found = analyzer.propagate(x[:1], v, from_layer="logits",
                               to_layers=layers(analyzer))
    return logits[0, c], found


@pytest.mark.parametrize("name", ["lrp.z", "lrp.alpha_1_beta_0"])
def test_conservation_with_zero_shifts(name, resnet_conservative, x):
    relevance = csc_analyzers.create_analyzer(name, resnet_conservative,
                                              residual_rule="analyzer").analyze(x)
    logits = resnet_conservative.predict(x, verbose=0).max(axis=1)
    sums = relevance.reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(sums, logits, rtol=1e-3)


def test_add_conserves_alpha1_beta0_with_mixed_sign_bn(resnet_zero_shifts, x):
    """With negative BN scales a convolution can receive relevance on an
    output whose positive part Z+ is zero (alpha1-beta0 drops it there),
    but every Add still hands its whole relevance to its two branches."""
    model = resnet_zero_shifts
    pairs = {"stage1_add": ("stage1_bn2", "stem_relu"),
             "stage2_add": ("stage2_bn2", "stage2_proj_bn"),
             "stage3_add": ("stage3_bn2", "stage3_proj_bn")}
    wanted = sorted(set(pairs) | {b for pair in pairs.values() for b in pair})
    _, found = _explain_top_logit(model, x, "lrp.alpha_1_beta_0", lambda a: wanted)
    for add, (branch, shortcut) in pairs.items():
        total = found[add].sum()
        assert total > 0
        if shortcut == "stem_relu":
            continue  # stem_relu also collects the block's own branch
        assert found[branch].sum() + found[shortcut].sum() == pytest.approx(total, rel=1e-5)


def test_alpha1_beta0_nonnegative_at_every_layer(resnet_conservative, x):
    model = resnet_conservative

    def every_layer(analyzer):
        return [name for name in analyzer.injection_layers() if name != "logits"]

    logit, found = _explain_top_logit(model, x, "lrp.alpha_1_beta_0", every_layer)
    assert logit > 0
    assert len(found) >= 30
    for name, r in found.items():
        assert r.min() >= -1e-6 * max(np.abs(r).max(), 1e-12), name
        assert r.sum() == pytest.approx(logit, rel=1e-3) or name.endswith(
            ("conv1", "bn1", "relu1", "_conv2", "_bn2", "_proj", "_proj_bn")), name
    assert found["input"].sum() == pytest.approx(logit, rel=1e-3)


def test_injection_layers_are_model_layers(resnet_zero_shifts):
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", resnet_zero_shifts)
    own = {layer.name for layer in resnet_zero_shifts.layers} | {"input"}
    assert set(analyzer.injection_layers()) <= own


def _numpy_alpha_beta(contrib, bias, alpha, beta):
    """Reference for a layer whose output j sums contrib[..., i, j] over i."""
    pos = np.where(contrib > 0, contrib, 0)
    neg = np.where(contrib < 0, contrib, 0)
    z_act = np.broadcast_to(pos.sum(-2, keepdims=True) + bias, pos.shape)
    z_inh = np.broadcast_to(neg.sum(-2, keepdims=True) + bias, neg.shape)

    def divide(a, z):
        return np.divide(a, z, out=np.zeros_like(a), where=z != 0)

    return alpha * divide(pos, z_act) - beta * divide(neg, z_inh)


@pytest.mark.parametrize("alpha,beta", [(1, 0), (2, 1), (5, 4)])
def test_add_and_batchnorm_rules_match_numpy(alpha, beta):
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]
    r = rng.uniform(0.5, 1, size=(4, 6)).astype("float32")
    spec = RuleSpec("alpha_beta", alpha=alpha, beta=beta)
    inputs = [tf.constant(v) for v in xs]
    got = apply_rule(spec, AddView(), inputs, tf.constant(r))
    inp = keras.Input((6,))
    bn = klayers.BatchNormalization()
    bn(inp)
    gamma, beta_, mean, var = (rng.normal(size=6), rng.normal(size=6),
                               rng.normal(size=6), rng.uniform(0.5, 2, 6))
    bn.set_weights([w.astype("float32") for w in (gamma, beta_, mean, var)])
    got_bn = apply_rule(spec, BatchNormView(bn), [inputs[0]], tf.constant(r))
    got_z = apply_rule(RuleSpec("z"), BatchNormView(bn), [inputs[0]], tf.constant(r))
    values = session().run(got + got_bn + got_z)
    contrib = np.stack(xs, axis=-2)  # (4, 3, 6): input i, channel j
    expected = _numpy_alpha_beta(contrib, 0.0, alpha, beta) * r[:, None, :]
    for i in range(3):
        np.testing.assert_allclose(values[i], expected[:, i], rtol=1e-5, atol=1e-6)
    k = gamma / np.sqrt(var + bn.epsilon)
    shift = beta_ - mean * k
    kx = (k * xs[0])[:, None, :]
    expected_bn = (_numpy_alpha_beta(kx, shift, alpha, beta) * r[:, None, :])[:, 0]
    np.testing.assert_allclose(values[3], expected_bn, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values[4], k * xs[0] * r / (k * xs[0] + shift), rtol=1e-4, atol=1e-5)


FAST = [
    ("lrp.alpha_1_beta_0", ianalyzer.LRPAlpha1Beta0, {}),
    ("lrp.alpha_2_beta_1", ianalyzer.LRPAlpha2Beta1, {}),
    ("lrp.alpha_beta", ianalyzer.LRPAlphaBeta, {"alpha": 5, "beta": 4}),
    ("lrp.z_plus", ianalyzer.LRPZPlus, {}),
    ("deep_taylor", ianalyzer.DeepTaylor, {}),
]


@pytest.mark.parametrize("name,reference,kwargs", FAST, ids=[f[0] for f in FAST])
def test_fast_rules_equal_innvestigate(name, reference, kwargs, images):
    cnn = small_cnn(seed=7)
    ours = csc_analyzers.create_analyzer(name, cnn, **kwargs).analyze(images)
    theirs = reference(cnn, **kwargs).analyze(images)
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def _cifar_net():
    from csc_analyzers.models import cifar_net
    from csc_analyzers.logits import logit_model
    model = logit_model(cifar_net.build())
    x = np.random.default_rng(11).uniform(0, 1, size=(2, 32, 32, 3)).astype("float32")
    return model, x


def _vgg16():
    """VGG-16 with random weights at 64x64 (every layer of the 224 network)."""
    model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3),
                                     classifier_activation=None)
    x = np.random.default_rng(12).normal(0, 50, size=(1, 64, 64, 3)).astype("float32")
    return model, x


PAPER_NETS = {"cifar-net": _cifar_net, "vgg16": _vgg16}
# on VGG-16 alpha1-beta0, z+ and Deep Taylor (10-25 s each) run by default; alpha2-beta1
# and alpha5-beta4 (about a minute each on a loaded 2-core machine) are heavy
DEFAULT_ON_VGG16 = {"lrp.alpha_1_beta_0", "lrp.z_plus", "deep_taylor"}
PAPER_CASES = [pytest.param(*case, network, id=f"{case[0]}-{network}",
                            marks=() if network == "cifar-net" or case[0] in DEFAULT_ON_VGG16
                            else pytest.mark.heavy)
               for network in PAPER_NETS for case in FAST]


@pytest.mark.parametrize("name,reference,kwargs,network", PAPER_CASES)
def test_fast_rules_equal_innvestigate_on_paper_networks(name, reference, kwargs, network):
    model, x = PAPER_NETS[network]()
    ours = csc_analyzers.create_analyzer(name, model, **kwargs).analyze(x)
    theirs = reference(model, **kwargs).analyze(x)
    assert np.abs(theirs).max() > 0
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def _with_lambda():
    inp = keras.Input((8, 8, 3))
    h = klayers.Lambda(lambda t: 2 * t, name="double")(inp)
    return keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h))), "double", "Lambda"


def _with_lstm():
    inp = keras.Input((8, 8, 3))
    h = klayers.LSTM(2, name="recurrent")(klayers.Reshape((64, 3))(inp))
    return keras.Model(inp, klayers.Dense(2)(h)), "recurrent", "LSTM"


@pytest.mark.parametrize("method", ["lrp.z", "deep_taylor"])
@pytest.mark.parametrize("build", [_with_lambda, _with_lstm])
def test_unsupported_layer_error_names_layer(method, build):
    """Rule-based methods refuse layers they have no rule for, naming the
    layer, its type and the method; the gradient runs on them (a Lambda
    layer needs innvestigate's ``allow_lambda_layers=True``)."""
    model, name, kind = build()
    with pytest.raises(UnsupportedLayerError) as info:
        csc_analyzers.create_analyzer(method, model)
    message = str(info.value)
    assert repr(name) in message and kind in message and repr(method) in message
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    gradient = csc_analyzers.create_analyzer("gradient", model, allow_lambda_layers=True)
    assert np.isfinite(gradient.analyze(x)).all()


def test_conv_transpose_runs_with_innvestigates_rule():
    """Conv2DTranspose is no longer refused: LRP-z equals innvestigate's."""
    import innvestigate

    inp = keras.Input((8, 8, 3))
    h = klayers.Conv2DTranspose(2, 3, name="upconv", activation="relu")(inp)
    model = keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h)))
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    ours = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)
    theirs = innvestigate.create_analyzer("lrp.z", model).analyze(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _bn_chain(depth):
    """``depth`` BatchNormalization layers in a row (positive scales, zero
    shifts: positive inputs stay positive), then Dense(3)."""
    inputs = keras.Input((6,))
    h = inputs
    for _ in range(depth):
        h = klayers.BatchNormalization()(h)
    return keras.Model(inputs, klayers.Dense(3)(h))


def test_relevance_overflow_warns_and_names_the_remedy():
    """alpha-beta multiplies the relevance of a BN unit with positive input by
    alpha: with alpha = 100 after 22 BN layers (1e44 > 3.4e38; alpha5-beta4
    does the same on ResNet-50's 53) float32 overflows, and analyze says why
    and what to do; LRP-z stays finite."""
    model = _bn_chain(22)
    x = np.random.default_rng(0).uniform(0.5, 1, (1, 6)).astype("float32")
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_beta", model, alpha=100, beta=99)
    with pytest.warns(RuntimeWarning, match="canonize=True"):
        result = analyzer.analyze(x)
    assert not np.isfinite(result).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert np.isfinite(csc_analyzers.create_analyzer("lrp.z", model).analyze(x)).all()
