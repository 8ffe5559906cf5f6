"""Heatmap post-processing and normalisation for display and comparison.

The paper turns an attribution of shape ``(..., H, W, C)`` into a 2-D map
either by summing over the colour channels (``sum``: methods whose relevance
is signed and conserved, e.g. LRP, DTD, DeepLIFT) or by the maximum absolute
value over the channels (``abs.max``: gradient-like methods).
"""
from __future__ import annotations

import numpy as np

POSTPROCESSING = ("sum", "abs.max")


def postprocess(attribution, *, method: str) -> np.ndarray:
    """Reduce the last (channel) axis: ``sum`` gives ``x.sum(-1)``,
    ``abs.max`` gives ``|x|.max(-1)``."""
    x = np.asarray(attribution, dtype=np.float64)
    if x.ndim < 3:
        raise ValueError(
            f"attribution has shape {x.shape}; expected (..., H, W, C) with a channel axis")
    if method == "sum":
        return x.sum(axis=-1)
    if method == "abs.max":
        return np.abs(x).max(axis=-1)
    raise ValueError(f"unknown post-processing {method!r}; valid: {POSTPROCESSING}")


def normalize_signed(heatmap, *, percentile: float = 99.5) -> np.ndarray:
    """Scale positive and negative relevance separately into [-1, 1]: positive
    values by the ``percentile`` of the map, negative values by its
    ``100 - percentile`` percentile, then clip. A map of one sign is divided by
    the ``percentile`` of its absolute values and keeps its sign."""
    x = np.asarray(heatmap, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"heatmap has shape {x.shape}; expected a 2-D map (H, W)")
    if (x > 0).all() or (x < 0).all():
        scale = np.percentile(np.abs(x), percentile)
        return np.sign(x.mean()) * np.abs(x) / scale if scale > 0 else np.zeros_like(x)
    high = np.percentile(x, percentile)
    low = np.percentile(x, 100.0 - percentile)
    positive = np.where(x > 0, x, 0.0)
    negative = np.where(x < 0, x, 0.0)
    if high > 0:
        positive = positive / high
    if low < 0:
        negative = -negative / low
    return np.clip(positive + negative, -1.0, 1.0)


def normalize_abs(heatmap, *, percentile: float = 99.5) -> np.ndarray:
    """``|normalize_signed(heatmap)|``: the map scaled into [0, 1] (Figure 1e)."""
    return np.abs(normalize_signed(heatmap, percentile=percentile))


__all__ = ["POSTPROCESSING", "postprocess", "normalize_signed", "normalize_abs"]
