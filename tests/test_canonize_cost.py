"""fold_batchnorm reads and writes the weights in a fixed number of session
runs, whatever the number of layers (one run per layer cost minutes on
ResNet-50 and MobileNetV2), and the folded model is output-equal."""
import numpy as np

import csc_analyzers  # noqa: F401  (graph mode first)
import tensorflow as tf
from tensorflow import keras

from residual_support import fold_batchnorm


def deep_bn_model(depth, seed=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((6, 6, 3))
    h = inp
    for i in range(depth):
        h = keras.layers.Conv2D(4, 3, padding="same", use_bias=i % 2 == 0, name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    model.set_weights([rng.normal(0, 0.4, w.shape).astype("float32")
                       for w in model.get_weights()])
    for layer in model.layers:  # positive BN variances
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
    return model


def session_runs_of_fold(model, monkeypatch):
    session = tf.compat.v1.keras.backend.get_session()
    calls = []
    original = type(session).run

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(session), "run", counting)
    folded = fold_batchnorm(model)
    monkeypatch.undo()
    return folded, len(calls)


def test_fold_session_runs_do_not_grow_with_depth(monkeypatch, rng):
    runs = {}
    for depth in (2, 12):
        model = deep_bn_model(depth)
        folded, runs[depth] = session_runs_of_fold(model, monkeypatch)
        assert not any(isinstance(layer, keras.layers.BatchNormalization)
                       for layer in folded.layers)
        x = rng.normal(size=(3, 6, 6, 3)).astype("float32")
        np.testing.assert_allclose(folded.predict_on_batch(x), model.predict_on_batch(x),
                                   rtol=1e-4, atol=1e-4)
    assert runs[12] == runs[2] <= 4, runs
