"""VGG-16 and ResNet-50 from ``keras.applications`` with the paper's layer names.

Weights: ``"imagenet"`` (the Keras cache file, downloaded when missing unless
downloads are off), a path to a weights file of the same architecture, or
``None`` (Keras default initialisation; for architecture-level runs only).
Both networks are built with a linear top layer followed by a separate
``Activation("softmax", name="softmax")``, so that the logits have a layer of
their own, as in the paper's networks. The Keras ImageNet weight files load
unchanged into this layout (the softmax layer has no weights).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers

OFFLINE_ENV = "CSC_OFFLINE"
_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHT_FILES = {
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
              _KERAS_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
              "64373286793e3c8b2b4e3219cbf3544b"),
    "resnet50": ("resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                 _KERAS_URL + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                 "2cb95161c43110f7111970584f804107"),
}
# Caffe-style preprocessing of both networks: RGB -> BGR, minus the ImageNet
# channel means (B, G, R).
BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
INPUT_RANGE = (-123.68, 255.0 - 103.939)  # (-max mean, 255 - min mean)
IMAGE_SIZE = 224

VGG16_CSC_LAYERS = ("fc3", "fc1", "conv4_3", "conv3_3", "conv2_2")
VGG16_SANITY_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_3",
                       "conv5_1", "conv5_3", "fc1", "fc3")
RESNET50_CSC_LAYERS = ("dense", "block5_1", "block4_2", "block3_4", "block3_2", "block2_2")
RESNET50_SANITY_LAYERS = ("conv1", "block2_2", "block3_1", "block3_3", "block4_1",
                          "block4_6", "block5_2", "dense")
RESNET50_BLOCKS = {2: 3, 3: 4, 4: 6, 5: 3}


def preprocess(images) -> np.ndarray:
    """uint8 RGB images (N x H x W x 3) -> float32 BGR minus the ImageNet means."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB images shaped N x H x W x 3, got {x.shape}")
    return x[..., ::-1] - BGR_MEAN


def keras_cache_candidates(file_name: str) -> list:
    """Where ``keras.utils.get_file`` keeps ``models/<file_name>``: ``~/.keras``,
    or ``/tmp/.keras`` when the home directory is not writable."""
    return [Path(os.path.expanduser("~")) / ".keras" / "models" / file_name,
            Path("/tmp") / ".keras" / "models" / file_name]


def downloads_allowed() -> bool:
    """False when the environment variable ``CSC_OFFLINE`` is set to 1/true/yes."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


def imagenet_weights_path(arch: str, *, download: bool = True) -> Path:
    """Path of the Keras ImageNet weights of ``arch``: the cached file if there
    is one, else downloaded into the Keras cache (when ``download`` and
    downloads are allowed); raises ``FileNotFoundError`` naming the file."""
    file_name, url, file_hash = WEIGHT_FILES[arch]
    candidates = keras_cache_candidates(file_name)
    for path in candidates:
        if path.is_file():
            return path
    where = (f"expected the Keras ImageNet weights of {arch} at {candidates[0]} "
             f"(download: {url}); or pass weights=<path to the .h5 file>, "
             f"or weights=None for random initialisation")
    if not download or not downloads_allowed():
        raise FileNotFoundError(f"{where}; downloads are off")
    try:
        return Path(keras.utils.get_file(file_name, url, cache_subdir="models",
                                         file_hash=file_hash))
    except Exception as err:  # network errors come in many types
        raise FileNotFoundError(f"{where}; the download failed: {err}") from err


def _resolve_weights(arch: str, weights, download: bool):
    if weights is None:
        return None, "random"
    if isinstance(weights, str) and weights == "imagenet":
        return imagenet_weights_path(arch, download=download), "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {arch} not found: {path}")
    return path, str(path)


def build_vgg16(weights="imagenet", *, download: bool = True):
    """VGG-16 with a separate softmax; returns (model, aliases, description)."""
    path, description = _resolve_weights("vgg16", weights, download)
    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="input")
    base = keras.applications.VGG16(weights=None, input_tensor=inp,
                                    classifier_activation=None)
    if path is not None:
        base.load_weights(str(path))
    out = klayers.Activation("softmax", name="softmax")(base.output)
    model = keras.Model(inp, out, name="vgg16")
    return model, vgg16_aliases(), description


def vgg16_aliases() -> dict:
    """Friendly (paper) name -> Keras name for VGG-16."""
    aliases = {}
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for conv in range(1, n_convs + 1):
            aliases[f"conv{block}_{conv}"] = f"block{block}_conv{conv}"
        aliases[f"pool{block}"] = f"block{block}_pool"
    aliases.update(flatten="flatten", fc1="fc1", fc2="fc2", fc3="predictions")
    return aliases


def vgg16_layers() -> tuple:
    return ("input",) + tuple(vgg16_aliases())


def build_resnet50(weights="imagenet", *, download: bool = True):
    """ResNet-50 with a separate softmax; returns (model, aliases, description)."""
    path, description = _resolve_weights("resnet50", weights, download)
    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="input")
    base = keras.applications.ResNet50(weights=None, input_tensor=inp,
                                       classifier_activation=None)
    if path is not None:
        base.load_weights(str(path))
    out = klayers.Activation("softmax", name="softmax")(base.output)
    model = keras.Model(inp, out, name="resnet50")
    return model, resnet50_aliases(), description


def resnet50_aliases() -> dict:
    """Friendly (paper) name -> Keras name for ResNet-50: conv1, maxpool;
    per block ``conv{s}_{b}a/b/c`` (the three convolutions), ``conv{s}_{b}s``
    (projection shortcut of the first block of a stage) and ``block{s}_{b}``
    (the ReLU after the Add); avgpool, dense."""
    aliases = {"conv1": "conv1_conv", "maxpool": "pool1_pool"}
    for stage, n_blocks in RESNET50_BLOCKS.items():
        for b in range(1, n_blocks + 1):
            keras_block = f"conv{stage}_block{b}"
            for letter, index in (("a", 1), ("b", 2), ("c", 3)):
                aliases[f"conv{stage}_{b}{letter}"] = f"{keras_block}_{index}_conv"
            if b == 1:
                aliases[f"conv{stage}_{b}s"] = f"{keras_block}_0_conv"
            aliases[f"block{stage}_{b}"] = f"{keras_block}_out"
    aliases.update(avgpool="avg_pool", dense="predictions")
    return aliases


def resnet50_layers() -> tuple:
    return ("input",) + tuple(resnet50_aliases())
