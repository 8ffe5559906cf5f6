"""Singular-value analysis of the pattern matrices (the paper's Figure 3).

A Dense/Conv2D layer's backward matrix (``r_l = M r_{l+1}``) is its kernel in
Keras' ``(in, out)`` layout: ``W`` for the gradient, ``A`` for PatternNet
(eq. 10) and ``A (.) W`` for PatternAttribution (eq. 11).

Figure 3 as published (the paper's ``pattern_attr.ipynb``), computed by
:func:`figure3_spectra`, one row per layer (or layer pair) and matrix:

(a) ``panel="a"``: sigma1/sigma2 of each layer's *full* matrix, the whole
    kernel reshaped to ``(kh * kw * c_in, c_out)`` (a Dense kernel as it is,
    VGG-16's fc1 is 25088 x 4096);
(b) ``panel="b"``: of the *centre* slice of each layer, ``kernel[kh // 2,
    kw // 2]`` (``c_in x c_out``); a Dense layer fed by a ``Flatten`` of an
    ``(h, w, c)`` tensor is sliced at the centre location ``(h // 2, w // 2)``
    (rows of a Flatten are ordered ``(h, w, c)``; VGG-16's fc1 at (3, 3) of
    7 x 7), any other Dense layer is used whole;
(c) ``panel="c"``: of the inter-layer products of consecutive centre
    slices, ``T_l = sqrt(S_l) V_l U_{l+1} sqrt(S_{l+1})`` with the SVDs
    ``M_l = U_l S_l V_l`` (numpy's convention ``M = U diag(s) Vh``).
    Consecutive means consecutive in model order; a pair whose channel
    counts ``out_l`` and ``in_{l+1}`` differ (no chain, e.g. across a
    residual block) has no product and is left out.

The paper plotted A in (a) and W, A (.) W in (b), (c); the table holds all
three matrices in every panel. Singular values come from
``np.linalg.svd(..., compute_uv=False)`` in float64 (VGG-16's fc1 full
matrix takes minutes on two cores).

Other statistics (not in the paper, labelled as such in their tables and
figure): :func:`layer_spectra` gives the ratio of *every* kernel position's
slice (``kernel_slices``), optionally of the full kernel too, and
:func:`interlayer_spectra` the products ``T_l`` of position pairs: for two
convolutions with the same kernel size the equal kernel positions,
otherwise up to ``max_pairs`` pairs drawn with ``rng`` from all
combinations (e.g. VGG-16's conv5_3 x fc1: 9 x 49 combinations).
"""
from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow.keras import layers as klayers

from .storage import pattern_layer_weights, pattern_layers, resolve_patterns

MATRICES = ("A", "W", "A*W")


def sigma_ratio(singular_values: np.ndarray) -> float:
    """sigma1 / sigma2 (``inf`` if sigma2 is 0, ``nan`` for fewer than 2 values)."""
    s = np.sort(np.asarray(singular_values, dtype=np.float64))[::-1]
    if s.size < 2:
        return float("nan")
    return float(s[0] / s[1]) if s[1] > 0 else float("inf")


def _flatten_source_shape(layer):
    """(h, w, c) if the Dense ``layer`` is fed by a Flatten of a 4-D tensor."""
    history = getattr(layer.input, "_keras_history", None)
    producer = history[0] if history is not None else None
    if isinstance(producer, klayers.Flatten):
        shape = tuple(producer.input.shape[1:])
        if len(shape) == 3 and all(d is not None for d in shape):
            return shape
    return None


def kernel_slices(kernel: np.ndarray, *, spatial=None) -> dict:
    """``{position: (in_channels x out) matrix}`` of a kernel (module docstring).

    ``spatial``: ``(h, w, c)`` for a Dense kernel fed by a Flatten.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim == 4:
        return {f"{i},{j}": kernel[i, j] for i, j in product(range(kernel.shape[0]),
                                                             range(kernel.shape[1]))}
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D (Dense) or 4-D (Conv2D), got {kernel.shape}")
    if spatial is None:
        return {"full": kernel}
    h, w, c = spatial
    if h * w * c != kernel.shape[0]:
        raise ValueError(f"spatial shape {spatial} does not match kernel rows {kernel.shape[0]}")
    cube = kernel.reshape(h, w, c, kernel.shape[1])
    return {f"{i},{j}": cube[i, j] for i, j in product(range(h), range(w))}


def full_matrix(kernel: np.ndarray) -> np.ndarray:
    """The whole kernel as one ``(kh * kw * c_in) x c_out`` matrix (Figure 3a);
    a Dense kernel unchanged."""
    kernel = np.asarray(kernel)
    if kernel.ndim not in (2, 4):
        raise ValueError(f"kernel must be 2-D (Dense) or 4-D (Conv2D), got {kernel.shape}")
    return kernel.reshape(-1, kernel.shape[-1])


def centre_slice(kernel: np.ndarray, *, spatial=None) -> tuple:
    """``(position, c_in x c_out matrix)`` at the kernel's centre (Figure 3b).

    Conv2D: ``kernel[kh // 2, kw // 2]``. Dense fed by a Flatten of ``spatial
    = (h, w, c)``: the rows of location ``(h // 2, w // 2)``. Other Dense:
    the whole kernel (position ``"full"``).
    """
    kernel = np.asarray(kernel)
    if kernel.ndim == 4:
        i, j = kernel.shape[0] // 2, kernel.shape[1] // 2
        return f"{i},{j}", kernel[i, j]
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D (Dense) or 4-D (Conv2D), got {kernel.shape}")
    if spatial is None:
        return "full", kernel
    h, w, c = spatial
    if h * w * c != kernel.shape[0]:
        raise ValueError(f"spatial shape {spatial} does not match kernel rows {kernel.shape[0]}")
    i, j = h // 2, w // 2
    return f"{i},{j}", kernel.reshape(h, w, c, kernel.shape[1])[i, j]


def _ratio_row(matrix: np.ndarray) -> dict:
    s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    return {"rows": int(matrix.shape[0]), "cols": int(matrix.shape[1]),
            "sigma1": float(s[0]), "sigma2": float(s[1]) if s.size > 1 else float("nan"),
            "ratio": sigma_ratio(s)}


PANELS = {"a": "full matrix", "b": "centre slice", "c": "centre-to-centre T_l"}
"""Figure 3's panels and what each row of a panel decomposes."""


def figure3_spectra(model, patterns, *, matrices=MATRICES) -> pd.DataFrame:
    """Figure 3 (a)-(c) as published (module docstring): tidy rows ``panel,
    statistic, layer, next_layer, layer_index, matrix, position, rows, cols,
    sigma1, sigma2, ratio``. ``next_layer`` is empty in panels a and b;
    ``position`` is ``"full"`` (a), the centre position (b) or
    ``"<centre_l>|<centre_l+1>"`` (c)."""
    layers = backward_matrices(model, patterns)
    rows = []
    centres = []
    for index, (name, spatial, mats) in enumerate(layers):
        centre = {}
        for kind in matrices:
            base = {"layer": name, "next_layer": "", "layer_index": index, "matrix": kind}
            rows.append({"panel": "a", "statistic": PANELS["a"], **base, "position": "full",
                         **_ratio_row(full_matrix(mats[kind]))})
            position, matrix = centre_slice(mats[kind], spatial=spatial)
            centre[kind] = (position, _svd(matrix))
            rows.append({"panel": "b", "statistic": PANELS["b"], **base, "position": position,
                         **_ratio_row(matrix)})
        centres.append(centre)
    for index in range(len(layers) - 1):
        for kind in matrices:
            (p, svd_l), (q, svd_next) = centres[index][kind], centres[index + 1][kind]
            if svd_l[2].shape[1] != svd_next[0].shape[0]:
                continue  # channel counts differ: the two layers do not chain
            rows.append({"panel": "c", "statistic": PANELS["c"], "layer": layers[index][0],
                         "next_layer": layers[index + 1][0], "layer_index": index,
                         "matrix": kind, "position": f"{p}|{q}",
                         **_ratio_row(interlayer_product(svd_l, svd_next))})
    columns = ["panel", "statistic", "layer", "next_layer", "layer_index", "matrix", "position",
               "rows", "cols", "sigma1", "sigma2", "ratio"]
    return pd.DataFrame(rows, columns=columns)


def backward_matrices(model, patterns) -> list:
    """``[(layer name, spatial, {"A": A, "W": W, "A*W": A (.) W})]`` in model order."""
    patterns = resolve_patterns(patterns, model)
    weights = pattern_layer_weights(model)
    result = []
    for layer in pattern_layers(model):
        kernel = weights[layer.name][0]
        spatial = _flatten_source_shape(layer) if isinstance(layer, klayers.Dense) else None
        pattern = patterns[layer.name]
        result.append((layer.name, spatial, {"A": pattern, "W": kernel, "A*W": pattern * kernel}))
    return result


def layer_spectra(model, patterns, *, matrices=MATRICES, include_full=False) -> pd.DataFrame:
    """Tidy rows ``layer, layer_index, matrix, position, sigma1, sigma2, ratio``:
    sigma1/sigma2 of *every* kernel position's slice of ``A``, ``W`` and
    ``A (.) W`` of every Dense/Conv2D layer (not in the paper, which shows
    the full matrix and the centre slice: :func:`figure3_spectra`)."""
    rows = []
    for index, (name, spatial, mats) in enumerate(backward_matrices(model, patterns)):
        for kind in matrices:
            slices = kernel_slices(mats[kind], spatial=spatial)
            if include_full and "full" not in slices:
                slices["full"] = mats[kind].reshape(-1, mats[kind].shape[-1])
            for position, matrix in slices.items():
                s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
                rows.append({"layer": name, "layer_index": index, "matrix": kind,
                             "position": position, "sigma1": float(s[0]),
                             "sigma2": float(s[1]) if s.size > 1 else float("nan"),
                             "ratio": sigma_ratio(s)})
    return pd.DataFrame(rows)


def _svd(matrix):
    u, s, vh = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
    return u, s, vh


def interlayer_product(svd_l, svd_next) -> np.ndarray:
    """``T_l = sqrt(S_l) V_l U_{l+1} sqrt(S_{l+1})`` from two ``(U, s, V)``
    triples of numpy's SVD (``M = U diag(s) V``)."""
    _, s_l, v_l = svd_l
    u_next, s_next, _ = svd_next
    if v_l.shape[1] != u_next.shape[0]:
        raise ValueError(f"channel counts differ: {v_l.shape[1]} outputs vs "
                         f"{u_next.shape[0]} inputs")
    return np.sqrt(s_l)[:, None] * (v_l @ u_next) * np.sqrt(s_next)[None, :]


def interlayer_spectra(model, patterns, *, matrices=MATRICES, max_pairs: int = 9,
                       rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Tidy rows ``layer, next_layer, layer_index, matrix, position, next_position,
    sigma1, sigma2, ratio`` of the inter-layer products ``T_l`` of many
    position pairs (not in the paper, whose Figure 3c pairs the centre
    slices: :func:`figure3_spectra`)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    layers = backward_matrices(model, patterns)
    rows = []
    for index, ((name, spatial, mats), (next_name, next_spatial, next_mats)) in \
            enumerate(zip(layers[:-1], layers[1:])):
        for kind in matrices:
            slices = kernel_slices(mats[kind], spatial=spatial)
            next_slices = kernel_slices(next_mats[kind], spatial=next_spatial)
            first = next(iter(slices.values()))
            if first.shape[1] != next(iter(next_slices.values())).shape[0]:
                continue  # channel counts differ: no product
            both_conv = mats[kind].ndim == 4 and next_mats[kind].ndim == 4
            if both_conv and mats[kind].shape[:2] == next_mats[kind].shape[:2]:
                pairs = [(p, p) for p in slices]
            else:
                pairs = list(product(slices, next_slices))
            if len(pairs) > max_pairs:
                pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
            cache = {}
            for p, q in pairs:
                if ("l", p) not in cache:
                    cache[("l", p)] = _svd(slices[p])
                if ("n", q) not in cache:
                    cache[("n", q)] = _svd(next_slices[q])
                svd_l, svd_next = cache[("l", p)], cache[("n", q)]
                s = np.linalg.svd(interlayer_product(svd_l, svd_next), compute_uv=False)
                rows.append({"layer": name, "next_layer": next_name, "layer_index": index,
                             "matrix": kind, "position": p, "next_position": q,
                             "sigma1": float(s[0]), "sigma2": float(s[1]) if s.size > 1
                             else float("nan"), "ratio": sigma_ratio(s)})
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame, *, by=("layer_index", "layer", "matrix")) -> pd.DataFrame:
    """Median, minimum and maximum sigma1/sigma2 over positions per layer and matrix."""
    by = [c for c in by if c in table.columns]
    grouped = table.groupby(by, sort=True)["ratio"]
    return grouped.agg(median="median", min="min", max="max", n="count").reset_index()
