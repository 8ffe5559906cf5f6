"""The parameter-randomisation sanity check (section 3, Figures 1a, 4b, 6a-b).

For every method the analyzer graph is built once on the network's logit
model; :class:`~csc_analyzers.experiments.randomization.Randomizer` then
assigns random weights to the variables that graph reads, level by level
(cascading from the top, or independent). Each image's map at every level is
compared with its map under the original weights by SSIM with the sign flip
(both recipes of :mod:`csc_analyzers.metrics.ssim`; as in the paper's code the
randomised map comes first, so the flip negates the original map) and by
Spearman rank correlations of absolute and signed maps.

Work is done in (network, method, image) units stored atomically in a
:class:`~csc_analyzers.experiments.store.ResultStore`: a rerun skips finished
units, ``shard`` splits units across processes. The maps of the images in
``save_maps`` are written as ``.npz`` next to the table (Figure 1a).

Analyzers whose graph does not read the model's variables (e.g. a wrapper
holding its own copy of the weights) must offer ``sync_weights(layers)``,
which is called after every change of the weights with the layers that
changed; otherwise the run stops with an error naming the method before any
row of it is written. Each method's analyzer stays in the TF1 graph for the
rest of the process; the scripts run each method as a task in a graph of its
own that is released afterwards (:mod:`csc_analyzers.experiments.tasks`).
"""
from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from innvestigate.analyzer.network_base import AnalyzerNetworkBase
from innvestigate.analyzer.wrapper import WrapperBase

from ..metrics.ssim import similarity_scores
from ..registry import PLAIN
from .common import (PatternsProvider, analysis_model, build_analyzer, explain, map_reason,
                     record_recipe, row, select_for, unit_keys)
from .randomization import Randomizer, randomization_levels, weight_layers
from .store import ResultStore, Shard, unit_filename


def _analyzer_outputs(analyzer):
    """Output tensors of the Keras model an innvestigate analyzer (or the
    analyzer it wraps) runs; None if it has none (yet)."""
    current = analyzer
    while current is not None:
        model = getattr(current, "_analyzer_model", None)
        if model is not None:
            return list(model.outputs)
        current = getattr(current, "_subanalyzer", None)
    return None


def graph_reads(tensors, variables) -> set:
    """The ids of ``variables`` whose value ``tensors`` depend on in the TF1 graph."""
    handles = {}
    for variable in variables:
        op = variable.handle.op if hasattr(variable, "handle") else variable.op
        handles[op] = id(variable)
    seen, stack, found = set(), [t.op for t in tensors], set()
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op in handles:
            found.add(handles[op])
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


def weight_sync(analyzer, method: str, model):
    """A callable ``sync(layers)`` to run after the weights of the layers
    named ``layers`` of ``model`` change (None: any layer), so that the
    analyzer sees them. An analyzer with ``sync_weights()`` gets it called; an
    innvestigate analyzer whose graph reads a variable of every weight layer of
    ``model`` needs nothing. Any other analyzer (e.g. one holding a copy of the
    weights) raises ValueError naming the method. Call after a first analysis
    (the analyzer graph is built lazily)."""
    if hasattr(analyzer, "sync_weights"):
        return analyzer.sync_weights
    if isinstance(analyzer, (AnalyzerNetworkBase, WrapperBase)) or \
            getattr(analyzer, "_subanalyzer", None) is not None:
        outputs = _analyzer_outputs(analyzer)
        if outputs is not None:
            read = graph_reads(outputs, model.weights)
            missing = [layer.name for layer in weight_layers(model)
                       if not any(id(w) in read for w in layer.weights)]
            if not missing:
                return lambda layers=None: None
            raise ValueError(
                f"method {method!r}: the analyzer graph does not read the weights of layers "
                f"{missing}; it cannot follow in-place randomisation")
    raise ValueError(
        f"method {method!r}: analyzer {type(analyzer).__name__} does not read the model's "
        "variables and has no sync_weights(); it cannot follow in-place randomisation")


def save_maps(path: Path, **arrays) -> None:
    """Write arrays to ``path`` (.npz) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def maps_path(root, experiment: str, key) -> Path:
    return Path(root) / "maps" / experiment / unit_filename(key).replace(".csv", ".npz")


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_sanity(network, images, labels, image_ids, specs, out, *, mode: str = "cascading",
               seed: int = 0, shard: Shard = Shard(), patterns: PatternsProvider | None = None,
               chunk: int = 8, save_maps_for: Iterable[int] = (), progress=None,
               recipe: str = PLAIN, original_maps: dict | None = None) -> ResultStore:
    """Run the sanity check of ``specs`` on ``images`` (preprocessed, N x H x W x C,
    explained for their true ``labels``) and store the rows in ``out``.

    Rows per image and level: metrics ``ssim_paper``, ``ssim_standard``,
    ``spearman_abs``, ``spearman`` between the map at that level and the
    original map (SSIM at the method's ``ssim_percentile``); ``level`` 1..L counts
    from the top, ``layer`` is the scored layer of that level. ``chunk`` images
    are processed per pass over the levels (fewer weight assignments); a unit's
    rows are written when its chunk is done. ``progress`` is an optional
    callable receiving the number of units finished. ``recipe``
    (:data:`~csc_analyzers.registry.RECIPES`) is recorded with the units.
    ``original_maps`` (``(method, image id, class) -> map``, e.g. filled by
    :func:`~csc_analyzers.experiments.random_logit.run_random_logit` on the
    same network, analyzer and original weights) supplies original maps
    instead of explaining the image again; a missing key is explained.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(int)
    image_ids = [int(i) for i in image_ids]
    if not len(images) == len(labels) == len(image_ids):
        raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and image_ids "
                         f"({len(image_ids)}) must have the same length")
    experiment = f"sanity_{mode}"
    store = ResultStore(out, experiment)
    record_recipe(store, network, recipe)
    model = analysis_model(network)
    levels = randomization_levels(model, network.sanity_layers, mode=mode,
                                  aliases=getattr(network, "aliases", None))
    runnable, _skipped = select_for(network, specs, "sanity", patterns, recipe=recipe)
    position = {i: k for k, i in enumerate(image_ids)}
    pending = store.pending(shard.select(unit_keys(network.name, runnable, image_ids)))
    keep_maps = set(int(i) for i in save_maps_for)
    by_name = {spec.name: spec for spec in runnable}
    if not pending:  # nothing to randomise: skip copying every weight out
        return store
    known = {} if original_maps is None else original_maps

    def original(analyzer, spec, k):
        """Image k's map under the original weights (explained, unless known)."""
        found = known.get((spec.name, image_ids[k], int(labels[k])))
        if found is not None:
            return found
        return explain(analyzer, images[k], labels[k], spec, image_id=image_ids[k])

    with Randomizer(model, seed=seed) as randomizer:
        for method, group in itertools.groupby(pending, key=lambda key: key[1]):
            spec = by_name[method]
            analyzer = build_analyzer(spec, model, network, patterns, recipe=recipe)
            sync = None
            for keys in _chunks(list(group), max(1, int(chunk))):
                index = [position[key[2]] for key in keys]
                changed = randomizer.set_randomized(())
                if sync is not None:
                    sync(changed)
                maps = [[original(analyzer, spec, k)] for k in index]
                if sync is None:
                    sync = weight_sync(analyzer, spec.name, model)
                for level in levels:
                    sync(randomizer.set_randomized(level.randomized))
                    for slot, k in enumerate(index):
                        maps[slot].append(explain(analyzer, images[k], labels[k], spec,
                                                   image_id=image_ids[k]))
                sync(randomizer.set_randomized(()))
                for key, stack in zip(keys, maps):
                    rows = []
                    for level in levels:
                        scores = similarity_scores(stack[level.index], stack[0],
                                                   percentile=spec.ssim_percentile)
                        bad, reason = map_reason(stack[0], stack[level.index],
                                                 image=images[position[key[2]]])
                        rows.extend(row(network.name, method, key[2], experiment, level.index,
                                        level.layer, metric, value, seed, nonfinite=bad,
                                        undefined=reason)
                                    for metric, value in scores.items())
                    if key[2] in keep_maps:
                        save_maps(maps_path(out, experiment, key), maps=np.stack(stack),
                                  layers=np.array(["original"] + [lv.layer for lv in levels]))
                    store.write(key, rows)
                    if progress is not None:
                        progress(1)
    return store


__all__ = ["run_sanity", "weight_sync", "graph_reads", "save_maps", "maps_path"]
