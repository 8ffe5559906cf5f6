"""The paper's SSIM between two saliency maps, and Spearman rank correlations.

Section 3: both maps are normalised by percentiles and clipped to [0, 1]
(:func:`normalize_percentile`); SSIM (Wang et al., 2004) uses a window of 5
pixels; because a randomised last layer may flip the sign of a map, the score
is the maximum of SSIM(a, b) and SSIM(a, -b) (:func:`ssim`).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity


def _check_pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"saliency maps have shapes {a.shape} and {b.shape}; expected two 2-D maps "
            "of equal shape (post-process (H, W, C) attributions first)")
    return a, b


def normalize_percentile(heatmap, *, percentile: float = 99.5) -> np.ndarray:
    """Map ``heatmap`` linearly so that its ``100 - percentile`` percentile goes to
    0 and its ``percentile`` percentile to 1, then clip to [0, 1]. Positive and
    negative values share one scale. A constant map gives zeros."""
    x = np.asarray(heatmap, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"heatmap has shape {x.shape}; expected a 2-D map (H, W)")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile={percentile}: expected 50 < percentile <= 100")
    low = np.percentile(x, 100.0 - percentile)
    high = np.percentile(x, percentile)
    if not high > low:
        return np.zeros_like(x)
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def ssim(a, b, *, percentile: float = 99.5, win_size: int = 5, flip: bool = True) -> float:
    """SSIM between the percentile-normalised maps ``a`` and ``b``; with ``flip``
    the maximum of SSIM(a, b) and SSIM(a, -b) (the paper's sanity-check score).
    Normalised maps lie in [0, 1], so ``data_range`` is 1."""
    a, b = _check_pair(a, b)
    if min(a.shape) < win_size:
        raise ValueError(f"maps of shape {a.shape} are smaller than win_size={win_size}")
    norm_a = normalize_percentile(a, percentile=percentile)
    score = structural_similarity(norm_a, normalize_percentile(b, percentile=percentile),
                                  win_size=win_size, data_range=1.0)
    if flip:
        flipped = structural_similarity(
            norm_a, normalize_percentile(-b, percentile=percentile),
            win_size=win_size, data_range=1.0)
        score = max(score, flipped)
    return float(score)


def spearman(a, b, *, absolute: bool) -> float:
    """Spearman rank correlation of the pixels of two maps, of their absolute
    values when ``absolute`` is True (sign flips do not count) or of the signed
    values otherwise. NaN if a map is constant."""
    a, b = _check_pair(a, b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).correlation)


def similarity_scores(a, b, *, percentile: float = 99.5) -> dict:
    """The scores the experiments record for a pair of 2-D maps:
    ``ssim`` (with flip), ``spearman_abs`` and ``spearman``."""
    return {
        "ssim": ssim(a, b, percentile=percentile),
        "spearman_abs": spearman(a, b, absolute=True),
        "spearman": spearman(a, b, absolute=False),
    }


__all__ = ["normalize_percentile", "ssim", "spearman", "similarity_scores"]
