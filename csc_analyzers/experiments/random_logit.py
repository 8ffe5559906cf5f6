"""Random logit (section 3, Figure 4a): SSIM between the map explaining an
image's true class and the map explaining a class drawn uniformly from the
other classes (seeded per image, never the true class)."""
from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from ..metrics.ssim import similarity_scores
from ..registry import PLAIN
from .common import (PatternsProvider, analysis_model, build_analyzer, explain, map_reason,
                     random_class, record_recipe, row, select_for, unit_keys)
from .sanity import maps_path, save_maps
from .store import ResultStore, Shard

EXPERIMENT = "random_logit"


def run_random_logit(network, images, labels, image_ids, specs, out, *, seed: int = 0,
                     shard: Shard = Shard(), patterns: PatternsProvider | None = None,
                     save_maps_for: Iterable[int] = (), progress=None,
                     recipe: str = PLAIN, original_maps: dict | None = None) -> ResultStore:
    """Store, per method and image, the rows ``ssim_paper``, ``ssim_standard``,
    ``spearman_abs``, ``spearman`` (true-class map vs random-class map, the
    flip negating the random-class map as in the paper's code; SSIM at the
    method's ``ssim_percentile``) and ``random_class``; ``recipe``
    (:data:`~csc_analyzers.registry.RECIPES`) is recorded with them.
    ``original_maps`` (a dict, optional) receives each true-class map under
    the key ``(method, image id, class)``, for :func:`~csc_analyzers.experiments.sanity.run_sanity`
    on the same network and weights to reuse as its original map."""
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(int)
    image_ids = [int(i) for i in image_ids]
    if not len(images) == len(labels) == len(image_ids):
        raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and image_ids "
                         f"({len(image_ids)}) must have the same length")
    store = ResultStore(out, EXPERIMENT)
    record_recipe(store, network, recipe)
    model = analysis_model(network)
    n_classes = int(model.outputs[0].shape[-1])
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
            other = random_class(labels[k], n_classes, seed=seed, image_id=key[2])
            true_map = explain(analyzer, images[k], labels[k], spec, image_id=key[2])
            if original_maps is not None:
                original_maps[(method, key[2], int(labels[k]))] = true_map
            other_map = explain(analyzer, images[k], other, spec, image_id=key[2])
            scores = similarity_scores(true_map, other_map, percentile=spec.ssim_percentile)
            scores["random_class"] = other
            bad, reason = map_reason(true_map, other_map, image=images[k])
            rows = [row(network.name, method, key[2], EXPERIMENT, 0, "logits", metric, value, seed,
                        nonfinite=bad and metric != "random_class",
                        undefined=reason if metric != "random_class" else "")
                    for metric, value in scores.items()]
            if key[2] in keep_maps:
                save_maps(maps_path(out, EXPERIMENT, key), maps=np.stack([true_map, other_map]),
                          classes=np.array([labels[k], other]))
            store.write(key, rows)
            if progress is not None:
                progress(1)
    return store


__all__ = ["EXPERIMENT", "run_random_logit"]
