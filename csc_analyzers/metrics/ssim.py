"""SSIM between two saliency maps (two named recipes), and Spearman rank correlations.

Section 3 of the paper: both maps are normalised by percentiles and clipped to
[0, 1]; SSIM (Wang et al., 2004) uses a window of 5 pixels; because a
randomised last layer may flip the sign of a map, the score is the maximum of
SSIM(a, b) and SSIM(a, -b), the second map negated before its normalisation.

Two recipes (:data:`RECIPES`, chosen with ``recipe=``) differ in the
normalisation and in SSIM's ``data_range``; with percentile ``p`` (99.5, 100
for RectGrad) and ``P_q`` the q-th percentile of the map (numpy's default,
linear interpolation):

``paper``
    What the paper's code computed (``normalize_sanity`` and ``ssim_flipped``
    of its ``when_explanations_lie.py``): ``clip((x - P_p) / (P_{100-p} - P_p),
    0, 1)``, so the high end of the map goes to 0 and the low end to 1 (the map
    is inverted), then scikit-image 0.16.2's ``compare_ssim(..., win_size=5)``
    without ``data_range``, which for float input took the dtype range -1..1:
    ``data_range = 2``. Its other settings are today's defaults (uniform
    window, sample covariance, K1 = 0.01, K2 = 0.03), so it equals
    ``structural_similarity(..., win_size=5, data_range=2)``. A map whose two
    percentiles coincide (e.g. a constant map) made the paper's code divide
    by zero.
``standard``
    ``clip((x - P_{100-p}) / (P_p - P_{100-p}), 0, 1)`` (the high end goes to
    1) and ``data_range = 1``, the range the normalised maps have.

In both recipes a map whose two percentiles coincide (a constant or all-zero
map, or one with fewer than ``100 - p`` % of its pixels off a common value)
has no normalisation: it becomes all NaN and its SSIM is NaN, so the
experiments flag the row instead of scoring an undefined map.

The two recipes give different numbers for the same maps: ``paper`` is the
one to compare with the paper's Figure 4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

@dataclass(frozen=True)
class SSIMRecipe:
    """How two maps are normalised and compared by SSIM.

    ``inverted``: the ``percentile`` percentile of the map goes to 0 and the
    ``100 - percentile`` percentile to 1 (True, the paper's code) or the other
    way round (False). ``data_range``: SSIM's data range (sets its constants
    C1 = (0.01 R)^2, C2 = (0.03 R)^2). A map whose two percentiles coincide
    becomes all NaN (its score is NaN)."""

    name: str
    inverted: bool
    data_range: float
    summary: str

    def __post_init__(self):
        if not self.data_range > 0:
            raise ValueError(f"SSIMRecipe {self.name!r}: data_range must be > 0")

    @property
    def metric(self) -> str:
        """The metric name the experiments store this recipe's SSIM under."""
        return f"ssim_{self.name}"

    def normalize(self, heatmap, *, percentile: float = 99.5) -> np.ndarray:
        """The map mapped linearly by its percentiles and clipped to [0, 1]."""
        x = np.asarray(heatmap, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"heatmap has shape {x.shape}; expected a 2-D map (H, W)")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile={percentile}: expected 50 < percentile <= 100")
        low, high = np.percentile(x, [100.0 - percentile, percentile])
        start, end = (high, low) if self.inverted else (low, high)
        if not end != start:  # the percentiles coincide (or are NaN)
            return np.full_like(x, np.nan)
        return np.clip((x - start) / (end - start), 0.0, 1.0)


RECIPES = {
    "paper": SSIMRecipe(
        "paper", inverted=True, data_range=2.0,
        summary="high percentile -> 0, low -> 1, data_range 2 (the paper's code)"),
    "standard": SSIMRecipe(
        "standard", inverted=False, data_range=1.0,
        summary="low percentile -> 0, high -> 1, data_range 1"),
}
RECIPE_NAMES = tuple(RECIPES)
SSIM_METRICS = tuple(recipe.metric for recipe in RECIPES.values())
METRICS = SSIM_METRICS + ("spearman_abs", "spearman")


def get_recipe(recipe) -> SSIMRecipe:
    """The :class:`SSIMRecipe` named ``recipe`` (or ``recipe`` itself)."""
    if isinstance(recipe, SSIMRecipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown SSIM recipe {recipe!r}; valid recipes: "
                         f"{', '.join(RECIPE_NAMES)}")
    return RECIPES[recipe]


def ssim_label(metric: str) -> str:
    """An axis label for an SSIM metric, naming its recipe."""
    for recipe in RECIPES.values():
        if metric == recipe.metric:
            return f"SSIM ({recipe.name} recipe)"
    return metric


def _check_pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"saliency maps have shapes {a.shape} and {b.shape}; expected two 2-D maps "
            "of equal shape (post-process (H, W, C) attributions first)")
    return a, b


def normalize_percentile(heatmap, *, percentile: float = 99.5) -> np.ndarray:
    """The ``standard`` recipe's normalisation: the ``100 - percentile``
    percentile goes to 0 and the ``percentile`` percentile to 1, then clip to
    [0, 1]. Positive and negative values share one scale. A map whose two
    percentiles coincide (e.g. a constant map) gives NaN."""
    return RECIPES["standard"].normalize(heatmap, percentile=percentile)


def _ssim_normalised(x, y, recipe: SSIMRecipe, win_size: int) -> float:
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    return float(structural_similarity(x, y, win_size=win_size, data_range=recipe.data_range))


def ssim(a, b, *, recipe="paper", percentile: float = 99.5, win_size: int = 5,
         flip: bool = True) -> float:
    """SSIM between the maps ``a`` and ``b`` normalised by ``recipe`` (a name
    of :data:`RECIPES`: ``"paper"`` or ``"standard"``); with ``flip`` the
    maximum of SSIM(a, b) and SSIM(a, -b), ``-b`` normalised on its own (the
    paper's sanity-check score; the order of the maps matters). NaN if the
    recipe makes a map NaN (see :class:`SSIMRecipe`)."""
    recipe = get_recipe(recipe)
    a, b = _check_pair(a, b)
    if min(a.shape) < win_size:
        raise ValueError(f"maps of shape {a.shape} are smaller than win_size={win_size}")
    norm_a = recipe.normalize(a, percentile=percentile)
    score = _ssim_normalised(norm_a, recipe.normalize(b, percentile=percentile), recipe,
                             win_size)
    if flip and np.isfinite(score):
        flipped = _ssim_normalised(norm_a, recipe.normalize(-b, percentile=percentile),
                                   recipe, win_size)
        score = max(score, flipped) if np.isfinite(flipped) else flipped
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


def similarity_scores(a, b, *, percentile: float = 99.5,
                      recipe: str | Sequence[str] = RECIPE_NAMES) -> dict:
    """The scores the experiments record for a pair of 2-D maps: the SSIM
    (with flip) of each recipe in ``recipe`` (a name or a sequence of names;
    default all), stored as ``ssim_<recipe>`` (``ssim_paper``,
    ``ssim_standard``), then ``spearman_abs`` and ``spearman``."""
    names = [recipe] if isinstance(recipe, (str, SSIMRecipe)) else list(recipe)
    if not names:
        raise ValueError(f"recipe: no SSIM recipe given; valid recipes: "
                         f"{', '.join(RECIPE_NAMES)}")
    scores = {}
    for name in names:
        chosen = get_recipe(name)
        scores[chosen.metric] = ssim(a, b, recipe=chosen, percentile=percentile)
    scores["spearman_abs"] = spearman(a, b, absolute=True)
    scores["spearman"] = spearman(a, b, absolute=False)
    return scores


__all__ = ["SSIMRecipe", "RECIPES", "RECIPE_NAMES", "SSIM_METRICS", "METRICS", "get_recipe",
           "ssim_label", "normalize_percentile", "ssim", "spearman", "similarity_scores"]
