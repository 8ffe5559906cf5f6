"""Singular-value analysis of the pattern matrices (the paper's Figure 3).

A Dense/Conv2D layer's backward matrix (``r_l = M r_{l+1}``) is its kernel in
Keras' ``(in, out)`` layout: ``W`` for the gradient, ``A`` for PatternNet
(eq. 10) and ``A (.) W`` for PatternAttribution (eq. 11).

Slicing (the paper: "we sliced the 3x3 convolutional kernels to 1x1
kernels"): a Conv2D kernel ``(kh, kw, c_in, c_out)`` gives one ``c_in x c_out``
matrix per kernel position ``(i, j)``. A Dense layer fed by a ``Flatten`` of
an ``(h, w, c)`` tensor (VGG-16's fc1) is sliced the same way into one
``c x n_out`` matrix per spatial position ``(i, j)``, since Flatten orders the
features as ``(h, w, c)``; any other Dense layer is one matrix (position
``"full"``). Optionally (``include_full``) every kernel is also analysed whole,
reshaped to ``(kh * kw * c_in, c_out)``.

Inter-layer products: with the SVD ``M_l = U_l S_l V_l`` of consecutive
layers, ``T_l = sqrt(S_l) V_l U_{l+1} sqrt(S_{l+1})`` (``V_l`` is ``k x out_l``,
``U_{l+1}`` is ``in_{l+1} x k'``; the channel counts ``out_l`` and
``in_{l+1}`` of the sliced matrices must agree, otherwise the pair is
skipped). Consecutive means consecutive in model order. Position pairs: for
two convolutions with the same kernel size the equal kernel positions,
otherwise up to ``max_pairs`` pairs drawn with ``rng`` from all combinations
(e.g. VGG-16's conv5_3 x fc1: 9 x 49 combinations).
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
    sigma1/sigma2 of every sliced matrix of ``A``, ``W`` and ``A (.) W`` of
    every Dense/Conv2D layer (Figure 3a-b)."""
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
    sigma1, sigma2, ratio`` of the inter-layer products ``T_l`` (Figure 3c)."""
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
