"""DeepLIFT rules: summation-to-delta, the linear rule and its ablation against
numpy, linearity of injection, and the paper's convergence finding."""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.methods.deeplift_wrapper import DeepLiftAnalyzer, reference_for
from conftest import small_cnn
from deeplift_nets import cifar_like_net, logits_of, small_resnet

from tensorflow import keras

NETS = {"cifar": (cifar_like_net, "fc7", ["conv3", "pool1", "flatten", "fc6"]),
        "resnet": (small_resnet, "dense", ["pad", "pool1", "block1_add", "block2_add", "gap"])}


def _close_to_delta(total, delta):
    """|sum of scores - delta| <= 1e-3 |delta| + 1e-5, element-wise."""
    return np.abs(total - delta) <= 1e-3 * np.abs(delta) + 1e-5


@pytest.mark.parametrize("mode", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_summation_to_delta(net, mode):
    build, logits_layer, inner = NETS[net]
    model = build(seed=11)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    array_reference = rng.normal(0, 0.3, size=(1, 16, 16, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer(
        "deep_lift.wrapper", model, nonlinear_mode=mode, neuron_selection_mode="index")
    fx = logits_of(model, x)
    for reference in ["zeros", ("blur", 1.5), array_reference]:
        fx0 = logits_of(model, reference_for(x, reference))
        for k in (0, 4, 9):
            delta = fx[:, k] - fx0[:, k]
            scores = analyzer.analyze(x, neuron_selection=k, reference=reference)
            assert scores.shape == x.shape
            total = scores.reshape(len(x), -1).sum(axis=1)
            assert np.all(_close_to_delta(total, delta)), (reference, k, total, delta)
        # the contributions of every layer that cuts the graph sum to the same delta (k = 4)
        onehot = np.repeat(np.eye(10, dtype=np.float32)[4:5], len(x), axis=0)
        layers = analyzer.propagate(x, onehot, logits_layer, inner, reference=reference)
        for name, contributions in layers.items():
            total = contributions.reshape(len(x), -1).sum(axis=1)
            delta = fx[:, 4] - fx0[:, 4]
            assert np.all(_close_to_delta(total, delta)), (reference, name, total, delta)


@pytest.mark.parametrize("mode", ["rescale", "reveal_cancel"])
def test_propagate_is_linear_and_matches_analyze(mode):
    model = cifar_like_net(seed=13)
    analyzer = DeepLiftAnalyzer(model, nonlinear_mode=mode, neuron_selection_mode="index",
                                reference=("blur", 1.0))
    rng = np.random.default_rng(14)
    x = rng.normal(size=(1, 16, 16, 3)).astype(np.float32)
    shape = analyzer.relevance_shape("conv4")
    v = rng.normal(size=(2,) + shape).astype(np.float32)
    mixed = 0.7 * v[:1] - 1.9 * v[1:]
    out = analyzer.propagate(x, np.concatenate([v, mixed]), "conv4", ["input", "conv2"])
    for name, r in out.items():
        np.testing.assert_allclose(r[2], 0.7 * r[0] - 1.9 * r[1], rtol=1e-4,
                                   atol=1e-5 * np.abs(r).max())
    onehot = np.eye(10, dtype=np.float32)[[2]]
    injected = analyzer.propagate(x, onehot, "logits", "input")["input"]
    np.testing.assert_allclose(injected, analyzer.analyze(x, neuron_selection=2),
                               rtol=1e-5, atol=1e-7)


def _linear_rule(pos, neg, kernel, delta, cross):
    """Multipliers of a dense layer's input (deeplift's linear rule; without
    the two terms through negative weights if not ``cross``)."""
    k_pos, k_neg = np.maximum(kernel, 0), np.minimum(kernel, 0)
    into_pos = pos @ k_pos.T + (neg @ k_neg.T if cross else 0)
    into_neg = neg @ k_pos.T + (pos @ k_neg.T if cross else 0)
    into_zero = 0.5 * (pos + neg) @ kernel.T
    return np.where(delta > 0, into_pos, np.where(delta < 0, into_neg, into_zero))


def _numpy_deeplift(x, x0, w1, b1, w2, b2, mxts_out, cross):
    """Rescale DeepLIFT on dense-relu-dense: input contributions for the
    output multipliers ``mxts_out``, and the hidden layer's contributions."""
    z, z0 = x @ w1 + b1, x0 @ w1 + b1
    h, h0 = np.maximum(z, 0), np.maximum(z0, 0)
    m_h = _linear_rule(mxts_out, mxts_out, w2, h - h0, cross)
    scale = np.where(np.abs(z - z0) < 1e-7, (z0 > 0).astype(float),
                     (h - h0) / np.where(np.abs(z - z0) < 1e-7, 1.0, z - z0))
    m_z = m_h * scale
    m_x = _linear_rule(m_z, m_z, w1, x - x0, cross)
    return m_x * (x - x0), m_h * (h - h0)


@pytest.mark.parametrize("cross", [True, False], ids=["rescale", "ablation"])
def test_one_hidden_layer_matches_numpy(cross):
    rng = np.random.default_rng(15)
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(9, activation="relu",
                                                                    name="fc1"),
                              keras.layers.Dense(4, name="fc2")])
    w1, b1 = rng.normal(size=(7, 9)), rng.normal(0, 0.5, size=9)
    w2, b2 = rng.normal(size=(9, 4)), rng.normal(0, 0.5, size=4)
    model.set_weights([w.astype(np.float32) for w in (w1, b1, w2, b2)])
    x = rng.normal(size=(5, 7)).astype(np.float32)
    x0 = rng.normal(0, 0.5, size=(5, 7)).astype(np.float32)
    x0[:, :2] = x[:, :2]  # zero deltas take the average rule
    analyzer = DeepLiftAnalyzer(model, cross_mxts=cross, neuron_selection_mode="index",
                                reference=x0)
    x64, x064 = x.astype(np.float64), x0.astype(np.float64)
    for k in range(4):
        onehot = np.eye(4)[[k] * 5]
        expected, _ = _numpy_deeplift(x64, x064, w1, b1, w2, b2, onehot, cross)
        np.testing.assert_allclose(analyzer.analyze(x, neuron_selection=k), expected,
                                   rtol=1e-4, atol=1e-5)
    v = rng.normal(size=(5, 4))
    expected_input, expected_hidden = _numpy_deeplift(x64, x064, w1, b1, w2, b2, v, cross)
    out = analyzer.propagate(x, v, "fc2", ["input", "fc1"])
    np.testing.assert_allclose(out["input"], expected_input, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["fc1"], expected_hidden, rtol=1e-4, atol=1e-5)


def _median_pairwise_cosine(vectors):
    """Median absolute cosine similarity over all pairs of rows. A rank-1
    chain C = c g^T maps v_i to (g^T v_i) c, whose sign is random: aligned
    vectors have |cos| = 1 (the baseline of the CSC metric is |cos| too)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    gram = np.abs(unit @ unit.T)
    return np.median(gram[np.triu_indices(len(vectors), k=1)])


def test_ablation_converges_and_rescale_does_not():
    """The paper's finding (section 2.2): on a deep random ReLU chain, random
    vectors injected at the output align at the input for DeepLIFT Abla.
    (|cosine similarity| -> 1), not for DeepLIFT Resc."""
    rng = np.random.default_rng(16)
    width, depth = 32, 10
    model = keras.Sequential(
        [keras.Input((width,))]
        + [keras.layers.Dense(width, activation="relu", name=f"fc{i}") for i in range(depth)]
        + [keras.layers.Dense(10, name="logits")])
    model.set_weights([rng.normal(0, np.sqrt(2.0 / w.shape[0]) if w.ndim == 2 else 0.1,
                                  w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(8, width)).astype(np.float32)
    vectors = rng.normal(size=(5, 10)).astype(np.float32)
    medians = {}
    for cross in (True, False):
        analyzer = DeepLiftAnalyzer(model, cross_mxts=cross)
        per_image = [_median_pairwise_cosine(
            analyzer.propagate(x[i:i + 1], vectors, "logits", "input")["input"])
            for i in range(len(x))]
        medians[cross] = np.median(per_image)
    print("median |cos| at the input:", medians)
    assert medians[False] > 0.99, medians
    assert medians[True] < 0.8, medians


def test_maxpool_rules():
    """With a reference constant in every pooling window (zeros, valid
    convolutions) the interpolating max-pool rule is deeplift's gradient rule;
    with a blurred reference only the interpolating rule sums to delta."""
    model = small_cnn(seed=17)
    x = np.random.default_rng(18).normal(size=(4, 8, 8, 3)).astype(np.float32)
    gradient = DeepLiftAnalyzer(model, maxpool_mode="gradient", neuron_selection_mode="index")
    exact = DeepLiftAnalyzer(model, neuron_selection_mode="index")
    np.testing.assert_allclose(gradient.analyze(x, 1), exact.analyze(x, 1), rtol=1e-5, atol=1e-7)
    blur = ("blur", 2.0)
    delta = logits_of(model, x)[:, 1] - logits_of(model, reference_for(x, blur))[:, 1]
    exact_total = exact.analyze(x, 1, reference=blur).reshape(4, -1).sum(1)
    gradient_total = gradient.analyze(x, 1, reference=blur).reshape(4, -1).sum(1)
    assert np.all(_close_to_delta(exact_total, delta))
    assert not np.all(_close_to_delta(gradient_total, delta))
