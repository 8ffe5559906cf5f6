"""The audit's images: the user's image directory or the built-in set, and
the preprocessing that turns them into model inputs."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .checks import AuditError

PREPROCESSING = ("unit", "imagenet-caffe", "tf")


@dataclass
class AuditData:
    """The audit's images: ``raw`` (uint8, for figures), ``images``
    (preprocessed), their ``names``, the model's ``logits`` and ``predicted``
    classes and,
    for the built-in set, two-object ``composites`` (raw, preprocessed,
    masks, labels) or the reason they are not used."""

    raw: np.ndarray
    images: np.ndarray
    names: list
    source: str
    predicted: np.ndarray = None
    logits: np.ndarray = None
    composites: Optional[tuple] = None
    composites_reason: str = ""


# -- preprocessing ------------------------------------------------------------------

def preprocess(images, mode: str) -> np.ndarray:
    """uint8 images (N x H x W x C) -> float32 model inputs: ``unit`` x / 255,
    ``tf`` x / 127.5 - 1, ``imagenet-caffe`` RGB -> BGR minus the ImageNet
    means (Keras VGG16 / ResNet50 preprocessing; 3 channels only)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected images N x H x W x C, got shape {x.shape}")
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "imagenet-caffe":
        from ..models.imagenet import preprocess as caffe
        return caffe(x)
    raise ValueError(f"unknown preprocessing {mode!r}; choose from {PREPROCESSING}")


def input_range(mode: str) -> tuple:
    """``(low, high)`` of the inputs that :func:`preprocess` produces with ``mode``."""
    if mode == "unit":
        return (0.0, 1.0)
    if mode == "tf":
        return (-1.0, 1.0)
    if mode == "imagenet-caffe":
        from ..models.imagenet import INPUT_RANGE
        return tuple(float(v) for v in INPUT_RANGE)
    raise ValueError(f"unknown preprocessing {mode!r}; choose from {PREPROCESSING}")


# -- images -------------------------------------------------------------------------

def read_image_dir(directory, *, height: int, width: int, channels: int, n: int) -> tuple:
    """The first ``n`` readable images of ``directory`` (sorted by name) as
    uint8 N x height x width x channels, and their file names. Images are
    converted to RGB (or to grayscale for one channel) and resized
    bilinearly; unreadable files are skipped with a warning."""
    from PIL import Image

    directory = Path(directory)
    if not directory.is_dir():
        raise AuditError(f"--images {directory}: not a directory")
    images, names = [], []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if len(images) == n:
            break
        if path.name.startswith("."):
            continue
        try:
            with Image.open(path) as image:
                converted = image.convert("L" if channels == 1 else "RGB")
                converted = converted.resize((width, height), Image.BILINEAR)
                array = np.asarray(converted, dtype=np.uint8)
        except Exception as error:  # PIL raises many types for foreign files
            warnings.warn(f"--images: skipping {path.name}: not a readable image "
                          f"({type(error).__name__}: {error})", stacklevel=2)
            continue
        images.append(array.reshape(height, width, channels))
        names.append(path.name)
    if not images:
        raise AuditError(f"--images {directory}: no readable image file")
    if len(images) < n:
        warnings.warn(f"--images {directory}: {len(images)} readable images, fewer than "
                      f"--n-images {n}", stacklevel=2)
    return np.stack(images), names


def builtin_data(io: dict, *, n: int, seed: int, mode: str) -> AuditData:
    """The built-in test images (32 x 32 x 3 inputs only) and, when the model
    has the built-in number of classes, the two-object composites with masks."""
    from ..data import builtin

    if (io["height"], io["width"], io["channels"]) != (builtin.SIZE, builtin.SIZE, 3):
        raise AuditError(f"the model's input is {io['height']}x{io['width']}x{io['channels']}; "
                         f"the built-in images are {builtin.SIZE}x{builtin.SIZE}x3: "
                         "pass --images DIR")
    raw, _labels, _masks = builtin.load("test", n=n, seed=seed)
    data = AuditData(raw, preprocess(raw, mode), [f"builtin-test-{i}" for i in range(n)],
                     source="built-in test images")
    if io["n_classes"] == builtin.N_CLASSES:
        comp_raw, masks, labels = builtin.composites(n, seed=seed)
        data.composites = (comp_raw, preprocess(comp_raw, mode), masks, labels)
    else:
        data.composites_reason = (f"the model has {io['n_classes']} classes; the built-in "
                                  f"two-object images are labelled with {builtin.N_CLASSES}")
    return data
