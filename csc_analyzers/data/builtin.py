"""The built-in dataset: procedurally generated 32x32 RGB images in 10 classes.

Arrays are shaped and typed like CIFAR-10 (uint8, N x 32 x 32 x 3). The class
of an image is the *shape* of its object (see :mod:`.shapes`), never its
colour, size, position or rotation, which are all drawn at random. Each image
has a textured, cluttered background (colour gradient, low-frequency blotches,
stripes, distractor strokes), the object is filled with a shaded colour that
stands out from the background under it, and pixel noise is added last.

Everything is deterministic: image ``i`` of a split is drawn from
``np.random.default_rng([seed, split_id, i])``, so ``load("train", n=100)``
is the first 100 images of ``load("train", n=1000)`` and the same call always
returns the same bytes. Labels cycle through the classes (``i % 10``), so the
classes are balanced. Masks are ``True`` where the object covers any part of
a pixel; outside the mask an image is background plus noise.
"""
from __future__ import annotations

import numpy as np
from .shapes import CLASS_NAMES, coverage

VERSION = 2  # bump when the generator changes: cached arrays are keyed by it
SIZE = 32
N_CLASSES = len(CLASS_NAMES)
SPLITS = {"train": 0, "test": 1, "composite": 2}
DEFAULT_SIZES = {"train": 12000, "test": 2000}
NOISE_STD = 0.02
MIN_CONTRAST = 0.6


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def _upsampler(grid: int) -> np.ndarray:
    """SIZE x grid matrix of linear interpolation weights from a coarse grid."""
    pos = np.clip((np.arange(SIZE) + 0.5) * grid / SIZE - 0.5, 0, grid - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, grid - 1)
    w = pos - lo
    matrix = np.zeros((SIZE, grid))
    matrix[np.arange(SIZE), lo] += 1 - w
    matrix[np.arange(SIZE), hi] += w
    return matrix


def _blotches(rng, grid: int, channels: int) -> np.ndarray:
    """Smooth random field in [-1, 1]: a coarse grid, bilinearly upsampled."""
    coarse = rng.uniform(-1, 1, size=(grid, grid, channels))
    up = _upsampler(grid)
    rows = np.tensordot(up, coarse, axes=(1, 0))
    return np.tensordot(up, rows, axes=(1, 1)).transpose(1, 0, 2)


def background(rng) -> np.ndarray:
    """A textured, cluttered float background in [0, 1], shape 32 x 32 x 3."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    direction = rng.uniform(0, 2 * np.pi)
    t = np.cos(direction) * xx + np.sin(direction) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    c0, c1 = rng.uniform(0.05, 0.95, size=(2, 3))
    img = c0 + t[..., None] * (c1 - c0)
    img = img + rng.uniform(0.05, 0.15) * _blotches(rng, int(rng.integers(3, 7)), 3)
    freq = rng.uniform(0.3, 1.2)
    phase = rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) * SIZE + phase)
    img = img + rng.uniform(0.0, 0.08) * stripes[..., None] * rng.uniform(-1, 1, size=3)
    for _ in range(int(rng.integers(1, 5))):
        img = _stroke(rng, img)
    return np.clip(img, 0, 1)


def _stroke(rng, img: np.ndarray) -> np.ndarray:
    """Paint a short distractor line segment (1 pixel wide) in a random colour."""
    length = rng.uniform(2, 6)
    angle = rng.uniform(0, np.pi)
    r0, c0 = rng.uniform(0, SIZE, size=2)
    steps = np.linspace(0, length, int(length * 2) + 2)
    rows = np.clip(np.round(r0 + steps * np.sin(angle)).astype(int), 0, SIZE - 1)
    cols = np.clip(np.round(c0 + steps * np.cos(angle)).astype(int), 0, SIZE - 1)
    img = img.copy()
    img[rows, cols] = rng.uniform(0, 1, size=3)
    return img


def _object_fill(rng, under: np.ndarray) -> np.ndarray:
    """Shaded object colour that differs from ``under`` (the mean background
    colour below the object) by at least ``MIN_CONTRAST`` in RGB distance."""
    for _ in range(100):
        colour = rng.uniform(0, 1, size=3)
        if np.linalg.norm(colour - under) >= MIN_CONTRAST:
            break
    else:
        colour = np.where(under > 0.5, 0.0, 1.0)
    shading = 0.08 * _blotches(rng, 3, 1)
    return np.clip(colour + shading, 0, 1)


def _paint(rng, img: np.ndarray, label: int, *, radius, center) -> tuple:
    """Composite one object of class ``label`` onto ``img``; returns (image, alpha)."""
    alpha = coverage(CLASS_NAMES[label], size=SIZE, center=center, radius=radius,
                     angle=rng.uniform(0, 2 * np.pi))
    mask = alpha > 0
    fill = _object_fill(rng, img[mask].mean(axis=0))
    a = alpha[..., None]
    return img * (1 - a) + fill * a, alpha


def _finish(rng, img: np.ndarray, noise_std: float) -> np.ndarray:
    noisy = img + rng.normal(0, noise_std, size=img.shape) if noise_std > 0 else img
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)


def render(seed: int, split: str, index: int, *, noise_std: float = NOISE_STD) -> tuple:
    """Image ``index`` of ``split``: (uint8 image, bool mask, label, uint8 background).

    The background is returned without the object and without noise, so that
    with ``noise_std=0`` the image equals it exactly outside the mask.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = _image_rng(seed, split, index)
    label = int(index) % N_CLASSES
    bg = background(rng)
    radius = rng.uniform(8.5, 13.0)
    margin = radius * 0.85
    center = rng.uniform(margin, SIZE - margin, size=2)
    img, alpha = _paint(rng, bg, label, radius=radius, center=center)
    return _finish(rng, img, noise_std), alpha > 0, label, _finish(rng, bg, 0.0)


def load(split: str = "train", n: int | None = None, seed: int = 0,
         *, noise_std: float = NOISE_STD) -> tuple:
    """``n`` images of ``split`` ("train" or "test"; default sizes
    ``DEFAULT_SIZES``): (images uint8 N x 32 x 32 x 3, labels int64 N,
    masks bool N x 32 x 32)."""
    if split not in DEFAULT_SIZES:
        raise ValueError(f"split must be one of {sorted(DEFAULT_SIZES)}, got {split!r}")
    n = DEFAULT_SIZES[split] if n is None else int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.empty((n, SIZE, SIZE), dtype=bool)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        images[i], masks[i], labels[i], _ = render(seed, split, i, noise_std=noise_std)
    return images, labels, masks


def composites(n: int, seed: int = 0, *, noise_std: float = NOISE_STD) -> tuple:
    """``n`` images with two objects of different classes, side by side (left /
    right or top / bottom, at random) and not overlapping: (images uint8
    N x 32 x 32 x 3, masks bool N x 2 x 32 x 32, labels int64 N x 2); mask ``k``
    and label ``k`` belong to the same object."""
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.empty((n, 2, SIZE, SIZE), dtype=bool)
    labels = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        rng = _image_rng(seed, "composite", i)
        pair = rng.choice(N_CLASSES, size=2, replace=False)
        img = background(rng)
        vertical = rng.random() < 0.5
        for k, label in enumerate(pair):
            radius = rng.uniform(6.0, 7.5)
            along = rng.uniform(radius, SIZE / 2 - radius) + k * SIZE / 2
            across = rng.uniform(radius, SIZE - radius)
            center = (along, across) if vertical else (across, along)
            img, alpha = _paint(rng, img, int(label), radius=radius, center=center)
            masks[i, k] = alpha > 0
        images[i] = _finish(rng, img, noise_std)
        labels[i] = pair
    return images, masks, labels
