"""Cosine similarity convergence (CSC), section 3 of the paper.

The relevance of layer k is set to random vectors v_1..v_n ~ N(0, I) and
backpropagated; if the method's matrix chain C has converged to rank 1,
every r_l = C v_i points along the same direction c (up to its sign, since
C v = c (gamma^T v) and gamma^T v may be negative). CSC measures this with the
cosine similarity s_cos(a, b) = a^T b / (|a| |b|) between every pair of
relevance vectors, per spatial location of a convolutional layer (h * w
values for a layer of shape (h, w, c)) and once for a dense layer.

:func:`pairwise_cosine` returns the signed cosines; the summaries use the
absolute value |s_cos| as the paper's code does, so a rank-1 chain scores 1
whatever the signs of gamma^T v_i. A location where a relevance vector is all
zero has no direction: its cosine is NaN and the summaries leave it out (and
count it).

Results of many images are pooled through fixed-bin histograms of |s_cos|
(:data:`BIN_EDGES`): bins of width 0.01 below 0.9, then 20 log-spaced bins
per decade of 1 - |s_cos| down to 1e-12, so that 1 - CSC is resolved on the
log scale of Figure 5. Percentiles from pooled histograms are exact to within
one bin (linear interpolation inside the bin).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PERCENTILES: tuple = (0, 1, 5, 10, 20, 50, 80, 95, 99, 100)


def _bin_edges() -> np.ndarray:
    linear = np.round(np.arange(0, 91) * 0.01, 2)  # 0.00 .. 0.90
    distance = 10.0 ** (-np.arange(21, 241) / 20.0)  # 1 - |cos| from 10^-1.05 to 1e-12
    return np.concatenate([linear, 1.0 - distance, [1.0]])


BIN_EDGES: np.ndarray = _bin_edges()
"""Edges of the |cos| histogram bins (311 bins on [0, 1])."""

PAPER_HISTOGRAM_EDGES: np.ndarray = np.array(
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 0.9999, 1.0])
"""The coarser bins of the paper's CSC histograms (Figure 5e-g)."""


def _as_locations(relevances) -> np.ndarray:
    """(n, ..., c) -> (n, locations, c) in float64."""
    r = np.asarray(relevances, dtype=np.float64)
    if r.ndim < 2:
        raise ValueError(
            f"relevances must have shape (n, ..., channels) with n >= 2, got {r.shape}")
    if r.shape[0] < 2:
        raise ValueError(f"need at least 2 relevance vectors to compare, got {r.shape[0]}")
    return r.reshape(r.shape[0], -1, r.shape[-1])


def pairwise_cosine(relevances) -> np.ndarray:
    """Signed cosine similarity s_cos(r_i, r_j) at every location, for every pair i < j.

    ``relevances`` has shape ``(n,) + layer shape`` with channels last: the
    relevances of one layer for n injected vectors and one image. A dense
    layer ``(n, c)`` has one location, a conv layer ``(n, h, w, c)`` has h*w.
    Returns an array of shape ``(n * (n - 1) / 2, locations)``; NaN where
    either vector is zero at that location.
    """
    r = _as_locations(relevances)
    n = r.shape[0]
    norms = np.linalg.norm(r, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = r / norms[..., None]
    rows = []
    for i in range(n):
        for j in range(i + 1, n):
            rows.append(np.einsum("lc,lc->l", unit[i], unit[j]))
    return np.clip(np.stack(rows), -1.0, 1.0)


def csc_summary(cosines, *, percentiles: Sequence[float] = PERCENTILES) -> dict:
    """Summary of |s_cos| values: ``median``, ``p<q>`` for each percentile q,
    ``n_values`` (defined cosines) and ``n_undefined`` (NaN: zero vectors).

    All statistics are NaN when no cosine is defined.
    """
    values = np.asarray(cosines, dtype=np.float64).ravel()
    finite = np.abs(values[np.isfinite(values)])
    summary = {"n_values": float(finite.size), "n_undefined": float(values.size - finite.size)}
    if finite.size == 0:
        summary["median"] = np.nan
        summary.update({f"p{q:g}": np.nan for q in percentiles})
        return summary
    summary["median"] = float(np.median(finite))
    for q, value in zip(percentiles, np.percentile(finite, list(percentiles))):
        summary[f"p{q:g}"] = float(value)
    return summary


def abs_cos_histogram(cosines, *, edges: np.ndarray = BIN_EDGES) -> np.ndarray:
    """Counts of the defined |s_cos| values in the bins ``edges`` (NaN left out)."""
    values = np.asarray(cosines, dtype=np.float64).ravel()
    finite = np.abs(values[np.isfinite(values)])
    counts, _ = np.histogram(finite, bins=edges)
    return counts


def histogram_percentiles(counts, percentiles: Sequence[float], *,
                          edges: np.ndarray = BIN_EDGES) -> np.ndarray:
    """Percentiles of the values counted in ``counts`` (linear inside a bin)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(edges) - 1,):
        raise ValueError(
            f"counts must have one entry per bin ({len(edges) - 1}), got shape {counts.shape}")
    total = counts.sum()
    if total == 0:
        return np.full(len(percentiles), np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(counts)]) / total
    targets = np.asarray(percentiles, dtype=np.float64) / 100.0
    result = []
    for t in targets:
        k = int(np.searchsorted(cumulative, t, side="left"))
        k = min(max(k, 1), len(edges) - 1)
        while k < len(counts) and counts[k - 1] == 0:
            k += 1
        lo, hi = cumulative[k - 1], cumulative[k]
        fraction = 0.0 if hi == lo else (t - lo) / (hi - lo)
        result.append(edges[k - 1] + np.clip(fraction, 0.0, 1.0) * (edges[k] - edges[k - 1]))
    return np.asarray(result)


def rebin(counts, *, edges: np.ndarray = BIN_EDGES,
          target_edges: np.ndarray = PAPER_HISTOGRAM_EDGES) -> np.ndarray:
    """Sum fine-bin ``counts`` into ``target_edges`` (each must be one of ``edges``)."""
    counts = np.asarray(counts)
    positions = [int(np.argmin(np.abs(edges - e))) for e in target_edges]
    for e, p in zip(target_edges, positions):
        if not np.isclose(edges[p], e, rtol=0, atol=1e-12):
            raise ValueError(f"target edge {e} is not an edge of the fine bins")
    return np.array([counts[a:b].sum() for a, b in zip(positions[:-1], positions[1:])])


def random_baseline(channels: int, *, rng: np.random.Generator, n_pairs: int = 10000,
                    statistic: str = "median") -> float:
    """|s_cos| of pairs of random N(0, I) vectors with ``channels`` entries,
    summarised by ``statistic`` ("median", the paper's baseline, or "mean").

    For large c, s_cos is approximately N(0, 1/c): the median |s_cos| tends to
    0.6745 / sqrt(c) and the mean to sqrt(2 / (pi c)).
    """
    if int(channels) < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    # all of a is drawn before b (the generator's order); b is drawn and
    # compared in blocks of rows, so that a wide layer (25,088 channels) does
    # not hold several n_pairs x channels arrays at once (same values: each
    # row's sums do not depend on the other rows)
    a = rng.standard_normal((n_pairs, int(channels)))
    step = max(1, 2**22 // int(channels))
    norm_a = np.concatenate([np.linalg.norm(a[k:k + step], axis=1)
                             for k in range(0, n_pairs, step)])
    cos = np.empty(n_pairs)
    for start in range(0, n_pairs, step):
        stop = min(start + step, n_pairs)
        b = rng.standard_normal((stop - start, int(channels)))
        cos[start:stop] = np.abs((a[start:stop] * b).sum(1)) / (norm_a[start:stop]
                                                                 * np.linalg.norm(b, axis=1))
    return float(np.median(cos) if statistic == "median" else np.mean(cos))


__all__ = ["PERCENTILES", "BIN_EDGES", "PAPER_HISTOGRAM_EDGES", "pairwise_cosine",
           "csc_summary", "abs_cos_histogram", "histogram_percentiles", "rebin",
           "random_baseline"]
