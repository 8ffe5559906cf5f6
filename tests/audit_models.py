"""Small Keras models saved in the three formats, for the audit tests.

Run as a script (``python tests/audit_models.py DIR``) in a process of its
own: Keras saves ``.keras`` files and SavedModels in eager mode only, and the
project runs in graph mode. Writes into DIR:

* ``cnn32.keras``: Conv-ReLU-MaxPool-Conv-ReLU-Flatten-Dense-softmax on
  32x32x3 with 10 classes (the built-in images fit it);
* ``residual.h5`` and ``residual_savedmodel/``: Conv, a residual block
  (Conv-BN + identity, Add, ReLU layer), global average pooling, Dense-softmax,
  with non-default BatchNormalization statistics;
* ``lstm.keras``: a Conv, then an LSTM over the rows of its output, then Dense;
* ``expected_weights.npz``: the saved weights, ``<file>/<index>``.

:func:`save_in_subprocess` runs it from a test.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.4, w.shape).astype("float32")
                       for w in model.get_weights()])


def cnn(keras, size=16, n_classes=3, seed=0):
    inp = keras.Input((size, size, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    out = keras.layers.Dense(n_classes, activation="softmax", name="fc")(h)
    model = keras.Model(inp, out, name="cnn")
    _randomize(model, seed)
    return model


def residual(keras, seed=1):
    """Default layer names (``add``, ``batch_normalization``...) on purpose:
    a loaded model keeps them, and the analyzers must not collide with them."""
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    s = keras.layers.Conv2D(4, 3, padding="same")(h)
    s = keras.layers.BatchNormalization()(s)
    h = keras.layers.Add()([h, s])
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inp, out, name="residual")
    set_random_weights(model.layers, np.random.default_rng(seed), keras)
    return model


def set_random_weights(layers, rng, keras) -> None:
    """Random weights from ``rng`` for every layer with weights: N(0, 0.4)
    kernels and biases, non-default BatchNormalization statistics."""
    for layer in layers:
        values = layer.get_weights()
        if not values or isinstance(layer, keras.Model):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = values
            values = [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                      rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)]
        else:
            values = [rng.normal(0, 0.4, v.shape) for v in values]
        layer.set_weights([np.asarray(v, np.float32) for v in values])


def lstm(keras, seed=2):
    inp = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.Reshape((14, 56), name="rows")(h)
    h = keras.layers.LSTM(5, name="lstm")(h)
    out = keras.layers.Dense(3, activation="softmax", name="fc")(h)
    model = keras.Model(inp, out, name="lstm_net")
    _randomize(model, seed)
    return model


def save_all(directory) -> None:
    from tensorflow import keras

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = {}
    model = cnn(keras, size=32, n_classes=10, seed=3)
    model.save(directory / "cnn32.keras")
    expected.update({f"cnn32.keras/{i}": w for i, w in enumerate(model.get_weights())})
    model = residual(keras)
    model.save(directory / "residual.h5")
    model.save(directory / "residual_savedmodel", save_format="tf")
    for name in ("residual.h5", "residual_savedmodel"):
        expected.update({f"{name}/{i}": w for i, w in enumerate(model.get_weights())})
    lstm(keras).save(directory / "lstm.keras")
    np.savez(directory / "expected_weights.npz", **expected)


def save_in_subprocess(directory) -> Path:
    """Run this script in a process of its own (eager mode) to write the
    models into ``directory``; returns ``directory``."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), str(directory)],
                   check=True, env=env, capture_output=True)
    return Path(directory)


if __name__ == "__main__":
    save_all(sys.argv[1])
