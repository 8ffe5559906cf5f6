"""DeepLIFT (Rescale, RevealCancel and the paper's ablation without cross
multipliers) against a numpy implementation written from Shrikumar et al.
(2017) and deeplift 0.6.13's layer code, on a Dense/ReLU network and a
convolutional network with max pooling.

The numpy version (:func:`numpy_deeplift`) chains multipliers backwards:

* linear layer (Dense, or a convolution written as a matrix M): an input unit
  with a positive delta receives m+ through M+ and m- through M-, one with a
  negative delta m- through M+ and m+ through M- (the ablation drops the two
  terms through M-), one with a zero delta the mean of m+ and m- through M;
  positive and negative multipliers of the input are the same;
* ReLU, Rescale: m * (y - y0) / (z - z0), the gradient at the reference where
  z - z0 is (nearly) zero;
* ReLU, RevealCancel: with d the delta of the linear layer's input, the
  pre-activation delta is split into dz+ = M+ d+ + M- d- and dz- = M+ d- + M- d+,
  dy+ = (f(z0 + dz+) - f(z0) + f(z0 + dz- + dz+) - f(z0 + dz-)) / 2 and dy-
  symmetric, and m+ <- m+ dy+ / dz+, m- <- m- dy- / dz- (deeplift adds a
  pseudocount of 1e-7 to |dz| < 5e-8);
* max pooling: the project's interpolating rule (a = arg max of x, b of x0 in
  the window; t = (x_a - x_b) / ((x_a - x_b) + (x0_b - x0_a)), 1 if that is 0;
  multipliers to a times t and to b times 1 - t).

The input contributions are m * (x - x0).

Where dz+ or dz- is (nearly) zero deeplift's RevealCancel ratio is float32
rounding noise: it adds the pseudocount 1e-7 to dz and computes
f(z0 + 1e-7) - f(z0) in float32, so the ratio is some multiple of the ulp of
z0 over 1e-7, not 1. The tests choose networks and inputs where no split is
below 1e-5 (:func:`smallest_split` asserts it), so the comparison is between
definitions, not roundings.
"""
import numpy as np
import pytest
from tensorflow import keras

from csc_analyzers.methods.deeplift_wrapper import DeepLiftAnalyzer
from deeplift_nets import cifar_like_net
from numpy_nets import Linear, MaxPool, ReLU, forward, layers_of, random_weights

PSEUDOCOUNT = 1e-7
MODES = {"reveal_cancel": ("reveal_cancel", True), "rescale": ("rescale", True),
         "ablation": ("rescale", False)}


def _pseudocount(t):
    near = np.abs(t) < 0.5 * PSEUDOCOUNT
    return t + PSEUDOCOUNT * near * np.where(t >= 0, 1.0, -1.0)


def _linear_multipliers(pos, neg, matrix, delta, cross):
    m_pos, m_neg = np.maximum(matrix, 0), np.minimum(matrix, 0)
    into_pos = pos @ m_pos + (neg @ m_neg if cross else 0.0)
    into_neg = neg @ m_pos + (pos @ m_neg if cross else 0.0)
    into_zero = 0.5 * (pos + neg) @ matrix
    return np.where(delta > 0, into_pos, np.where(delta < 0, into_neg, into_zero))


def _reveal_cancel_scales(linear, d_in, z0):
    """dy+/dz+ and dy-/dz- of a ReLU fed by ``linear`` whose input delta is ``d_in``."""
    dz_pos, dz_neg = (_pseudocount(dz) for dz in _splits(linear, d_in))
    f = ReLU()
    dy_pos = 0.5 * (f(z0 + dz_pos) - f(z0) + f(z0 + dz_neg + dz_pos) - f(z0 + dz_neg))
    dy_neg = 0.5 * (f(z0 + dz_neg) - f(z0) + f(z0 + dz_pos + dz_neg) - f(z0 + dz_pos))
    return dy_pos / dz_pos, dy_neg / dz_neg


def _rescale_scale(z, z0):
    dz = z - z0
    near = np.abs(dz) < PSEUDOCOUNT
    return np.where(near, (z0 > 0).astype(float),
                    (np.maximum(z, 0) - np.maximum(z0, 0)) / np.where(near, 1.0, dz))


def _maxpool_multipliers(pool, mxts, a, a0):
    rows = np.arange(len(a))[:, None]
    ia, ib = pool.argmax(a), pool.argmax(a0)
    rise = a[rows, ia] - a[rows, ib]
    total = rise + a0[rows, ib] - a0[rows, ia]
    t = np.where(total > 0, rise / np.where(total > 0, total, 1.0), 1.0)
    out = np.zeros_like(a)
    batch = np.broadcast_to(rows, ia.shape)
    np.add.at(out, (batch, ia), t * mxts)
    np.add.at(out, (batch, ib), (1 - t) * mxts)
    return out


def _splits(linear, d_in):
    d_pos, d_neg = np.maximum(d_in, 0), np.minimum(d_in, 0)
    w_pos, w_neg = np.maximum(linear.matrix, 0), np.minimum(linear.matrix, 0)
    return d_pos @ w_pos.T + d_neg @ w_neg.T, d_neg @ w_pos.T + d_pos @ w_neg.T


def smallest_split(steps, x, x0):
    """The smallest |dz+|, |dz-| over the ReLUs of the network."""
    acts, refs = forward(steps, x), forward(steps, x0)
    return min(np.abs(np.concatenate(_splits(steps[i - 1], acts[i - 1] - refs[i - 1]))).min()
               for i, step in enumerate(steps) if isinstance(step, ReLU))


def numpy_deeplift(steps, x, x0, mxts_out, mode, cross):
    """Input contributions (shape of ``x``) for the output multipliers ``mxts_out``."""
    acts, refs = forward(steps, x), forward(steps, x0)
    pos = neg = np.asarray(mxts_out, np.float64)
    for i in reversed(range(len(steps))):
        step, a, a0 = steps[i], acts[i], refs[i]
        if isinstance(step, Linear):
            pos = neg = _linear_multipliers(pos, neg, step.matrix, a - a0, cross)
        elif isinstance(step, ReLU) and mode == "rescale":
            scale = _rescale_scale(a, a0)
            pos, neg = pos * scale, neg * scale
        elif isinstance(step, ReLU):
            scale_pos, scale_neg = _reveal_cancel_scales(steps[i - 1], acts[i - 1] - refs[i - 1],
                                                         a0)
            pos, neg = pos * scale_pos, neg * scale_neg
        elif isinstance(step, MaxPool):
            pos = _maxpool_multipliers(step, pos, a, a0)
            neg = _maxpool_multipliers(step, neg, a, a0)
    delta = (np.asarray(x, np.float64) - np.asarray(x0, np.float64)).reshape(len(x), -1)
    return (pos * delta).reshape(np.shape(x))


def dense_net(seed=21):
    model = keras.Sequential([keras.Input((9,)),
                              keras.layers.Dense(24, activation="relu", name="fc1"),
                              keras.layers.Dense(20, activation="relu", name="fc2"),
                              keras.layers.Dense(4, name="fc3")])
    return random_weights(model, seed, scale=0.6)


NETS = {"dense": (dense_net, (9,), "fc3"),
        "conv": (lambda: cifar_like_net(seed=22, softmax=False), (16, 16, 3), "fc7")}


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    x0 = rng.normal(0, 0.4, size=(3,) + shape).astype(np.float32)
    return x, x0, rng


def _assert_close(got, expected, what):
    scale = np.abs(expected).max()
    assert scale > 0, what
    error = np.abs(got - expected).max() / scale
    assert error <= 2e-4, f"{what}: max error {error:.2e} of the largest score"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("net", sorted(NETS))
def test_deeplift_equals_numpy(net, mode):
    build, shape, logits = NETS[net]
    model = build()
    steps = layers_of(model)
    x, x0, rng = _inputs(shape, 24)
    assert smallest_split(steps, x, x0) > 1e-5
    nonlinear, cross = MODES[mode]
    analyzer = DeepLiftAnalyzer(model, nonlinear_mode=nonlinear, cross_mxts=cross,
                                reference=x0, neuron_selection_mode="index")
    n_out = model.output_shape[-1]
    for k in (0, n_out - 1):
        expected = numpy_deeplift(steps, x, x0, np.eye(n_out)[[k] * len(x)], nonlinear, cross)
        _assert_close(analyzer.analyze(x, neuron_selection=k), expected, f"{mode} logit {k}")
    v = rng.normal(size=(len(x), n_out))
    expected = numpy_deeplift(steps, x, x0, v, nonlinear, cross)
    _assert_close(analyzer.propagate(x, v.astype(np.float32), logits, "input")["input"],
                  expected, f"{mode} propagate")


@pytest.mark.parametrize("net", sorted(NETS))
def test_reveal_cancel_differs_from_rescale_and_the_ablation(net):
    """The three modes give clearly different maps on the same input (the
    numpy references differ, and so do the analyzers)."""
    build, shape, _ = NETS[net]
    model = build()
    steps = layers_of(model)
    x, x0, _ = _inputs(shape, 28)
    assert smallest_split(steps, x, x0) > 1e-5
    onehot = np.eye(model.output_shape[-1])[[1] * len(x)]
    maps = {}
    for mode, (nonlinear, cross) in MODES.items():
        analyzer = DeepLiftAnalyzer(model, nonlinear_mode=nonlinear, cross_mxts=cross,
                                    reference=x0, neuron_selection_mode="index")
        maps[mode] = analyzer.analyze(x, neuron_selection=1).astype(np.float64)
        keras.backend.clear_session()
        model = build()
    for a, b in [("reveal_cancel", "rescale"), ("rescale", "ablation")]:
        difference = np.linalg.norm(maps[a] - maps[b]) / np.linalg.norm(maps[b])
        assert difference > 0.05, (a, b, difference)
        reference_difference = np.linalg.norm(
            numpy_deeplift(steps, x, x0, onehot, *MODES[a])
            - numpy_deeplift(steps, x, x0, onehot, *MODES[b]))
        assert reference_difference > 0.05 * np.linalg.norm(maps[b])
