"""GuidedBP and Deconv against innvestigate's own analyzers, RectGrad on a
convolutional network with max pooling against numpy.

The project's GuidedBP and Deconv are innvestigate's classes with relevance
injection and residual support composed on; their maps must stay
innvestigate's, on the paper's CIFAR net (random weights) and on a small
convolutional network. innvestigate's Deconv cannot run on separate Keras
``ReLU`` layers (the project maps them itself): there the reference is
innvestigate on the same network written with ``Activation("relu")`` layers.
"""
import numpy as np
import pytest

import csc_analyzers  # (graph mode before innvestigate builds anything)
import innvestigate
from csc_analyzers.logits import logit_model
from tensorflow import keras
from numpy_nets import Linear, MaxPool, ReLU, forward, layers_of, random_weights

L = keras.layers


def small_conv_net(seed=41, relu_layers=False):
    """conv(same)-ReLU-pool-conv-ReLU-flatten-dense-ReLU-dense on 10x10x3; the
    ReLUs fused into the layers, or (``relu_layers``) separate ``ReLU`` layers."""
    def relu(h, layer):
        if relu_layers:
            return L.ReLU(name=f"{layer.name}_relu")(layer(h))
        return L.Activation("relu", name=f"{layer.name}_relu")(layer(h))
    inp = keras.Input((10, 10, 3), name="image")
    h = relu(inp, L.Conv2D(6, 3, padding="same", name="conv1"))
    h = L.MaxPooling2D(name="pool1")(h)
    h = relu(h, L.Conv2D(8, 3, name="conv2"))
    h = L.Flatten(name="flatten")(h)
    h = relu(h, L.Dense(16, name="fc1"))
    out = L.Dense(5, name="fc2")(h)
    return random_weights(keras.Model(inp, out, name="small_conv"), seed)


def cifar_net_random():
    from csc_analyzers.models import cifar_net
    model = cifar_net.build()
    return logit_model(random_weights(model, 42))


def _relative_error(got, expected):
    scale = np.abs(expected).max()
    assert scale > 0
    return np.abs(got - expected).max() / scale


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("net", ["small", "cifar"])
def test_equals_innvestigate(method, net):
    model = small_conv_net() if net == "small" else cifar_net_random()
    rng = np.random.default_rng(43)
    x = rng.normal(size=(3,) + tuple(model.input_shape[1:])).astype("float32")
    ours = csc_analyzers.create_analyzer(method, model).analyze(x)
    theirs = innvestigate.create_analyzer(method, model).analyze(x)
    assert _relative_error(ours, theirs) <= 1e-5
    if method == "deconvnet":  # Deconv is not the gradient (nor GuidedBP)
        gradient = innvestigate.create_analyzer("gradient", model).analyze(x)
        assert _relative_error(ours, gradient) > 0.1


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_separate_relu_layers_equal_innvestigate_on_activation_layers(method):
    """On separate ``ReLU`` layers the project's maps equal innvestigate's
    maps of the same network written with ``Activation("relu")`` layers."""
    with_relu_layers = small_conv_net(seed=44, relu_layers=True)
    with_activations = small_conv_net(seed=44)
    x = np.random.default_rng(45).normal(size=(3, 10, 10, 3)).astype("float32")
    ours = csc_analyzers.create_analyzer(method, with_relu_layers).analyze(x)
    theirs = innvestigate.create_analyzer(method, with_activations).analyze(x)
    assert _relative_error(ours, theirs) <= 1e-5


def numpy_rectgrad(steps, x, q, g, top=None):
    """RectGrad of the gradient ``g`` set at the output of step ``top - 1``
    (default: the network output) down to the input: at every ReLU the
    gradient is kept where a * g, a the ReLU output, exceeds its q-th
    percentile over the layer (numpy's linear interpolation) and zeroed
    elsewhere; max pooling passes the gradient to the window's arg max."""
    acts = forward(steps, x)
    top = len(steps) if top is None else top
    for i in reversed(range(top)):
        step = steps[i]
        if isinstance(step, Linear):
            g = g @ step.matrix
        elif isinstance(step, ReLU):
            score = acts[i + 1] * g
            g = np.where(score > np.percentile(score, q, axis=1, keepdims=True), g, 0.0)
        elif isinstance(step, MaxPool):
            routed = np.zeros_like(acts[i])
            rows = np.broadcast_to(np.arange(len(g))[:, None], g.shape)
            np.add.at(routed, (rows, step.argmax(acts[i])), g)
            g = routed
    return g.reshape(np.shape(x))


def rectgrad_net(seed):
    """conv(same, fused ReLU)-pool-conv-flatten-dense-dense on 10x10x3."""
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        L.Conv2D(6, 3, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(name="pool1"),
        L.Conv2D(8, 3, activation="relu", name="conv2"),
        L.Flatten(name="flatten"),
        L.Dense(16, activation="relu", name="fc1"),
        L.Dense(5, name="fc2")])
    return random_weights(model, seed)


@pytest.mark.parametrize("q", [50, 90, 98])
def test_rectgrad_on_a_conv_net_equals_numpy(q):
    """q >= 50 keeps the threshold >= 0 in these layers (most scores are 0), so
    the gradient routed through a pooling window of dead units (a tie) never
    passes a ReLU: the reference does not depend on tie-breaking."""
    model = rectgrad_net(46)
    x = np.random.default_rng(47).normal(size=(4, 10, 10, 3)).astype("float32")
    steps = layers_of(model)
    classes = np.argmax(model.predict(x, verbose=0), axis=1)
    expected = numpy_rectgrad(steps, x, q, np.eye(5)[classes])
    analyzer = csc_analyzers.create_analyzer("rectgrad", model, percentile=q)
    assert _relative_error(analyzer.analyze(x), expected) <= 1e-5
    # propagate from fc1 (what RectGrad's CSC uses): rectified at fc1's ReLU and below
    v = np.random.default_rng(48).normal(size=(4, 16))
    injected = analyzer.propagate(x, v.astype("float32"), "fc1", "input")["input"]
    fc1_relu = len(steps) - 2
    assert isinstance(steps[fc1_relu], ReLU)
    assert _relative_error(injected, numpy_rectgrad(steps, x, q, v, top=fc1_relu + 1)) <= 1e-5


def test_rectgrad_percentile_changes_the_map():
    model = rectgrad_net(46)
    x = np.random.default_rng(47).normal(size=(2, 10, 10, 3)).astype("float32")
    maps = [csc_analyzers.create_analyzer("rectgrad", model, percentile=q).analyze(x)
            for q in (50, 98)]
    assert np.count_nonzero(maps[1]) < np.count_nonzero(maps[0])
