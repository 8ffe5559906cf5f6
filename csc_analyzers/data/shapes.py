"""The ten object shapes of the built-in dataset, as point-in-shape tests.

Every shape lives in its own frame, centred on the origin and inside the unit
disk. A shape is a union of convex pieces (polygons and disks); ring and
crescent additionally subtract a disk. :func:`coverage` rasterises a shape
after rotation, scaling and translation with supersampling and returns the
fraction of each pixel the shape covers (an anti-aliased alpha map).
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = (
    "disk", "square", "triangle", "plus", "star",
    "ring", "crescent", "tee", "ell", "bowtie",
)


def _regular_polygon(n: int, radius: float, phase: float = np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _star_pieces() -> list:
    outer = _regular_polygon(5, 1.0)
    inner = _regular_polygon(5, 0.42, phase=np.pi / 2 + np.pi / 5)
    pieces = [("poly", inner)]
    for k in range(5):
        pieces.append(("poly", np.stack([inner[k - 1], outer[k], inner[k]])))
    return pieces


# name -> (pieces added, disks subtracted); a disk is (cx, cy, r).
_SHAPES = {
    "disk": ([("disk", (0.0, 0.0, 0.9))], []),
    "square": ([("poly", _rect(-0.7, 0.7, -0.7, 0.7))], []),
    "triangle": ([("poly", _regular_polygon(3, 1.0))], []),
    "plus": ([("poly", _rect(-0.28, 0.28, -0.92, 0.92)),
              ("poly", _rect(-0.92, 0.92, -0.28, 0.28))], []),
    "star": (_star_pieces(), []),
    "ring": ([("disk", (0.0, 0.0, 0.95))], [(0.0, 0.0, 0.55)]),
    "crescent": ([("disk", (0.0, 0.0, 0.92))], [(0.42, 0.0, 0.72)]),
    "tee": ([("poly", _rect(-0.75, 0.75, 0.25, 0.62)),
             ("poly", _rect(-0.22, 0.22, -0.85, 0.25))], []),
    "ell": ([("poly", _rect(-0.6, -0.2, -0.75, 0.75)),
             ("poly", _rect(-0.6, 0.6, -0.75, -0.38))], []),
    "bowtie": ([("poly", np.array([[-0.75, -0.65], [0.0, -0.05], [0.0, 0.05], [-0.75, 0.65]])),
                ("poly", np.array([[0.75, -0.65], [0.75, 0.65], [0.0, 0.05], [0.0, -0.05]]))],
               []),
}


def _inside_convex(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Points left of every edge of a counter-clockwise convex polygon."""
    inside = np.ones(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def _ccw(vertices: np.ndarray) -> np.ndarray:
    x, y = vertices[:, 0], vertices[:, 1]
    area = np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    return vertices if area > 0 else vertices[::-1]


def inside(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean map: which points ``(x, y)`` of the shape's own frame lie in it."""
    if name not in _SHAPES:
        raise KeyError(f"unknown shape {name!r}; shapes: {CLASS_NAMES}")
    pieces, holes = _SHAPES[name]
    result = np.zeros(x.shape, dtype=bool)
    for kind, geometry in pieces:
        if kind == "disk":
            cx, cy, r = geometry
            result |= (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
        else:
            result |= _inside_convex(x, y, _ccw(np.asarray(geometry, dtype=float)))
    for cx, cy, r in holes:
        result &= (x - cx) ** 2 + (y - cy) ** 2 > r ** 2
    return result


def coverage(name: str, *, size: int, center: tuple, radius: float, angle: float,
             supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel of a ``size`` x ``size`` image covered by shape
    ``name`` rotated by ``angle`` (radians), scaled to ``radius`` pixels and
    centred at ``center`` = (row, col) in pixel units."""
    f = supersample
    alpha = np.zeros((size, size), dtype=np.float32)
    r0, c0 = (max(int(np.floor(v - radius)) - 1, 0) for v in center)
    r1, c1 = (min(int(np.ceil(v + radius)) + 1, size) for v in center)
    if r1 <= r0 or c1 <= c0:
        return alpha
    rows, cols = np.meshgrid((np.arange(r0 * f, r1 * f) + 0.5) / f,
                             (np.arange(c0 * f, c1 * f) + 0.5) / f, indexing="ij")
    dx = (cols - center[1]) / radius
    dy = (center[0] - rows) / radius
    cos, sin = np.cos(angle), np.sin(angle)
    x = cos * dx + sin * dy
    y = -sin * dx + cos * dy
    hit = inside(name, x, y).astype(np.float32)
    alpha[r0:r1, c0:c1] = hit.reshape(r1 - r0, f, c1 - c0, f).mean(axis=(1, 3))
    return alpha
