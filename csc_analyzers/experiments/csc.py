"""The CSC experiment (section 3): random relevance injected at the paper's
layers, cosine similarity convergence at every lower layer.

For each method and image, for each injection layer k of the network
(``network.csc_layers``), ``n_vectors`` vectors v_i ~ N(0, I) are set as the
relevance of layer k and backpropagated with the method's rule in one session
run; :func:`csc_analyzers.metrics.csc.pairwise_cosine` compares them at every
layer of ``network.layers`` below k. The random vectors depend only on
(seed, image, injection layer), so every method sees the same vectors.

Work is done in (method, image) units through
:class:`~csc_analyzers.experiments.store.ResultStore`: a unit stores the
histogram of |s_cos| (fine bins, :data:`~csc_analyzers.metrics.csc.BIN_EDGES`),
the exact minimum and maximum, the number of defined and undefined cosines
and, where the injection layer is small enough, the exact check: the
derivation matrix C (:func:`csc_analyzers.convergence.derivation_matrices`),
the relative error of C v against the propagated vectors (a rule that is not
linear in v, like GuidedBP, has no such matrix) and, for linear rules, the
median over locations of sigma1/sigma2 of C. Aggregation pools
the histograms of all images: the median and percentiles of the tidy table
are those of all locations of all images and vector pairs, like the paper's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow.keras import layers as klayers

from ..convergence import derivation_matrices, location_singular_value_ratios
from ..injection import INPUT, LayerNames
from ..integrity import NAN_INPUT, NAN_MAP, OVERFLOW, ZERO_MAP, undefined_reason
from ..metrics.csc import (BIN_EDGES, PERCENTILES, abs_cos_histogram, histogram_percentiles,
                           pairwise_cosine, random_baseline)
from ..registry import PLAIN, RECIPE_SETTINGS_DEFAULTS, MethodSpec, recipe_settings
from .store import ResultStore, Shard, atomic_write_text

log = logging.getLogger(__name__)

EXPERIMENT = "csc"
TABLE_COLUMNS = ("network", "method", "injection_layer", "layer", "layer_index",
                 "statistic", "value", "n_images", "n_vectors", "nonfinite", "undefined")
HISTOGRAM_COLUMNS = ("network", "method", "injection_layer", "injection_layer_index",
                     "layer", "layer_index", "bin",
                     "bin_low", "bin_high", "count", "n_images", "n_vectors")
BASELINE_METHOD = "random baseline"
LINEARITY_TOLERANCE = 1e-3  # relative error of C v: above it, no sigma1/sigma2 row


@dataclass(frozen=True)
class Plan:
    """What the experiment runs for one network: methods, skipped methods with
    the reason, the injection layers and the layers below each of them."""

    methods: tuple
    skipped: tuple  # (method name, reason)
    injection_layers: tuple
    lower_layers: dict  # injection layer -> tuple of lower layer names


def _analyzer_table():
    from ..factory import analyzers
    return analyzers


def plan_methods(network, methods: Sequence[MethodSpec], *, patterns=None,
                 table=None, recipe: str = PLAIN) -> tuple:
    """Split ``methods`` into those that run on ``network`` and (name, reason)
    for those skipped: excluded from CSC or this network (under ``recipe``),
    analyzer not registered, no patterns for a pattern method."""
    table = _analyzer_table() if table is None else table
    run, skipped = [], []
    for spec in methods:
        if not spec.runs_on(network.name, EXPERIMENT):
            skipped.append((spec.name, f"left out of CSC on {network.name} by the registry"))
        elif not spec.runs_on(network.name, EXPERIMENT, recipe=recipe):
            skipped.append((spec.name, spec.recipe_change(network.name, recipe).note))
        elif spec.analyzer not in table:
            skipped.append((spec.name, f"analyzer {spec.analyzer!r} is not registered"))
        elif not hasattr(table[spec.analyzer], "propagate"):
            skipped.append((spec.name, f"analyzer {spec.analyzer!r} has no propagate()"))
        elif spec.needs_patterns and patterns is None:
            skipped.append((spec.name, "needs patterns and no patterns provider was given"))
        else:
            run.append(spec)
    return tuple(run), tuple(skipped)


def make_plan(network, methods: Sequence[MethodSpec], *, patterns=None, table=None,
              recipe: str = PLAIN) -> Plan:
    """Check the network's layer names and choose the methods (no heavy work)."""
    names = LayerNames(network.model, network.aliases)
    for name in network.layers:
        names.resolve(name)
    layers = list(network.layers)
    lower = {}
    for k in network.csc_layers:
        if k not in layers:
            raise ValueError(
                f"injection layer {k!r} of network {network.name!r} is not in network.layers")
        lower[k] = tuple(layers[:layers.index(k)])
        if not lower[k]:
            raise ValueError(f"injection layer {k!r} of {network.name!r} has no lower layer")
    run, skipped = plan_methods(network, methods, patterns=patterns, table=table, recipe=recipe)
    return Plan(run, skipped, tuple(network.csc_layers), lower)


def vectors_rng(seed: int, image_id: int, injection_position: int) -> np.random.Generator:
    """The generator of the random relevance of one (image, injection layer)."""
    return np.random.default_rng([int(seed), int(image_id), int(injection_position)])


def create_method_analyzer(spec: MethodSpec, network, patterns=None, *, recipe: str = PLAIN):
    """The analyzer of ``spec`` for ``network`` under ``recipe`` (graph built
    once, reused; shared with the other experiments through
    ``network.analyzer_cache``)."""
    from .common import analysis_model, build_analyzer
    return build_analyzer(spec, analysis_model(network), network, patterns, recipe=recipe)


def unit_vectors(seed: int, image_id: int, injection_position: int, n_vectors: int,
                 shape: tuple) -> np.ndarray:
    """The ``n_vectors`` random N(0, I) relevance vectors (float32) of one
    (image, injection layer) of a CSC unit, each of ``shape``."""
    rng = vectors_rng(seed, image_id, injection_position)
    return rng.standard_normal((int(n_vectors),) + tuple(shape)).astype(np.float32)


def unit_rows(analyzer, x: np.ndarray, network, plan: Plan, *, image_id: int,
              method: str, n_vectors: int, seed: int, exact_max_dim: int,
              propagated: Optional[dict] = None) -> list:
    """The stored rows of one (method, image) unit. ``propagated``: for an
    injection layer whose vectors (:func:`unit_vectors`) were already
    propagated to its lower layers, ``{injection: {layer: relevance}}``
    (the audit's check computes them); the others are propagated here."""
    from .common import image_id_options
    layer_index = {name: i for i, name in enumerate(network.layers)}
    rows = []

    bad_maps = set()  # (injection, layer) whose propagated relevance holds NaN/Inf
    reasons = {}  # (injection, layer) -> why its relevance is undefined (zero, overflow, NaN)

    def add(injection, layer, statistic, value, bin_index=-1):
        value = float(value)
        rows.append({"network": network.name, "method": method, "image": image_id,
                     "injection_layer": injection, "layer": layer,
                     "layer_index": layer_index[layer], "statistic": statistic,
                     "bin": bin_index, "value": value, "n_vectors": n_vectors,
                     "nonfinite": (injection, layer) in bad_maps or not np.isfinite(value),
                     "undefined": reasons.get((injection, layer), "")})

    for position, injection in enumerate(plan.injection_layers):
        lower = list(plan.lower_layers[injection])
        shape = tuple(analyzer.relevance_shape(injection))
        vectors = unit_vectors(seed, image_id, position, n_vectors, shape)
        if propagated is not None and injection in propagated:
            relevances = propagated[injection]
        else:
            relevances = analyzer.propagate(x, vectors, injection, lower,
                                            **image_id_options(analyzer, [image_id]))
        for layer in lower:
            if not np.isfinite(relevances[layer]).all():
                bad_maps.add((injection, layer))
            reason = undefined_reason(relevances[layer], inputs=x, constant_undefined=False)
            if reason:
                reasons[(injection, layer)] = reason
            cos = pairwise_cosine(relevances[layer])
            finite = np.abs(cos[np.isfinite(cos)])
            counts = abs_cos_histogram(cos)
            for b in np.flatnonzero(counts):
                add(injection, layer, "count", counts[b], int(b))
            add(injection, layer, "n_values", finite.size)
            add(injection, layer, "n_undefined", cos.size - finite.size)
            if finite.size:
                add(injection, layer, "min", finite.min())
                add(injection, layer, "max", finite.max())
        if int(np.prod(shape)) <= exact_max_dim:
            matrices = derivation_matrices(analyzer, x, injection, lower)
            flat = vectors.reshape(n_vectors, -1).T
            for layer in lower:
                # C is the rule's matrix only if the rule is linear in v (not
                # GuidedBP, Deconv): check C v against the propagated vectors
                actual = relevances[layer].reshape(n_vectors, -1).T
                scale = max(np.abs(actual).max(), 1e-30)
                error = np.abs(matrices[layer] @ flat - actual).max() / scale
                add(injection, layer, "linearity_error", error)
                if error > LINEARITY_TOLERANCE:
                    continue
                channels = relevances[layer].shape[-1]
                ratios = location_singular_value_ratios(matrices[layer], channels)
                ratios = ratios[~np.isnan(ratios)]  # NaN: zero block (no relevance)
                if ratios.size:
                    add(injection, layer, "sv_ratio_median", np.median(ratios))
    return rows


def _flags(frame: pd.DataFrame) -> pd.Series:
    """The ``nonfinite`` column of unit rows as booleans (False where absent)."""
    if "nonfinite" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["nonfinite"].astype(str).str.lower().isin(("true", "1"))


def _group_reason(group: pd.DataFrame, flagged: bool) -> str:
    """The ``undefined`` reason of an aggregated row: the first NaN/Inf reason
    of its units if it is flagged; "zero map" if every image's relevance at
    the layer was all zeros (no defined cosine at all); else "" (an image
    with zero relevance only adds undefined cosines, counted by
    ``undefined_fraction``, and leaves the pooled median defined)."""
    if "undefined" not in group.columns:
        return ""
    per_image = group.groupby("image")["undefined"].first().fillna("").astype(str)
    nonfinite = sorted(set(per_image) & {NAN_INPUT, OVERFLOW, NAN_MAP})
    if flagged and nonfinite:
        return nonfinite[0]
    if len(per_image) and (per_image == ZERO_MAP).all():
        return ZERO_MAP
    return ""


def aggregate(units: pd.DataFrame, *,
              percentiles: Sequence[float] = PERCENTILES) -> pd.DataFrame:
    """The tidy table from the unit rows: pooled median and percentiles of
    |s_cos| over all images (p0/p100 exact, the others from the histogram),
    the fraction of undefined cosines, and the median over images of the
    per-image sigma1/sigma2 medians."""
    keys = ["network", "method", "injection_layer", "layer", "layer_index"]
    out = []
    if units.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    for key, group in units.groupby(keys, sort=False):
        base = dict(zip(keys, key))
        n_images = group["image"].nunique()
        n_vectors = int(group["n_vectors"].iloc[0])
        stat = group.groupby("statistic")["value"]
        flagged = bool(_flags(group).any())
        reason = _group_reason(group, flagged)

        def emit(statistic, value):
            value = float(value)
            out.append({**base, "statistic": statistic, "value": value,
                        "n_images": n_images, "n_vectors": n_vectors,
                        "nonfinite": flagged or not np.isfinite(value),
                        "undefined": reason})

        counts = np.zeros(len(BIN_EDGES) - 1)
        binned = group[group["statistic"] == "count"]
        np.add.at(counts, binned["bin"].to_numpy(int), binned["value"].to_numpy())
        inner = [q for q in percentiles if 0 < q < 100]
        values = dict(zip(inner, histogram_percentiles(counts, inner)))
        sums = stat.sum()
        if sums.get("n_values", 0) > 0:
            values[0] = stat.min()["min"]
            values[100] = stat.max()["max"]
        else:
            values[0] = values[100] = np.nan
        emit("median", histogram_percentiles(counts, [50])[0])
        for q in percentiles:
            emit(f"p{q:g}", values[q])
        total = sums.get("n_values", 0) + sums.get("n_undefined", 0)
        emit("undefined_fraction", sums.get("n_undefined", 0) / total if total else np.nan)
        if "linearity_error" in sums:
            emit("linearity_error", stat.max()["linearity_error"])
        if "sv_ratio_median" in sums:
            emit("sv_ratio_median", group.loc[group["statistic"] == "sv_ratio_median",
                                              "value"].median())
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


def layer_channels(network, layer: str) -> int:
    """Channel count (last axis) of the output of ``layer`` (or of the input)."""
    name = LayerNames(network.model, network.aliases).resolve(layer)
    tensor = network.model.inputs[0] if name == INPUT else network.model.get_layer(name).output
    return int(tensor.shape[-1])


def baseline_rows(network, *, seed: int) -> list:
    """Median |s_cos| of random vector pairs with each layer's channel count;
    ``histogram`` marks the layers whose histograms are kept (first
    convolution and input)."""
    rows = []
    hist_layers = {first_conv_layer(network), INPUT}
    for index, layer in enumerate(network.layers):
        value = random_baseline(layer_channels(network, layer),
                                rng=np.random.default_rng([int(seed), index]))
        rows.append({"network": network.name, "method": BASELINE_METHOD,
                     "injection_layer": "", "layer": layer, "layer_index": index,
                     "statistic": "median", "value": value, "n_images": 0,
                     "n_vectors": 2, "nonfinite": not np.isfinite(value), "undefined": "",
                     "histogram": layer in hist_layers})
    return rows


def first_conv_layer(network) -> Optional[str]:
    """The first name of ``network.layers`` that is a Conv2D layer (or None)."""
    names = LayerNames(network.model, network.aliases)
    for name in network.layers:
        if name == INPUT:
            continue
        if isinstance(network.model.get_layer(names.resolve(name)), klayers.Conv2D):
            return name
    return None


def histogram_table(units: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Pooled fine-bin counts of |s_cos| at the (network, layer) pairs of
    ``layers`` (non-empty bins only)."""
    if units.empty or layers.empty:
        return pd.DataFrame(columns=list(HISTOGRAM_COLUMNS))
    wanted = set(zip(layers["network"], layers["layer"]))
    mask = [(n, l) in wanted for n, l in zip(units["network"], units["layer"])]
    part = units[np.asarray(mask, bool) & (units["statistic"] == "count").to_numpy()]
    keys = ["network", "method", "injection_layer", "layer", "layer_index"]
    n_images = units.groupby(keys)["image"].nunique().rename("n_images")
    table = part.groupby(keys + ["n_vectors", "bin"], as_index=False)["value"].sum()
    table = table.join(n_images, on=keys)
    # lower layers are network.layers[:index of the injection layer]
    top = units.groupby(["network", "injection_layer"])["layer_index"].max() + 1
    table = table.join(top.rename("injection_layer_index"), on=["network", "injection_layer"])
    table["bin_low"] = BIN_EDGES[table["bin"].to_numpy(int)]
    table["bin_high"] = BIN_EDGES[table["bin"].to_numpy(int) + 1]
    table["count"] = table["value"].astype(int)
    return table[list(HISTOGRAM_COLUMNS)]


def exact_values(rows: list) -> pd.DataFrame:
    """Rows with ``value`` as round-trip exact text: CSC values within 1e-12
    of 1 must survive the CSV files (their 1 - CSC is what Figure 5 plots)."""
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["value"] = [format(float(v), ".17g") for v in frame["value"]]
    return frame


def write_exact_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write_text(path, table.to_csv(index=False, float_format="%.17g"))


def check_settings(store: ResultStore, network_name: str, *, n_vectors: int,
                   seed: int, recipe: str = PLAIN) -> None:
    """Record the settings of the units of ``network_name`` in the store (the
    recipe and its changes as :func:`~csc_analyzers.registry.recipe_settings`
    on that network); raise if the store already holds units made with other
    settings (units stored before recipes existed count as ``plain``)."""
    settings = {"n_vectors": int(n_vectors), "seed": int(seed),
                **recipe_settings(network_name, recipe)}
    store.check_settings(network_name, settings, defaults=RECIPE_SETTINGS_DEFAULTS)


def run_csc(network, methods: Sequence[MethodSpec], images: np.ndarray, *, out_dir,
            n_vectors: int = 5, seed: int = 0, patterns=None,
            image_ids: Optional[Sequence[int]] = None, shard: Shard = Shard(),
            exact_max_dim: int = 64, progress: bool = False,
            table=None, unit_limit: Optional[int] = None,
            on_unit: Optional[Callable] = None, recipe: str = PLAIN,
            write: bool = True, computed: Optional[dict] = None) -> dict:
    """Run the CSC experiment for ``network`` and write its tables.

    ``images`` are preprocessed inputs (N, ...). ``patterns`` is the
    patterns object for PatternNet/PatternAttribution or a callable
    ``patterns(network)`` returning it; pattern methods are skipped (logged)
    without it. Units already in ``out_dir`` are skipped; ``unit_limit``
    stops after that many new units. ``recipe`` (:data:`~csc_analyzers.registry.RECIPES`)
    is recorded with the units; a store holding units of this network made
    under another recipe raises ArgumentError. Writes ``out_dir/csc.csv`` (tidy table
    of :data:`TABLE_COLUMNS`, baseline rows included) and
    ``out_dir/csc_histograms.csv`` (first convolution and input) from all
    finished units, and returns ``{"table", "histograms", "skipped", "plan"}``;
    with ``write=False`` only the units are stored (``table`` and
    ``histograms`` are None; :func:`write_tables` writes them later), as a
    task of a larger run does. ``computed``: the rows of units already
    computed elsewhere with the same ``n_vectors`` and ``seed`` (the audit's
    check computes its method's unit of the first image), by
    ``(method name, image id)``; they are stored as they are.
    """
    if n_vectors < 2:
        raise ValueError(f"n_vectors must be >= 2 to compare vectors, got {n_vectors}")
    images = np.asarray(images, dtype=np.float32)
    image_ids = list(range(len(images))) if image_ids is None else [int(i) for i in image_ids]
    if len(image_ids) != len(images):
        raise ValueError(f"{len(image_ids)} image_ids for {len(images)} images")
    plan = make_plan(network, methods, patterns=patterns, table=table, recipe=recipe)
    for name, reason in plan.skipped:
        log.warning("CSC on %s: skipping %s: %s", network.name, name, reason)
    store = ResultStore(out_dir, EXPERIMENT)
    check_settings(store, network.name, n_vectors=n_vectors, seed=seed, recipe=recipe)
    units = [(network.name, spec.name, image_id)
             for spec in plan.methods for image_id in image_ids]
    todo = store.pending(shard.select(units))
    if unit_limit is not None:
        todo = todo[:unit_limit]
    by_image = dict(zip(image_ids, images))
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(len(todo), f"CSC {network.name}")
    for spec in plan.methods:
        mine = [unit for unit in todo if unit[1] == spec.name]
        if not mine:
            continue
        given = {key: (computed or {}).get((spec.name, key[2])) for key in mine}
        analyzer = (create_method_analyzer(spec, network, patterns, recipe=recipe)
                    if not all(given.values()) else None)
        for key in mine:
            x = by_image[key[2]][None]
            rows = given[key] or unit_rows(analyzer, x, network, plan, image_id=key[2],
                                           method=spec.name, n_vectors=n_vectors, seed=seed,
                                           exact_max_dim=exact_max_dim)
            store.write(key, exact_values(rows))
            if on_unit is not None:
                on_unit(key)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if not write:
        return {"table": None, "histograms": None, "skipped": plan.skipped, "plan": plan}
    return write_tables(network, store, out_dir=out_dir, seed=seed, skipped=plan.skipped)


def write_baseline(network, *, out_dir, seed: int) -> ResultStore:
    """Store the random baseline rows of ``network`` (:func:`baseline_rows`)
    in ``out_dir`` unless they are there; returns the baseline store. Runs
    call it before their tasks, while little else is in memory (on VGG-16
    the baseline of the 25,088-channel flatten layer needs 1.9 GiB)."""
    baselines = ResultStore(out_dir, f"{EXPERIMENT}_baseline")
    if not baselines.done((network.name,)):
        baselines.write((network.name,), baseline_rows(network, seed=seed))
    return baselines


def write_tables(network, store: ResultStore, *, out_dir, seed: int, skipped=()) -> dict:
    """Aggregate every finished unit of the store (all networks run into
    ``out_dir``) into ``csc.csv`` and ``csc_histograms.csv``."""
    baseline = write_baseline(network, out_dir=out_dir, seed=seed).table()
    raw = store.table()
    table = pd.concat([aggregate(raw),
                       baseline[list(TABLE_COLUMNS)]], ignore_index=True)
    histograms = histogram_table(raw, baseline[baseline["histogram"].astype(bool)])
    out_dir = Path(out_dir)
    write_exact_csv(out_dir / f"{EXPERIMENT}.csv", table)
    write_exact_csv(out_dir / f"{EXPERIMENT}_histograms.csv", histograms)
    return {"table": table, "histograms": histograms, "skipped": tuple(skipped)}


__all__ = ["run_csc", "make_plan", "plan_methods", "unit_rows", "aggregate",
           "histogram_table", "baseline_rows", "unit_vectors", "first_conv_layer", "layer_channels",
           "vectors_rng", "create_method_analyzer", "write_tables", "write_baseline",
           "TABLE_COLUMNS", "HISTOGRAM_COLUMNS"]
