"""Images for the ImageNet networks: a validation directory, or bundled photos.

``list_validation_dir`` reads an ImageNet validation directory laid out as one
folder per synset (``n01440764/ILSVRC2012_val_00000293.JPEG`` ...); the sorted
synset folders give the class indices. ``sample_validation_dir`` draws the
paper's sample (200 images, seed 0) and loads the images resized to 224 x 224.
``sample_photos`` is the offline default: photos that ship with scikit-image.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
IMAGE_SIZE = 224
# scikit-image photo -> ImageNet class index of its main object (-1: none fits).
PHOTOS = {
    "chelsea": 281,     # tabby cat
    "coffee": 967,      # espresso
    "rocket": 657,      # missile
    "stereo_motorcycle": 670,  # scooter
    "astronaut": -1,    # a portrait: no ImageNet class
    "camera": 872,      # tripod (grey image, replicated to RGB)
    "clock": 892,       # wall clock (grey image, replicated to RGB)
}


def class_names() -> tuple:
    """The 1000 ImageNet class names in sorted-synset order."""
    text = resources.files("csc_analyzers.data").joinpath(
        "imagenet_class_names.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


def list_validation_dir(root) -> list:
    """(path, label) of every image under ``root``/<synset>/, sorted by path;
    the label is the index of the synset among the sorted synset folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet validation directory not found: {root}")
    synsets = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not synsets:
        raise ValueError(f"{root} has no synset folders (expected e.g. {root}/n01440764/*.JPEG)")
    items = []
    for label, synset in enumerate(synsets):
        for path in sorted((root / synset).iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                items.append((path, label))
    if not items:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<synset>/")
    return sorted(items)


def load_image(path, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image file as uint8 RGB, resized to ``size`` x ``size`` (no crop, as
    in the paper's code); grey images are replicated to three channels."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR),
                          dtype=np.uint8)


def sample_validation_dir(root, n: int = 200, seed: int = 0, size: int = IMAGE_SIZE) -> tuple:
    """``n`` images drawn without replacement with ``np.random.default_rng(seed)``:
    (images uint8 N x size x size x 3, labels int64, paths)."""
    items = list_validation_dir(root)
    if n > len(items):
        raise ValueError(f"asked for {n} images, {root} holds {len(items)}")
    picks = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    paths = [items[i][0] for i in picks]
    images = np.stack([load_image(p, size) for p in paths]) if n else np.zeros(
        (0, size, size, 3), np.uint8)
    labels = np.array([items[i][1] for i in picks], dtype=np.int64)
    return images, labels, paths


def _to_rgb_square(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR),
                      dtype=np.uint8)


def sample_photos(size: int = IMAGE_SIZE, names=None) -> tuple:
    """scikit-image's bundled photos, resized: (images uint8 N x size x size x 3,
    labels int64 (-1 where no ImageNet class fits), names)."""
    from skimage import data as skdata

    names = tuple(PHOTOS) if names is None else tuple(names)
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown photos {unknown}; choose from {sorted(PHOTOS)}")
    images = []
    for name in names:
        image = getattr(skdata, name)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        images.append(_to_rgb_square(image, size))
    labels = np.array([PHOTOS[n] for n in names], dtype=np.int64)
    return np.stack(images), labels, names
