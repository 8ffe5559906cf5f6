"""Class sensitivity on two-object images (Figure 1b-e, and a ground-truth score).

An image shows object A and object B with pixel masks. For each method the
maps explaining A and explaining B are compared:

* ``l1`` / ``l1_mean``: the L1 norm (and per-pixel mean, the number printed
  in Figure 1e) of the difference of the two maps, each normalised to [0, 1]
  (:func:`~csc_analyzers.metrics.heatmaps.normalize_abs`);
* ``mask_gap``: the share of positive relevance inside A's mask when
  explaining A minus the same share when explaining B. A class-sensitive
  method moves relevance onto the explained object (gap > 0); a
  class-insensitive one gives the same map for both classes (gap 0). It is
  undefined (NaN) for a map without positive relevance (LRP a1b0 maps of a
  negative logit, for one);
* ``abs_mask_gap``: the same with the share of *absolute* relevance,
  ``sum_A |h| / sum |h|`` (:func:`abs_share`): defined for every finite map
  that is not all zero, whatever its sign, so every method is scored on every
  image. The report gives its median over images with a bootstrap interval;
  a method is class-sensitive when that interval lies above 0.
"""
from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from ..metrics.heatmaps import normalize_abs
from ..registry import PLAIN
from .common import (PatternsProvider, analysis_model, build_analyzer, explain, map_reason,
                     record_recipe, row, select_for, unit_keys)
from .sanity import maps_path, save_maps
from .store import ResultStore, Shard

EXPERIMENT = "class_sensitivity"


def positive_share(heatmap, mask) -> float:
    """Sum of the positive relevance inside ``mask`` over all positive relevance
    (NaN if the map has no positive relevance)."""
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if h.ndim != 2 or h.shape != m.shape:
        raise ValueError(f"heatmap {h.shape} and mask {m.shape} must be 2-D of equal shape")
    positive = np.clip(h, 0.0, None)
    total = positive.sum()
    return float(positive[m].sum() / total) if total > 0 else float("nan")


def abs_share(heatmap, mask) -> float:
    """Sum of ``|relevance|`` inside ``mask`` over the sum of ``|relevance|``
    (NaN if the map is all zero or not finite)."""
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if h.ndim != 2 or h.shape != m.shape:
        raise ValueError(f"heatmap {h.shape} and mask {m.shape} must be 2-D of equal shape")
    if not np.isfinite(h).all():
        return float("nan")
    magnitude = np.abs(h)
    total = magnitude.sum()
    return float(magnitude[m].sum() / total) if total > 0 else float("nan")


def class_sensitivity_scores(map_a, map_b, mask_a, *, percentile: float = 99.5) -> dict:
    """``l1``, ``l1_mean`` (difference of the [0, 1]-normalised maps),
    ``mask_gap`` = share(map_a in mask_a) - share(map_b in mask_a) of the
    positive relevance, and ``abs_mask_gap``, the same for ``|relevance|``."""
    a = np.asarray(map_a, dtype=np.float64)
    b = np.asarray(map_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"maps have shapes {a.shape} and {b.shape}; expected equal 2-D maps")
    diff = np.abs(normalize_abs(a, percentile=percentile) - normalize_abs(b, percentile=percentile))
    return {
        "l1": float(diff.sum()),
        "l1_mean": float(diff.mean()),
        "mask_gap": positive_share(a, mask_a) - positive_share(b, mask_a),
        "abs_mask_gap": abs_share(a, mask_a) - abs_share(b, mask_a),
    }


def run_class_sensitivity(network, images, masks, labels, image_ids, specs, out, *,
                          seed: int = 0, shard: Shard = Shard(),
                          patterns: PatternsProvider | None = None,
                          save_maps_for: Iterable[int] = (), progress=None,
                          recipe: str = PLAIN) -> ResultStore:
    """``images`` N x H x W x C (preprocessed), ``masks`` N x 2 x H x W (objects A, B),
    ``labels`` N x 2 (classes of A and B). Stores ``l1``, ``l1_mean``, ``mask_gap``,
    ``abs_mask_gap`` per method and image; ``recipe`` (:data:`~csc_analyzers.registry.RECIPES`) is
    recorded with them."""
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    labels = np.asarray(labels).astype(int)
    image_ids = [int(i) for i in image_ids]
    if masks.shape[:2] != (len(images), 2) or masks.shape[2:] != images.shape[1:3]:
        raise ValueError(f"masks have shape {masks.shape}; expected {(len(images), 2)} + "
                         f"{images.shape[1:3]}")
    if labels.shape != (len(images), 2) or len(image_ids) != len(images):
        raise ValueError(f"labels {labels.shape} must be (N, 2) and image_ids N={len(images)}")
    store = ResultStore(out, EXPERIMENT)
    record_recipe(store, network, recipe)
    model = analysis_model(network)
    runnable, _skipped = select_for(network, specs, EXPERIMENT, patterns, recipe=recipe)
    position = {i: k for k, i in enumerate(image_ids)}
    pending = store.pending(shard.select(unit_keys(network.name, runnable, image_ids)))
    keep_maps = set(int(i) for i in save_maps_for)
    by_name = {spec.name: spec for spec in runnable}
    for method, group in itertools.groupby(pending, key=lambda key: key[1]):
        spec = by_name[method]
        analyzer = build_analyzer(spec, model, network, patterns, recipe=recipe)
        for key in group:
            k = position[key[2]]
            map_a = explain(analyzer, images[k], labels[k, 0], spec, image_id=key[2])
            map_b = explain(analyzer, images[k], labels[k, 1], spec, image_id=key[2])
            scores = class_sensitivity_scores(map_a, map_b, masks[k, 0])
            # a constant map has an L1 difference and relevance shares; a zero map has not
            bad, reason = map_reason(map_a, map_b, image=images[k], constant_undefined=False)
            rows = [row(network.name, method, key[2], EXPERIMENT, 0, "logits", metric, value, seed,
                        nonfinite=bad, undefined=reason)
                    for metric, value in scores.items()]
            if key[2] in keep_maps:
                save_maps(maps_path(out, EXPERIMENT, key), maps=np.stack([map_a, map_b]),
                          classes=labels[k], masks=masks[k])
            store.write(key, rows)
            if progress is not None:
                progress(1)
    return store


__all__ = ["EXPERIMENT", "positive_share", "abs_share", "class_sensitivity_scores", "run_class_sensitivity"]
