"""The paper's CIFAR-10 network (4 convolutions, 2 dense layers; appendix D).

Layer for layer and name for name as in the paper's code: every ReLU and the
final softmax are separate ``Activation`` layers, so that each one can be
addressed by name (conv1 and relu1 are different layers of the analysis).
"""
from __future__ import annotations

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers

# Friendly names = Keras names for this network, from the input to the logits.
LAYERS = ("input", "conv1", "relu1", "conv2", "relu2", "pool2", "conv3", "relu3",
          "conv4", "relu4", "pool4", "flatten", "dropout5", "fc5", "relu5",
          "dropout6", "fc6")
CSC_LAYERS = ("fc6", "fc5", "conv4", "conv3", "conv2")
SANITY_LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc5", "fc6")
INPUT_RANGE = (0.0, 1.0)


def build(input_shape=(32, 32, 3), n_classes: int = 10) -> keras.Model:
    """conv1 (32, 3x3, same) relu1, conv2 (64) relu2, pool2, conv3 (128) relu3,
    conv4 (128) relu4, pool4, flatten, dropout5 (0.5), fc5 (1024) relu5,
    dropout6 (0.5), fc6 (n_classes), softmax."""
    inp = keras.Input(input_shape, name="input")
    h = inp
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        h = klayers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(h)
        h = klayers.Activation("relu", name=f"relu{i}")(h)
        if i in (2, 4):
            h = klayers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = klayers.Flatten(name="flatten")(h)
    h = klayers.Dropout(0.5, name="dropout5")(h)
    h = klayers.Dense(1024, name="fc5")(h)
    h = klayers.Activation("relu", name="relu5")(h)
    h = klayers.Dropout(0.5, name="dropout6")(h)
    h = klayers.Dense(n_classes, name="fc6")(h)
    out = klayers.Activation("softmax", name="softmax")(h)
    return keras.Model(inp, out, name="cifar_net")


def preprocess(images):
    """uint8 RGB images -> float32 in [0, 1] (the paper's CIFAR-10 scaling)."""
    return np.asarray(images, dtype=np.float32) / 255.0
