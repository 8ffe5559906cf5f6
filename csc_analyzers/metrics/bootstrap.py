"""Median over images with a bootstrap confidence interval (Figure 4b)."""
from __future__ import annotations

import numpy as np


def bootstrap_median(values, *, rng: np.random.Generator, n_resamples: int = 10_000,
                     low: float = 0.5, high: float = 99.5) -> tuple:
    """``(median, lower, upper)``: the median of ``values`` and the ``low`` and
    ``high`` percentiles of the medians of ``n_resamples`` resamples drawn with
    replacement (Efron's percentile bootstrap; the paper's 99 % interval).
    NaN values are dropped first."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("bootstrap_median: no finite values")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles low={low}, high={high}: expected 0 <= low < high <= 100")
    medians = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        index = rng.integers(0, x.size, size=(stop - start, x.size))
        medians[start:stop] = np.median(x[index], axis=1)
    lower, upper = np.percentile(medians, [low, high])
    return float(np.median(x)), float(lower), float(upper)


__all__ = ["bootstrap_median"]
