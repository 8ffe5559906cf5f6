"""A small ResNet for 32x32 images: the residual case with trained weights.

Stem convolution, then three stages of basic blocks (two 3x3 convolutions,
each followed by BatchNormalization). The first block of stages 2 and 3
halves the resolution and uses a projection shortcut (1x1 convolution with
stride 2 + BatchNormalization); all other blocks use the identity shortcut.
Every block ends in ``Add`` then ReLU. Global average pooling, one Dense
layer and a separate softmax finish the network.

Friendly names follow the ResNet-50 scheme of the paper's figures: ``conv1``
for the stem convolution, ``block{s}_{b}`` for the ReLU after the ``Add`` of
block ``b`` in stage ``s`` (stages are numbered 2, 3, 4), ``conv{s}_{b}a`` /
``conv{s}_{b}b`` for the convolutions inside a block, ``conv{s}_{b}s`` for a
projection shortcut, ``avgpool`` and ``dense``. Keras names equal the
friendly names, except for the block outputs (``block{s}_{b}_out``).
"""
from __future__ import annotations

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers

WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 2
INPUT_RANGE = (0.0, 1.0)
# Moving statistics follow the batches faster than the Keras default (0.99):
# the network is trained for a few hundred steps only.
BN_MOMENTUM = 0.9


def _block(h, filters: int, stage: int, block: int, stride: int):
    name = f"conv{stage}_{block}"
    shortcut = h
    if stride != 1 or h.shape[-1] != filters:
        shortcut = klayers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                  name=f"{name}s")(h)
        shortcut = klayers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}s_bn")(shortcut)
    h = klayers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                       name=f"{name}a")(h)
    h = klayers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}a_bn")(h)
    h = klayers.Activation("relu", name=f"{name}a_relu")(h)
    h = klayers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}b")(h)
    h = klayers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}b_bn")(h)
    h = klayers.Add(name=f"block{stage}_{block}_add")([h, shortcut])
    return klayers.Activation("relu", name=f"block{stage}_{block}_out")(h)


def build(input_shape=(32, 32, 3), n_classes: int = 10, widths=WIDTHS,
          blocks_per_stage: int = BLOCKS_PER_STAGE) -> keras.Model:
    """The small ResNet described in the module docstring."""
    inp = keras.Input(input_shape, name="input")
    h = klayers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="conv1")(inp)
    h = klayers.BatchNormalization(momentum=BN_MOMENTUM, name="conv1_bn")(h)
    h = klayers.Activation("relu", name="conv1_relu")(h)
    for s, filters in enumerate(widths):
        for b in range(1, blocks_per_stage + 1):
            stride = 2 if (s > 0 and b == 1) else 1
            h = _block(h, filters, s + 2, b, stride)
    h = klayers.GlobalAveragePooling2D(name="avgpool")(h)
    h = klayers.Dense(n_classes, name="dense")(h)
    out = klayers.Activation("softmax", name="softmax")(h)
    return keras.Model(inp, out, name="small_resnet")


def aliases(model: keras.Model) -> dict:
    """Friendly name -> Keras name: ``block{s}_{b}`` -> ``block{s}_{b}_out``."""
    return {layer.name[:-len("_out")]: layer.name for layer in model.layers
            if layer.name.startswith("block") and layer.name.endswith("_out")}


def friendly_layers(model: keras.Model) -> tuple:
    """Friendly names from the input to the logits, in graph order: input,
    conv1, every block convolution and block output, avgpool, dense."""
    names = ["input"]
    reverse = {v: k for k, v in aliases(model).items()}
    for layer in model.layers[1:]:
        if isinstance(layer, klayers.Conv2D):
            names.append(layer.name)
        elif layer.name in reverse:
            names.append(reverse[layer.name])
        elif layer.name in ("avgpool", "dense"):
            names.append(layer.name)
    return tuple(names)


def csc_layers(widths=WIDTHS, blocks_per_stage: int = BLOCKS_PER_STAGE) -> tuple:
    """Injection layers: dense, then every block output from the top down."""
    blocks = [f"block{s + 2}_{b}" for s in range(len(widths))
              for b in range(1, blocks_per_stage + 1)]
    return ("dense",) + tuple(reversed(blocks))


def sanity_layers(widths=WIDTHS, blocks_per_stage: int = BLOCKS_PER_STAGE) -> tuple:
    """Scored layers of the sanity check: conv1, every block output, dense."""
    blocks = [f"block{s + 2}_{b}" for s in range(len(widths))
              for b in range(1, blocks_per_stage + 1)]
    return ("conv1",) + tuple(blocks) + ("dense",)


def preprocess(images):
    """uint8 RGB images -> float32 in [0, 1]."""
    return np.asarray(images, dtype=np.float32) / 255.0
