"""``alpha_beta_bias``: the two bias conventions of the alpha-beta rule, each
against a numpy reference on a Dense and a Conv2D layer with bias, and the
option's validation, reach and save / load."""
import contextlib

import numpy as np
import pytest
from tensorflow import keras
from tensorflow.keras import layers as klayers

import csc_analyzers
from residual_support import ResidualRulesMixin
from residual_support.rules import BIAS_CONVENTIONS, RuleSpec
from residual_nets import small_resnet

SEEDS = (0, 1, 2)
ALPHA_BETA = [("lrp.alpha_1_beta_0", 1.0, 0.0), ("lrp.alpha_2_beta_1", 2.0, 1.0)]


def reference_alpha_beta(x, matrix, bias, relevance, alpha, beta, convention):
    """Alpha-beta relevance of the inputs of ``z = x @ matrix + bias``.

    ``x`` (n, I), ``matrix`` (I, J), ``bias`` (J,), ``relevance`` (n, J).
    Contributions c_ij = x_i w_ij split into p = max(c, 0), q = min(c, 0);
    "shared": Z+_j = sum_i p_ij + b_j, Z-_j = sum_i q_ij + b_j;
    "split": Z+_j = sum_i p_ij + max(b_j, 0), Z-_j = sum_i q_ij + min(b_j, 0);
    R_i = sum_j (alpha p_ij / Z+_j - beta q_ij / Z-_j) R_j, a zero Z giving 0.
    """
    x, matrix, bias, relevance = (np.asarray(a, np.float64) for a in (x, matrix, bias, relevance))
    c = x[:, :, None] * matrix[None]
    p, q = np.maximum(c, 0.0), np.minimum(c, 0.0)
    if convention == "shared":
        b_act, b_inh = bias, bias
    else:
        b_act, b_inh = np.maximum(bias, 0.0), np.minimum(bias, 0.0)
    z_act = p.sum(axis=1) + b_act
    z_inh = q.sum(axis=1) + b_inh
    s_act = np.divide(relevance, z_act, out=np.zeros_like(z_act), where=z_act != 0)
    s_inh = np.divide(relevance, z_inh, out=np.zeros_like(z_inh), where=z_inh != 0)
    return alpha * (p * s_act[:, None, :]).sum(-1) - beta * (q * s_inh[:, None, :]).sum(-1)


def conv_as_matrix(kernel, in_shape):
    """The matrix (H*W*C_in, H'*W'*C_out) of a 'valid', stride-1 Conv2D."""
    kh, kw, cin, cout = kernel.shape
    h, w, _ = in_shape
    oh, ow = h - kh + 1, w - kw + 1
    matrix = np.zeros((h, w, cin, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            matrix[i:i + kh, j:j + kw, :, i, j, :] = kernel
    return matrix.reshape(h * w * cin, oh * ow * cout)


def _dense_model(rng, relu_before):
    inp = keras.Input((5,), name="x")
    h = klayers.ReLU(name="relu")(inp) if relu_before else inp
    out = klayers.Dense(4, name="out")(h)
    model = keras.Model(inp, out)
    model.get_layer("out").set_weights([rng.normal(size=(5, 4)).astype("float32"),
                                        rng.normal(0, 1.0, size=4).astype("float32")])
    return model


def _conv_model(rng, relu_before):
    inp = keras.Input((5, 5, 2), name="x")
    h = klayers.ReLU(name="relu")(inp) if relu_before else inp
    h = klayers.Conv2D(3, 3, name="conv")(h)
    out = klayers.Dense(2, name="head")(klayers.Flatten()(h))
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([rng.normal(size=(3, 3, 2, 3)).astype("float32"),
                                         rng.normal(0, 1.0, size=3).astype("float32")])
    return model


@pytest.mark.parametrize("convention", BIAS_CONVENTIONS)
@pytest.mark.parametrize("name,alpha,beta", ALPHA_BETA, ids=[a[0] for a in ALPHA_BETA])
@pytest.mark.parametrize("layer", ["dense", "conv"])
@pytest.mark.parametrize("relu_before", [False, True], ids=["signed-x", "relu-x"])
@pytest.mark.parametrize("seed", SEEDS)
def test_alpha_beta_bias_equals_numpy_reference(convention, name, alpha, beta, layer,
                                                relu_before, seed):
    rng = np.random.default_rng(seed)
    if layer == "dense":
        model, from_layer = _dense_model(rng, relu_before), "out"
        x = rng.normal(size=(3, 5)).astype("float32")
        kernel, bias = model.get_layer("out").get_weights()
        matrix = kernel
    else:
        model, from_layer = _conv_model(rng, relu_before), "conv"
        x = rng.normal(size=(3, 5, 5, 2)).astype("float32")
        kernel, bias = model.get_layer("conv").get_weights()
        matrix = conv_as_matrix(kernel, (5, 5, 2))
        bias = np.tile(bias, matrix.shape[1] // bias.size)
    out_shape = model.get_layer(from_layer).output.shape[1:]
    relevance = rng.normal(size=(3,) + tuple(out_shape)).astype("float32")
    analyzer = csc_analyzers.create_analyzer(name, model, alpha_beta_bias=convention)
    got = analyzer.propagate(x, relevance, from_layer=from_layer, to_layers="input")["input"]
    x_in = np.maximum(x, 0) if relu_before else x
    expected = reference_alpha_beta(x_in.reshape(3, -1), matrix, bias,
                                    relevance.reshape(3, -1), alpha, beta, convention)
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(got.reshape(3, -1), expected, rtol=1e-4, atol=1e-5 * scale)
    # the conventions differ where a bias goes to a pass it is left out of
    # (a negative one to the activator, a positive one to the inhibitor)
    if not ((bias < 0).any() or (beta > 0 and (bias > 0).any())):
        return
    other = "split" if convention == "shared" else "shared"
    other_expected = reference_alpha_beta(x_in.reshape(3, -1), matrix, bias,
                                          relevance.reshape(3, -1), alpha, beta, other)
    assert np.abs(other_expected - expected).max() > 1e-3 * scale


def test_default_is_shared_and_equal_to_innvestigate():
    import innvestigate.analyzer as ianalyzer
    rng = np.random.default_rng(4)
    model = _conv_model(rng, relu_before=False)
    x = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    default = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model)
    shared = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model, alpha_beta_bias="shared")
    theirs = ianalyzer.LRPAlpha2Beta1(model).analyze(x)
    assert default._alpha_beta_bias == "shared"
    np.testing.assert_array_equal(default.analyze(x), shared.analyze(x))
    assert np.abs(default.analyze(x) - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_split_through_batchnorm_equals_numpy_reference():
    """BN as k x + b per channel under the split convention (its own rule path)."""
    from residual_support.linear import BatchNormView
    from residual_support.rules import apply_rule
    from csc_analyzers.injection import session
    import tensorflow as tf
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 6)).astype("float32")
    r = rng.normal(size=(4, 6)).astype("float32")
    inp = keras.Input((6,))
    bn = klayers.BatchNormalization()
    bn(inp)
    gamma, shift0, mean, var = (rng.normal(size=6), rng.normal(size=6),
                                rng.normal(size=6), rng.uniform(0.5, 2, 6))
    bn.set_weights([w.astype("float32") for w in (gamma, shift0, mean, var)])
    k = gamma / np.sqrt(var + bn.epsilon)
    shift = shift0 - mean * k
    for convention in BIAS_CONVENTIONS:
        spec = RuleSpec("alpha_beta", alpha=2.0, beta=1.0, bias_convention=convention)
        got = session().run(apply_rule(spec, BatchNormView(bn), [tf.constant(x)],
                                       tf.constant(r)))[0]
        # BN is diagonal: input i feeds only output i, the matrix is diag(k) per sample
        expected = np.stack([reference_alpha_beta(x[n:n + 1], np.diag(k), shift, r[n:n + 1],
                                                  2.0, 1.0, convention)[0]
                             for n in range(len(x))])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("bad", ["paper", "Split", "", None, 1, True])
def test_bad_convention_is_rejected_by_name(bad):
    model = _dense_model(np.random.default_rng(0), relu_before=False)
    with pytest.raises(ValueError, match=r"lrp.alpha_2_beta_1: alpha_beta_bias=.*'shared'.*'split'"):
        csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model, alpha_beta_bias=bad)
    with pytest.raises(ValueError, match="alpha_beta_bias"):
        RuleSpec("alpha_beta", bias_convention=bad)


def test_option_survives_save_and_load():
    model = _dense_model(np.random.default_rng(0), relu_before=False)
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model, alpha_beta_bias="split")
    state = analyzer._get_state()
    assert state["alpha_beta_bias"] == "split"
    kwargs = type(analyzer)._state_to_kwargs(dict(state))
    assert kwargs["alpha_beta_bias"] == "split"
    x = np.random.default_rng(1).normal(size=(2, 5)).astype("float32")
    loaded = type(analyzer)(**kwargs)
    np.testing.assert_array_equal(loaded.analyze(x), analyzer.analyze(x))
    old_state = {k: v for k, v in state.items() if k != "alpha_beta_bias"}
    assert type(analyzer)._state_to_kwargs(old_state)["alpha_beta_bias"] == "shared"


BIASED = ["lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.cmp_alpha_1_beta_0",
          "lrp.cmp_alpha_2_beta_1", "lrp.sequential_preset_a", "lrp.sequential_preset_b"]
BIAS_FREE = ["lrp.z_plus", "excitation_backprop", "excitation_backprop.contrastive",
             "lrp.contrastive", "deep_taylor"]


@pytest.mark.parametrize("name", BIASED + BIAS_FREE + ["lrp.alpha_beta"])
def test_option_reaches_every_alpha_beta_analyzer(name):
    """On a ResNet with biases and BN shifts the convention changes the map of
    every analyzer with a biased alpha-beta rule (kernels, Add / BN) and
    nothing for the bias-free ones."""
    model = small_resnet(seed=0)
    x = np.random.default_rng(5).normal(size=(1, 12, 12, 3)).astype("float32")
    kwargs = {"alpha": 3, "beta": 2} if name == "lrp.alpha_beta" else {}
    maps = {}
    for convention in BIAS_CONVENTIONS:
        analyzer = csc_analyzers.create_analyzer(name, model, alpha_beta_bias=convention,
                                                 **kwargs)
        assert isinstance(analyzer, ResidualRulesMixin)
        maps[convention] = analyzer.analyze(x)
        assert np.isfinite(maps[convention]).all()
    difference = np.abs(maps["split"] - maps["shared"]).max()
    if name in BIAS_FREE:
        assert difference == 0
    else:
        assert difference > 1e-3 * np.abs(maps["shared"]).max()


def test_split_refuses_a_layer_it_cannot_compute():
    inp = keras.Input((5, 5, 2))
    h = klayers.Conv2DTranspose(2, 2, name="upconv")(inp)
    model = keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h)))
    x = np.zeros((1, 5, 5, 2), np.float32)
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model,
                                             alpha_beta_bias="split", disable_model_checks=True)
    with pytest.raises(ValueError, match="upconv"):
        analyzer.analyze(x)


def _excitation_sums(model, canonize):
    x = np.random.default_rng(5).normal(size=(3, 12, 12, 3)).astype("float32")
    with _maybe_warns(canonize):
        analyzer = csc_analyzers.create_analyzer("excitation_backprop", model, canonize=canonize)
    return analyzer.analyze(x).reshape(len(x), -1).sum(axis=1)


def _maybe_warns(canonize):
    if canonize:
        return contextlib.nullcontext()
    return pytest.warns(UserWarning, match="canonize=True")


def test_excitation_backprop_conservation_as_documented():
    """Zero biases and BN shifts, BN scales of both signs: Excitation BP sums
    to 1 with BN folded (canonize=True) and loses relevance through the BN
    layers (with a warning); with positive scales both modes sum to 1."""
    mixed = small_resnet(seed=1, zero_shifts=True)
    np.testing.assert_allclose(_excitation_sums(mixed, True), 1.0, rtol=1e-5)
    through_bn = _excitation_sums(mixed, False)
    assert (through_bn <= 1 + 1e-5).all() and through_bn.min() < 0.99
    positive = small_resnet(seed=1, zero_shifts=True, positive_scales=True)
    for canonize in (False, True):
        np.testing.assert_allclose(_excitation_sums(positive, canonize), 1.0, rtol=1e-5)
    # with BN shifts and biases the folded network loses only the relevance of
    # units positive by their bias alone: less than through the BN layers
    shifted = small_resnet(seed=0)
    folded, unfolded = _excitation_sums(shifted, True), _excitation_sums(shifted, False)
    assert (folded <= 1 + 1e-5).all() and (unfolded < folded).all()
