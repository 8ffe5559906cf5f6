"""Shared fixtures: small Keras networks built with fixed seeds."""
import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode before any model)
from tensorflow import keras


def small_cnn(softmax: bool = False, seed: int = 0, name: str = "small_cnn"):
    """Conv-ReLU-MaxPool-Dense-ReLU-Dense on 8x8x3 inputs, weights from ``seed``."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(6, activation="relu", name="fc1")(h)
    out = keras.layers.Dense(3, activation="softmax" if softmax else None, name="fc2")(h)
    model = keras.Model(inp, out, name=name)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cnn():
    return small_cnn()


@pytest.fixture
def images(rng):
    return rng.normal(size=(2, 8, 8, 3)).astype("float32")


@pytest.fixture(autouse=True)
def fresh_graph():
    """Each test starts with an empty TF1 graph, so graphs do not pile up."""
    keras.backend.clear_session()
    yield
