"""Tutorial-style Keras models saved as ``.keras`` and ``.h5``, for the load
and API tests; run as a script (``python tests/tutorial_models.py DIR``) in a
process of its own, in eager mode, as a user would save them.

Models (all with Keras' default layer names, as tutorials leave them):

* ``rescaling``: ``Rescaling(1/255)``, Conv-ReLU, MaxPool, Dense;
* ``leaky``: Conv with a ``LeakyReLU`` layer, Flatten, Dense;
* ``nested``: a ``Sequential`` feature block inside a functional model;
* ``residual``: Conv, Conv-BN, ``Add`` (named ``add``), a second ``Add``
  (``add_1``), global average pooling, Dense-softmax, non-default BN statistics.

Writes ``<name>.keras``, ``<name>.h5`` and ``expected.npz`` (``x`` and the
saved models' predictions ``<name>``).
"""
import sys
from pathlib import Path

import numpy as np

from audit_models import set_random_weights

SIZE = 12


def _set_weights(model, rng, keras):
    # nested models' layers too
    set_random_weights(model._flatten_layers(include_self=False), rng, keras)


def build(keras, name: str):
    layers = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    if name == "rescaling":
        h = layers.Rescaling(1 / 255)(inp)
        h = layers.Conv2D(4, 3, activation="relu")(h)
        h = layers.MaxPooling2D()(h)
        h = layers.Flatten()(h)
        out = layers.Dense(3)(h)
    elif name == "leaky":
        h = layers.Conv2D(4, 3)(inp)
        h = layers.LeakyReLU(0.1)(h)
        h = layers.Flatten()(h)
        out = layers.Dense(3)(h)
    elif name == "nested":
        block = keras.Sequential([layers.Conv2D(4, 3, activation="relu"),
                                  layers.MaxPooling2D()])
        h = block(inp)
        h = layers.Flatten()(h)
        out = layers.Dense(3)(h)
    elif name == "residual":
        h = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
        s = layers.Conv2D(4, 3, padding="same")(h)
        s = layers.BatchNormalization()(s)
        h = layers.Add()([h, s])
        t = layers.Conv2D(4, 1)(h)
        h = layers.Add()([h, t])
        h = layers.ReLU()(h)
        h = layers.GlobalAveragePooling2D()(h)
        out = layers.Dense(3, activation="softmax")(h)
    else:
        raise ValueError(name)
    return keras.Model(inp, out)


NAMES = ("rescaling", "leaky", "nested", "residual")


def save_all(directory) -> None:
    from tensorflow import keras

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    expected = {"x": x}
    for k, name in enumerate(NAMES):
        model = build(keras, name)
        _set_weights(model, np.random.default_rng(10 + k), keras)
        expected[name] = model.predict(x if name == "rescaling" else x / 255.0, verbose=0)
        model.compile(optimizer="adam", loss="mse")
        model.save(directory / f"{name}.keras")
        model.save(directory / f"{name}.h5", save_format="h5")
        model.save_weights(directory / f"{name}.weights.h5")
    np.savez(directory / "expected.npz", **expected)


if __name__ == "__main__":
    save_all(sys.argv[1])
