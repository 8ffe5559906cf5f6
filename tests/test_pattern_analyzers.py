"""PatternNet / PatternAttribution: eqs. 10-11 on a linear model, identities
with the gradient, linearity of propagate, a small ResNet and VGG-16."""
import numpy as np
import pytest

import csc_analyzers
import tensorflow as tf
from tensorflow import keras

from csc_analyzers import create_analyzer
from csc_analyzers.injection import session
from csc_analyzers.pattern import estimate_patterns
from csc_analyzers.pattern.storage import pattern_layers

METHODS = ["pattern.net", "pattern.attribution"]


def test_registered():
    assert csc_analyzers.analyzers["pattern.net"].__name__ == "PatternNet"
    assert csc_analyzers.analyzers["pattern.attribution"].__name__ == "PatternAttribution"


def test_one_layer_linear_model_eqs_10_and_11(rng):
    dim = 6
    inp = keras.Input((dim,))
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(inp))
    w = rng.normal(size=(dim, 1)).astype("float32")
    b = np.array([0.7], "float32")
    model.layers[-1].set_weights([w, b])
    a = rng.normal(size=(dim, 1)).astype("float32")
    x = rng.normal(size=(3, dim)).astype("float32")
    y = x @ w + b  # (3, 1): the backward pass starts with the output value
    net = create_analyzer("pattern.net", model, patterns={"out": a}).analyze(x)
    np.testing.assert_allclose(net, y * a[:, 0], rtol=1e-5, atol=1e-6)
    attribution = create_analyzer("pattern.attribution", model, patterns={"out": a}).analyze(x)
    np.testing.assert_allclose(attribution, y * (w * a)[:, 0], rtol=1e-5, atol=1e-6)
    root = x - y * a[:, 0]  # x0 = x - a y (Kindermans et al. 2018, sec. 4.2)
    np.testing.assert_allclose(attribution, w[:, 0] * (x - root), rtol=1e-5, atol=1e-6)


def small_resnet(seed=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((10, 10, 3), name="image")
    h = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="relu1")(h)
    r = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(h)
    r = keras.layers.Conv2D(6, 3, padding="same", name="conv3")(r)
    r = keras.layers.BatchNormalization(name="bn3")(r)
    h = keras.layers.Add(name="block_add")([h, r])
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(4, name="logits")(h)
    model = keras.Model(inp, out, name="small_resnet")
    weights = []
    for weight in model.get_weights():
        weights.append(rng.normal(0, 0.5, weight.shape).astype("float32"))
    model.set_weights(weights)
    for name in ("bn1", "bn3"):  # non-default statistics, positive variance
        gamma, beta, mean, var = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([gamma, beta, mean, np.abs(var) + 0.3])
    return model


def gradient_times_max_logit(model, x):
    """Numpy-side reference: y_max * d y_max / d x with TF's own gradient."""
    top = tf.reduce_max(model.output, axis=1)
    grad = tf.gradients(top, model.input)[0]
    g, t = session().run([grad, top], {model.input: x})
    return g * t.reshape((-1,) + (1,) * (g.ndim - 1))


@pytest.mark.parametrize("builder", ["cnn", "resnet"])
def test_patterns_equal_to_weights_give_gradient_times_output(builder, rng, cnn):
    """With A = W, eq. 10 is the gradient backward pass (ReLU masks, pooling
    switches, BN scale, Add fan-out) started with the output value; with
    A = 1, eq. 11 is the same. BN and Add are thereby checked to be reversed
    as the gradient does."""
    model = cnn if builder == "cnn" else small_resnet()
    x = rng.normal(size=(2,) + tuple(model.input.shape[1:])).astype("float32")
    kernels = {layer.name: layer.get_weights()[0] for layer in pattern_layers(model)}
    ones = {name: np.ones_like(k) for name, k in kernels.items()}
    expected = gradient_times_max_logit(model, x)
    net = create_analyzer("pattern.net", model, patterns=kernels).analyze(x)
    attribution = create_analyzer("pattern.attribution", model, patterns=ones).analyze(x)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(net, expected, atol=1e-5 * scale)
    np.testing.assert_allclose(attribution, expected, atol=1e-5 * scale)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("builder", ["cnn", "resnet"])
def test_estimated_patterns_run_and_propagate_is_linear(method, builder, rng, cnn):
    model = cnn if builder == "cnn" else small_resnet()
    shape = tuple(model.input.shape[1:])
    data = [rng.normal(size=(8,) + shape).astype("float32") for _ in range(3)]
    patterns = estimate_patterns(model, data, "relu")
    analyzer = create_analyzer(method, model, patterns=patterns)
    x = rng.normal(size=(1,) + shape).astype("float32")
    heatmap = analyzer.analyze(x)
    assert heatmap.shape == x.shape and np.isfinite(heatmap).all() and np.abs(heatmap).max() > 0
    source = "fc1" if builder == "cnn" else "relu1"
    v1, v2 = (rng.normal(size=(1,) + analyzer.relevance_shape(source)) for _ in range(2))
    out = analyzer.propagate(x, np.concatenate([v1, v2, 2.0 * v1 - 3.0 * v2]), source, "input")
    r1, r2, mixed = out["input"]
    np.testing.assert_allclose(mixed, 2.0 * r1 - 3.0 * r2, atol=1e-5 * np.abs(mixed).max())
    assert np.abs(r1 - r2).max() > 0


def test_missing_or_misshaped_patterns_are_named(cnn):
    kernels = {layer.name: layer.get_weights()[0] for layer in pattern_layers(cnn)}
    partial = {k: v for k, v in kernels.items() if k != "fc1"}
    with pytest.raises(ValueError, match="fc1"):
        create_analyzer("pattern.net", cnn, patterns=partial)
    wrong = dict(kernels, fc2=np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="fc2"):
        create_analyzer("pattern.attribution", cnn, patterns=wrong)
    with pytest.raises(ValueError, match="patterns= is required"):
        create_analyzer("pattern.net", cnn)


def _conv_stack(depth: int, rng):
    inp = keras.Input((8, 8, 2))
    h = inp
    for k in range(depth):
        h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name=f"conv{k}")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(keras.layers.Flatten()(h)))
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("method", METHODS)
def test_building_does_not_run_the_session_per_layer(method, rng, monkeypatch):
    """The backward kernels are read and set in one session run each, not
    one per layer (each run while the graph grows re-sends it: 60 of 73 s of
    PatternAttribution's build on ResNet50V2); the maps are unchanged."""
    x = rng.normal(size=(2, 8, 8, 2)).astype("float32")
    counts = {}
    for depth in (2, 6):
        model = _conv_stack(depth, rng)
        patterns = {layer.name: rng.normal(size=layer.kernel.shape).astype("float32")
                    for layer in pattern_layers(model)}
        calls = []
        original = tf.compat.v1.Session.run
        monkeypatch.setattr(tf.compat.v1.Session, "run",
                            lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
        analysis = create_analyzer(method, model, patterns=patterns).analyze(x)
        monkeypatch.undo()
        counts[depth] = len(calls)
        # against the same analyzer with each kernel set in a session run of its own
        reference = create_analyzer(method, model, patterns=patterns)
        reference._reverse_model = _kernels_set_one_by_one(reference)
        np.testing.assert_array_equal(analysis, reference.analyze(x))
    assert counts[2] == counts[6], counts


def _kernels_set_one_by_one(analyzer):
    from csc_analyzers.injection import InjectionMixin

    build = InjectionMixin._reverse_model.__get__(analyzer)  # without the batched setting

    def reverse(*args, **kwargs):
        analyzer._pending_kernels = []
        found = build(*args, **kwargs)
        for variable, value in analyzer._pending_kernels:
            tf.compat.v1.keras.backend.set_value(variable, value)
        return found
    return reverse
