"""Images for the ImageNet networks: a validation directory, or bundled photos.

``list_validation_dir`` reads an ImageNet validation directory laid out as one
folder per synset (``n01440764/ILSVRC2012_val_00000293.JPEG`` ...); the sorted
synset folders give the class indices. ``sample_validation_dir`` draws the
paper's sample (200 images, seed 0) and loads the images resized to 224 x 224.
``sample_photos`` is the offline default: photos that ship with scikit-image.
"""
from __future__ import annotations

import json
import logging
import re
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ImageDirectoryError, ImageDirectoryNotFoundError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
IMAGE_SIZE = 224
SYNSET = re.compile(r"n\d+")  # WordNet ids: n01440764 ...
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


def _entries(directory: Path) -> list:
    try:
        return sorted(directory.iterdir())
    except PermissionError:
        raise ImageDirectoryError(
            f"{directory}: permission denied; make the directory readable "
            f"(chmod +rx {directory})") from None
    except OSError as error:
        raise ImageDirectoryError(f"{directory}: cannot be read ({error.strerror})") from None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_validation_dir(root) -> list:
    """(path, label) of every image under ``root``/<synset>/, sorted by path;
    the label is the index of the synset among the sorted synset folders.

    Raises :class:`~csc_analyzers.errors.ImageDirectoryError` naming the
    directory if it is missing, unreadable, holds no image, or is not laid out
    as one folder per synset (``n01440764/ILSVRC2012_val_00000293.JPEG``).
    """
    root = Path(root)
    if not root.exists():
        raise ImageDirectoryNotFoundError(
            f"ImageNet validation directory not found: {root}; pass the folder that holds "
            "the synset folders (n01440764/, n01443537/, ...)")
    if not root.is_dir():
        raise ImageDirectoryError(f"{root} is a file, not an ImageNet validation directory")
    entries = _entries(root)
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and _is_image(p)]
    if not folders:
        if loose:
            raise ImageDirectoryError(
                f"{root} holds {len(loose)} image(s) directly but no synset folders; sort them "
                f"into {root}/<synset>/ (e.g. {root}/n01440764/{loose[0].name}) using the "
                "validation ground truth")
        raise ImageDirectoryError(
            f"{root} has no synset folders (expected e.g. {root}/n01440764/*.JPEG)")
    odd = [p.name for p in folders if not SYNSET.fullmatch(p.name)]
    if odd:
        raise ImageDirectoryError(
            f"{root} is not laid out as an ImageNet validation tree: folder(s) "
            f"{odd[:3]} are not synset ids like 'n01440764'; pass the folder holding only "
            "the synset folders")
    items = []
    for label, folder in enumerate(folders):
        for path in _entries(folder):
            if _is_image(path):
                items.append((path, label))
    if not items:
        raise ImageDirectoryError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<synset>/: the "
            f"{len(folders)} synset folders are empty")
    return sorted(items)


def load_image(path, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image file as uint8 RGB, resized to ``size`` x ``size`` (no crop, as
    in the paper's code); grey images are replicated to three channels."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR),
                          dtype=np.uint8)


def load_images(paths, size: int = IMAGE_SIZE) -> tuple:
    """Image files as uint8 RGB ``size`` x ``size`` arrays: ``(images N x size x
    size x 3, kept)`` with ``kept`` the indices into ``paths`` of the files read.

    Fixable files are fixed: grey, grey+alpha, palette, CMYK or RGBA images are
    converted to RGB (alpha dropped), other sizes are resized (bilinear, no
    crop, as in the paper's code); one warning counts each kind. A file that
    cannot be read as an image is skipped with a warning naming it.
    """
    from PIL import Image, UnidentifiedImageError

    images, kept, converted, resized = [], [], [], []
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode != "RGB":
                    converted.append(img.mode)
                    img = img.convert("RGB")
                if img.size != (size, size):
                    resized.append(img.size)
                    img = img.resize((size, size), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            log.warning("skipping unreadable image %s: %s", path, error)
            continue
        kept.append(index)
    if converted:
        modes = ", ".join(f"{m} x{converted.count(m)}" for m in sorted(set(converted)))
        log.warning("converted %d of %d images to RGB (%s)", len(converted), len(paths), modes)
    if resized:
        log.warning("resized %d of %d images to %dx%d", len(resized), len(paths), size, size)
    if len(kept) < len(paths):
        log.warning("skipped %d of %d image files that could not be read",
                    len(paths) - len(kept), len(paths))
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return stacked, kept


def sample_validation_dir(root, n: int = 200, seed: int = 0, size: int = IMAGE_SIZE) -> tuple:
    """``n`` images drawn without replacement with ``np.random.default_rng(seed)``:
    (images uint8 N x size x size x 3, labels int64, paths). Files that cannot
    be read are skipped (logged), so fewer than ``n`` images may come back."""
    items = list_validation_dir(root)
    if n > len(items):
        raise ImageDirectoryError(f"asked for {n} images, {root} holds {len(items)}")
    picks = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    images, kept = load_images([items[i][0] for i in picks], size)
    picks = picks[kept]
    paths = [items[i][0] for i in picks]
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
