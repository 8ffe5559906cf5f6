"""Audit a user's Keras model: which attribution methods ignore its later layers?

:func:`prepare_audit` does everything that can fail on bad input -- load the
model, read and preprocess the images, estimate patterns, check every chosen
method's layers and analyzer, time one method (``graph="per-method"``) or
every method (``"shared"``) on one image for the estimate -- and writes
nothing. :func:`run_audit` then runs, per applicable method (per-method:
built once, in a graph of its own), the paper's tests on the model
(:mod:`csc_analyzers.experiments`): CSC with random relevance injected at
the logits, the random-logit SSIM, the SSIM after randomising the top layer
and, on the built-in two-object images, the class-sensitivity gap. Units go
through the resumable result stores, so a rerun with the same ``out``
directory continues where the last one stopped. The verdicts, tables and
figures are written by :mod:`csc_analyzers.audit.report`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)
import tensorflow as tf
from residual_support.flatten import flatten_model

from .data import (PREPROCESSING, AuditData, builtin_data, input_range, preprocess,
                   read_image_dir)
from .cost import (REPORT_S, REPORT_S_PER_METHOD, AuditEstimate, Progress, current_rss,
                   peak_rss, predict_cost, predict_peak, progress_weights, reset_peak,
                   window_peak)
from .checks import (AuditError, MethodCheck, check_method, check_model_io,
                     construction_check, load_model, reserve_layer_names, static_check)
from ..experiments.common import ModelNetwork, analyzer_key
from ..experiments.store import atomic_write_text
from ..logits import logit_model
from ..registry import ALL_METHODS, available_methods, select_methods

log = logging.getLogger(__name__)

#: where the analyzers live: "per-method" builds each method once, in a
#: TensorFlow graph of its own released after its experiments (peak memory
#: that of the heaviest method; the estimate measures one method and
#: predicts the others); "shared" builds and measures every analyzer in one
#: graph before the experiments (memory grows with the methods)
GRAPH_MODES = ("per-method", "shared")


@dataclass
class AuditNetwork(ModelNetwork):
    """A :class:`ModelNetwork` with the CSC layers of any Keras model:
    ``layers`` = input, every layer with weights in order, the logits;
    ``csc_layers`` = the logits (the injection layer)."""

    layers: tuple = ()
    csc_layers: tuple = ()


@dataclass(frozen=True, eq=False)
class ModelSource:
    """How to build the audited network again in another graph: the class,
    configuration and weights of the loaded (flattened) model's logits model
    (:func:`~csc_analyzers.logits.logit_model`: a final softmax already
    stripped, so a copy needs no second stripping, ~1 s per copy of
    ResNet50V2), analysed under the network ``name`` with inputs in
    ``low_high``. Building from the configuration takes a fifth of reading
    the file again (MobileNetV2: 4-5 s against 22-24 s); a model whose
    configuration does not rebuild is read from ``path`` as
    :func:`prepare_audit` did."""

    path: str
    name: str
    low_high: tuple
    model_class: type
    config: dict
    weights: list

    @classmethod
    def of(cls, model, path, name: str, low_high: tuple) -> "ModelSource":
        """The source of ``model`` (or of its logits model, the same here)
        read from ``path``."""
        logits = logit_model(model)
        return cls(str(path), name, tuple(low_high), type(logits), logits.get_config(),
                   logits.get_weights())

    def build(self) -> AuditNetwork:
        try:
            model = self.model_class.from_config(self.config)
            assign_weights(model, self.weights)
        except Exception:  # e.g. a layer that does not rebuild from its config
            model = flatten_model(load_model(Path(self.path)))
        reserve_layer_names(model)
        return audit_network(model, self.name, self.low_high)


def assign_weights(model, weights: list) -> None:
    """Set the variables of ``model`` (built, not yet initialised, in the
    default session's graph) to ``weights``: one session run of their
    initialisers with each value fed in place of the initial value, so the
    random initial values are never drawn (ResNet50V2: 0.5 s against 1.9 s
    for ``set_weights``, which first initialises every variable). Without a
    default session of the model's graph, or with a count or shape that does
    not match, ``model.set_weights`` (which names the mismatch)."""
    session = tf.compat.v1.get_default_session()
    variables = model.weights
    if (session is None or len(variables) != len(weights) or not variables
            or session.graph is not variables[0].graph
            or any(tuple(v.shape) != np.shape(w) for v, w in zip(variables, weights))):
        model.set_weights(weights)
        return
    try:
        session.run([v.initializer for v in variables],
                    feed_dict={v.initial_value: w for v, w in zip(variables, weights)})
    except (ValueError, TypeError, tf.errors.OpError):  # an initial value that cannot be fed
        model.set_weights(weights)


@contextmanager
def method_graph(source: Optional[ModelSource], network: AuditNetwork):
    """The network to run one method on: with a ``source``, a copy built in
    a TensorFlow graph of its own that is released (with the method's
    analyzer) when the block ends; without, ``network`` itself."""
    if source is None:
        yield network
        return
    from ..experiments.tasks import isolated_graph

    with isolated_graph():
        yield source.build()


@dataclass
class AuditPlan:
    """Everything :func:`run_audit` needs, checked: the network, the data,
    the per-method checks, the patterns (or None), the settings and the
    :class:`AuditEstimate`."""

    network: AuditNetwork
    data: AuditData
    checks: list
    patterns: object
    settings: dict
    info: dict = field(default_factory=dict)
    estimate: Optional[AuditEstimate] = None
    source: Optional[ModelSource] = None  # set: each method runs in a graph of its own
    table: Optional[dict] = None  # analyzer key -> class (default: the factory's)
    started: float = field(default_factory=time.time)  # the audit's start, time.time()

    @property
    def applicable(self) -> list:
        return [check.spec for check in self.checks if check.ok]


# -- the network --------------------------------------------------------------------

def top_layer(model) -> str:
    """The last layer with a kernel (Dense, Conv), else the last layer with weights."""
    weighted = [layer for layer in model.layers if layer.weights]
    if not weighted:
        raise AuditError(f"model {model.name!r} has no layer with weights")
    kernels = [layer for layer in weighted if hasattr(layer, "kernel")]
    return (kernels or weighted)[-1].name


def audit_network(model, name: str, low_high: tuple) -> AuditNetwork:
    """The network object of the experiments for ``model`` analysed on its
    logits (a final softmax removed, the user's model unchanged)."""
    logits_model = logit_model(model)
    logits = logits_model.outputs[0]._keras_history[0].name
    weighted = [layer.name for layer in logits_model.layers
                if layer.weights and layer.name != logits]
    return AuditNetwork(name=name, model=logits_model, input_range=tuple(low_high),
                        sanity_layers=(top_layer(logits_model),),
                        layers=("input", *weighted, logits), csc_layers=(logits,))


def model_fingerprint(model) -> str:
    """A short hash of the model's architecture and weights."""
    digest = hashlib.sha1(model.to_json().encode("utf-8"))
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


# -- methods and patterns -----------------------------------------------------------

def choose_methods(names: Optional[str]) -> list:
    """The chosen method specs: ``names`` (comma-separated display names,
    ``all``, ``extra``) or, by default, every method whose analyzer is installed."""
    if not names:
        return available_methods(ALL_METHODS)
    try:
        return select_methods(names)
    except KeyError as error:
        raise AuditError(f"--methods: {error.args[0]}") from None


def estimate_audit_patterns(model, images) -> tuple:
    """``(patterns, reason)``: PatternNet/PatternAttribution patterns of the
    two-component (ReLU) estimator on the audit images, or None and why not."""
    try:
        from ..pattern import estimate_patterns
    except ImportError:
        return None, "the pattern module is not installed"
    try:
        return estimate_patterns(model, [np.asarray(images, np.float32)], estimator="relu"), ""
    except Exception as error:  # estimator failures make the pattern methods not applicable
        return None, f"pattern estimation failed: {type(error).__name__}: {error}"


# -- preparing and running ------------------------------------------------------------

def _budget_left(time_budget, started: float, committed: float, n_methods: int):
    """Seconds of ``time_budget`` left after ``committed`` seconds of
    experiments and the report of ``n_methods`` methods (None: no budget)."""
    if time_budget is None:
        return None
    report_s = REPORT_S + REPORT_S_PER_METHOD * n_methods
    return time_budget - (time.time() - started) - committed - report_s


def check_and_probe(specs, network, data: AuditData, *, patterns, table, seed: int,
                    n_vectors: int, started: float, time_budget: Optional[float] = None,
                    report=None) -> tuple:
    """``(checks, estimate)``: :func:`~csc_analyzers.audit.checks.check_method`
    of each spec in order on ``network`` (one shared graph), each applicable
    method timed on the first image. With ``time_budget`` (seconds from
    ``started``, a ``time.time()``), a method whose experiments would not fit
    in what is left, or whose probe cannot start in time (judged by the
    probes so far), is dropped with its reason. ``report(text)`` receives
    one line per method."""
    n = len(data.images)
    probe = {"n_vectors": n_vectors, "seed": seed, "patterns": patterns,
             "composites": data.composites is not None}
    checks, costs, dropped, probes = [], {}, [], []
    for k, spec in enumerate(specs):
        committed = sum(c.run_s(n) for c in costs.values())
        left = _budget_left(time_budget, started, committed, len(costs) + 1)
        if left is not None and probes and left < sum(probes) / len(probes):
            dropped.append((spec.name, f"no time left to try it: {max(left, 0):.0f} s "
                                       f"of the budget left, a probe takes "
                                       f"~{sum(probes) / len(probes):.0f} s"))
            checks.append(MethodCheck(spec, False, "dropped by --time-budget"))
            continue
        start = time.time()
        check = check_method(spec, network, data.images[0], patterns=patterns, table=table,
                             seed=seed, probe=probe, image_logits=first_logits(data))
        probes.append(time.time() - start)
        if check.ok and check.cost is not None:
            cost = check.cost
            left = _budget_left(time_budget, started, committed, len(costs) + 1)
            if left is not None and cost.run_s(n) > left:
                dropped.append((spec.name, f"its experiments would take "
                                           f"~{cost.run_s(n):.0f} s, "
                                           f"{max(left, 0):.0f} s of the budget left"))
                check = MethodCheck(spec, False, "dropped by --time-budget")
                network.analyzer_cache.pop(analyzer_key(spec, network), None)
            else:
                costs[spec.name] = cost
        checks.append(check)
        if report is not None:
            status = (f"analyzer {check.cost.build_s:.1f} s, ~{check.cost.per_image_s:.2f} s "
                      "per image" if check.ok and check.cost else
                      f"not applicable: {check.reason}")
            report(f"[{k + 1}/{len(specs)}] {spec.name}: {status}")
    with_sanity = sum(1 for c in checks if c.ok and c.sanity_ok and c.spec.name in costs)
    # the randomiser copies the weights out once per graph it runs in
    setup = weight_copy_s(network.model) if with_sanity else 0.0
    estimate = AuditEstimate(n_images=n, elapsed_s=time.time() - started, costs=costs,
                             dropped=dropped, rss_bytes=peak_rss(), budget_s=time_budget,
                             fixed_s=setup)
    return checks, estimate


def first_logits(data: AuditData) -> Optional[np.ndarray]:
    """The model's logits of the first image, if the data holds them."""
    return None if data.logits is None else data.logits[0]


def probe_alone(spec, source: ModelSource, network, image, *, patterns, table, seed: int,
                probe: dict, image_logits: Optional[np.ndarray] = None) -> MethodCheck:
    """:func:`check_method` of ``spec`` with its cost probe (``probe``: the
    keyword arguments of :func:`~csc_analyzers.audit.checks.probe_cost`) on
    a copy of the network built from ``source`` in a graph of its own,
    released afterwards: the cost's ``build_s`` includes building the copy,
    its ``rss_bytes`` is the peak memory while the method ran."""
    reset_peak()
    start = time.time()
    with method_graph(source, network) as net:
        loaded_s = time.time() - start
        check = check_method(spec, net, image, patterns=patterns, table=table, seed=seed,
                             probe=probe, image_logits=image_logits)
    if not check.ok:
        return check
    return replace(check, cost=replace(check.cost, build_s=check.cost.build_s + loaded_s,
                                       rss_bytes=window_peak()))


def reference_order(checks) -> list:
    """The applicable specs of ``checks`` in the order to try them as the
    measured reference of :func:`check_and_predict`: Gradient first (cheap,
    and the unit of the registry's relative costs), then the others in
    order, methods left out of CSC last."""
    specs = [check.spec for check in checks if check.ok]
    return sorted(specs, key=lambda spec: (spec.analyzer != "gradient",
                                           "csc" in spec.exclude_experiments))


def check_and_predict(specs, source: ModelSource, network, data: AuditData, *, patterns,
                      table, seed: int, n_vectors: int, started: float,
                      time_budget: Optional[float] = None, report=None) -> tuple:
    """``(checks, estimate)`` of an audit that runs each method once, in a
    graph of its own: every spec checked without a graph build
    (:func:`~csc_analyzers.audit.checks.static_check`: installed, patterns,
    all blocking layers), then its analyzer constructed on one copy of the
    model (:func:`~csc_analyzers.audit.checks.construction_check`: the
    analyzer's own model checks; no analysis is built); one applicable method (:func:`reference_order`)
    built on a copy of the model from ``source`` in a graph of its own,
    checked and timed on the first image (:func:`check_method`; if it fails
    there, the next is tried); every other applicable method's cost
    predicted from it (:func:`~csc_analyzers.audit.cost.predict_cost`) and
    the peak memory from the heaviest (:func:`~csc_analyzers.audit.cost.predict_peak`).
    The applicable checks are not ``final``: :func:`run_experiments` checks
    each method again when it builds it. ``time_budget`` drops, in order,
    the methods whose predicted experiments do not fit."""
    n = len(data.images)
    composites = data.composites is not None
    probe = {"n_vectors": n_vectors, "seed": seed, "patterns": patterns,
             "composites": composites}
    checks = {spec.name: static_check(spec, network, patterns=patterns, table=table)
              for spec in specs}
    constructible = [spec for spec in specs if checks[spec.name].ok]
    if constructible:  # the analyzers' own model checks, on a copy released after
        with method_graph(source, network) as net:
            for spec in constructible:
                checks[spec.name] = construction_check(spec, net, patterns=patterns)
    before = peak_rss()  # loading, patterns
    base = current_rss()
    reference = measured = None
    for spec in reference_order(checks.values()):
        check = probe_alone(spec, source, network, data.images[0], patterns=patterns,
                            table=table, seed=seed, probe=probe,
                            image_logits=first_logits(data))
        if report is not None:
            report(f"{spec.name}: " + (f"measured: analyzer {check.cost.build_s:.1f} s, "
                                       f"~{check.cost.per_image_s:.2f} s per image"
                                       if check.ok else f"not applicable: {check.reason}"))
        if not check.ok:
            checks[spec.name] = check
            continue
        measured = check.cost
        checks[spec.name] = replace(check, final=False)
        reference = spec
        break
    costs, dropped = {}, []
    for spec in specs:
        check = checks[spec.name]
        if not check.ok:
            continue
        cost = (measured if spec is reference else
                predict_cost(spec, reference, measured, composites=composites,
                             sanity=not spec.needs_patterns))
        left = _budget_left(time_budget, started, sum(c.build_s + c.run_s(n) for c in
                                                      costs.values()), len(costs) + 1)
        if left is not None and cost.build_s + cost.run_s(n) > left:
            dropped.append((spec.name, f"its experiments would take "
                                       f"~{cost.build_s + cost.run_s(n):.0f} s, "
                                       f"{max(left, 0):.0f} s of the budget left"))
            checks[spec.name] = MethodCheck(spec, False, "dropped by --time-budget")
            continue
        costs[spec.name] = cost
        checks[spec.name] = replace(check, cost=cost)
    kept = [spec for spec in specs if spec.name in costs]
    with_sanity = sum(1 for spec in kept if not spec.needs_patterns)
    # the randomiser copies the weights out once per graph it runs in
    setup = weight_copy_s(network.model) * with_sanity
    rss = max(before, predict_peak(kept, reference, base, measured.rss_bytes)
              if reference is not None else peak_rss())
    estimate = AuditEstimate(n_images=n, elapsed_s=time.time() - started, costs=costs,
                             dropped=dropped, rss_bytes=rss, budget_s=time_budget,
                             fixed_s=setup,
                             reference=reference.name if reference is not None else "")
    return [checks[spec.name] for spec in specs], estimate


def weight_copy_s(model) -> float:
    """Estimated seconds for the sanity check's randomiser to read every
    weight out of the session: one session run for all weight layers on
    entry and one on exit (:class:`~csc_analyzers.experiments.randomization.Randomizer`),
    timed here once and doubled."""
    from ..experiments.randomization import read_values, weight_layers

    variables = [w for layer in weight_layers(model) for w in layer.weights]
    if not variables:
        return 0.0
    start = time.time()
    read_values(variables)
    return 2 * (time.time() - start)


def prepare_audit(model_path, *, images_dir=None, preprocessing: str = "unit",
                  methods: Optional[str] = None, n_images: int = 16, n_vectors: int = 5,
                  seed: int = 0, table=None, time_budget: Optional[float] = None,
                  started: Optional[float] = None, report=None,
                  graph: str = "per-method") -> AuditPlan:
    """Check everything and build the plan; writes no file. The methods are
    checked and timed on the first image, giving the plan's
    :class:`AuditEstimate` (``time_budget``: seconds from ``started``,
    default now, that the whole audit may take; methods that do not fit are
    dropped and named). ``graph`` (:data:`GRAPH_MODES`): ``"per-method"``
    checks every method's layers without a graph build, measures one method
    on a copy of the model in a graph of its own and predicts the others
    (:func:`check_and_predict`); :func:`run_audit` then builds each method
    once, in a graph of its own, so the peak memory is that of the heaviest
    method. ``"shared"`` builds and measures every analyzer in one graph
    (:func:`check_and_probe`; memory grows with every method). Raises
    :class:`AuditError` naming the culprit, also when no chosen method can
    explain the model (then naming each method's blocking layers)."""
    started = time.time() if started is None else started
    if graph not in GRAPH_MODES:
        raise AuditError(f"graph {graph!r}: choose from {GRAPH_MODES}")
    if time_budget is not None and time_budget <= 0:
        raise AuditError(f"--time-budget {time_budget}: must be > 0 seconds")
    if preprocessing not in PREPROCESSING:
        raise AuditError(f"--preprocess {preprocessing!r}: choose from {PREPROCESSING}")
    if n_images < 1:
        raise AuditError(f"--n-images {n_images}: must be >= 1")
    if n_vectors < 2:
        raise AuditError(f"--n-vectors {n_vectors}: must be >= 2 (CSC compares pairs)")
    specs = choose_methods(methods)
    model_path = Path(model_path)
    model = flatten_model(load_model(model_path))  # a copy over the same layers
    io = check_model_io(model, source=f"model {model_path}")
    if preprocessing == "imagenet-caffe" and io["channels"] != 3:
        raise AuditError("--preprocess imagenet-caffe needs RGB inputs; the model's input "
                         f"has {io['channels']} channel(s)")
    reserve_layer_names(model)
    if images_dir is None:
        data = builtin_data(io, n=n_images, seed=seed, mode=preprocessing)
    else:
        raw, names = read_image_dir(images_dir, height=io["height"], width=io["width"],
                                    channels=io["channels"], n=n_images)
        data = AuditData(raw, preprocess(raw, preprocessing), names,
                         source=f"images from {images_dir}",
                         composites_reason="no object masks for images from --images")
    name = model_path.name[:-len(model_path.suffix)] if model_path.suffix else model_path.name
    network = audit_network(model, name or "model", input_range(preprocessing))
    data.logits = np.asarray(network.model.predict(data.images, verbose=0))
    data.predicted = np.argmax(data.logits, axis=1)
    source = (ModelSource.of(network.model, model_path, network.name, network.input_range)
              if graph == "per-method" else None)
    pattern_set, pattern_reason = None, ""
    if any(spec.needs_patterns for spec in specs):
        # per-method: on a copy in a graph of its own, whose statistics ops
        # are released with it (ResNet50V2 at 224 px: 0.5 GiB kept otherwise)
        with method_graph(source, network) as net:
            pattern_set, pattern_reason = estimate_audit_patterns(net.model, data.images)
    if pattern_reason:
        refused = [MethodCheck(s, False, f"needs patterns; {pattern_reason}")
                   for s in specs if s.needs_patterns]
        specs = [s for s in specs if not s.needs_patterns]
    else:
        refused = []
    common = dict(patterns=pattern_set, table=table, seed=seed, n_vectors=n_vectors,
                  started=started, time_budget=time_budget, report=report)
    if graph == "per-method":
        checks, estimate = check_and_predict(specs, source, network, data, **common)
    else:
        checks, estimate = check_and_probe(specs, network, data, **common)
    order = {c.spec.name: c for c in checks + refused}
    checks = [order[s.name] for s in choose_methods(methods) if s.name in order]
    if not any(check.ok for check in checks):
        lines = "\n".join(f"  {c.spec.name}: {c.reason}" for c in checks)
        raise AuditError(f"model {model_path}: no chosen method can explain it:\n{lines}")
    settings = {"model": str(model_path.resolve()), "fingerprint": model_fingerprint(model),
                "images": str(Path(images_dir).resolve()) if images_dir else "builtin",
                "image_names": list(data.names), "preprocess": preprocessing,
                "n_vectors": int(n_vectors), "seed": int(seed)}
    info = {**io, "model_path": str(model_path), "input_range": network.input_range,
            "n_images": len(data.images), "source": data.source}
    return AuditPlan(network, data, checks, pattern_set, settings, info, estimate, source,
                     table, started)


def check_resume(out, settings: dict) -> None:
    """Raise :class:`AuditError` if ``out`` holds an audit made with other
    settings (its stored units would be mixed with this run's)."""
    path = Path(out) / "audit_settings.json"
    if not path.exists():
        return
    stored = json.loads(path.read_text())
    differ = sorted(key for key in set(stored) | set(settings)
                    if stored.get(key) != settings.get(key))
    if differ:
        raise AuditError(f"--out {out} holds an audit with other settings ({', '.join(differ)}); "
                         "use another --out directory")


def _patterns_provider(patterns):
    return None if patterns is None else (lambda network: patterns)


def run_experiments(plan: AuditPlan, out, *, progress: bool = False, report=None) -> dict:
    """Run the audit's experiments for the applicable methods into
    ``out/results`` and return the tables (``csc``, ``histograms``,
    ``random_logit``, ``sanity``, ``class_sensitivity``); ``progress``
    prints :class:`Progress` lines. With ``plan.source`` each method is
    built once, on a copy of the network in a graph of its own released
    before the next: checked there (:func:`run_method`, which completes
    ``plan.checks``), then its experiments run; the tables are read at the
    end from the finished units. ``report(text)`` receives the lines of
    each method's check."""
    from ..experiments.class_sensitivity import run_class_sensitivity
    from ..experiments.cli import SORT_BY
    from ..experiments.csc import run_csc
    from ..experiments.random_logit import run_random_logit
    from ..experiments.sanity import run_sanity

    results = Path(out) / "results"
    data, seed = plan.data, plan.settings["seed"]
    provider = _patterns_provider(plan.patterns)
    ids = list(range(len(data.images)))
    bar = Progress(progress_weights(plan)) if progress else None

    def hook(experiment):
        return None if bar is None else bar.unit(experiment)

    def experiments(network, checks, *, tables: bool) -> dict:
        specs = [check.spec for check in checks]
        # a method's own graph runs CSC only where it applies; the tables
        # (read at the end) say once which methods CSC skips and why
        csc_specs = specs if tables else [s for s in specs if s.runs_on(network.name, "csc")]
        # each check computed its method's CSC unit of the first image
        computed = {(check.spec.name, ids[0]): list(check.csc_unit)
                    for check in checks if check.csc_unit}
        csc = run_csc(network, csc_specs, data.images, out_dir=results,
                      n_vectors=plan.settings["n_vectors"], seed=seed, patterns=provider,
                      exact_max_dim=0, on_unit=hook("csc"),
                      write=tables, computed=computed) if csc_specs else None
        # both explain the predicted class under the original weights: the
        # sanity check reuses the random-logit experiment's maps
        originals = {}
        stores = [run_random_logit(network, data.images, data.predicted, ids, specs, results,
                                   seed=seed, patterns=provider, save_maps_for=ids[:1],
                                   progress=hook("random_logit"), original_maps=originals)]
        sanity_specs = [check.spec for check in checks if check.sanity_ok]
        if sanity_specs:
            stores.append(run_sanity(network, data.images, data.predicted, ids, sanity_specs,
                                     results, mode="cascading", seed=seed,
                                     patterns=provider, save_maps_for=ids[:1],
                                     progress=hook("sanity"), original_maps=originals))
        if data.composites is not None:
            _raw, images, masks, labels = data.composites
            stores.append(run_class_sensitivity(network, images, masks, labels,
                                                list(range(len(images))), specs, results,
                                                seed=seed, patterns=provider,
                                                save_maps_for=[0],
                                                progress=hook("class_sensitivity")))
        return {"csc": csc, "stores": stores}

    if plan.source is not None:
        for k, check in enumerate(plan.checks):
            if check.ok and not check.final:
                plan.checks[k] = run_method(plan, check, experiments, report=report)
    done = experiments(plan.network, [c for c in plan.checks if c.ok], tables=True)
    tables = {"csc": done["csc"]["table"], "histograms": done["csc"]["histograms"]}
    for store in done["stores"]:
        store.consolidate(sort_by=SORT_BY)
        tables[store.experiment] = store.table()
    return tables


def run_method(plan: AuditPlan, check: MethodCheck, experiments, *, report=None) -> MethodCheck:
    """Build ``check.spec`` once on a copy of the network in a graph of its
    own, check it there (:func:`check_method`: its layers' relevance, the
    sanity check's weight sync, its warnings) and, if applicable and within
    the plan's time budget, run ``experiments(network, [check], tables=False)``;
    the graph is released after it. Returns the final check (a method the
    budget no longer fits is dropped, its reason recorded in the plan's
    estimate). ``report(text)`` receives the check's lines and, for a method
    that ran, its time against the estimate and the peak memory while it
    ran."""
    spec, estimate = check.spec, plan.estimate
    reset_peak()
    start = time.time()
    with method_graph(plan.source, plan.network) as network:
        final = check_method(spec, network, plan.data.images[0], patterns=plan.patterns,
                             table=plan.table, seed=plan.settings["seed"],
                             n_vectors=plan.settings["n_vectors"], image_id=0,
                             image_logits=first_logits(plan.data))
        if final.ok:
            final = replace(final, cost=check.cost)
            left = (None if estimate is None or estimate.budget_s is None else
                    estimate.budget_s - (time.time() - plan.started) - estimate.report_s)
            need = check.cost.run_s(len(plan.data.images)) if check.cost else 0.0
            if left is not None and need > left:
                why = (f"its experiments would take ~{need:.0f} s, "
                       f"{max(left, 0):.0f} s of the budget left")
                estimate.dropped.append((spec.name, why))
                final = MethodCheck(spec, False, f"dropped by --time-budget: {why}")
        if report is not None:
            for line in final.lines():
                report(f"audit: {line}")
        if final.ok:
            experiments(network, [final], tables=False)
    if report is not None and final.ok and check.cost is not None:
        predicted = check.cost.build_s + check.cost.run_s(len(plan.data.images))
        report(f"{spec.name}: done in {time.time() - start:.0f} s (estimated "
               f"{predicted:.0f} s), peak memory {window_peak() / 2**30:.2f} GiB")
    return replace(final, csc_unit=())  # stored by its experiments


def run_audit(plan: AuditPlan, out, *, progress: bool = False, figures: bool = True,
              report=None) -> dict:
    """Run the experiments into ``out`` (resuming), write ``verdicts.csv``,
    ``AUDIT.md`` and (unless ``figures`` is False) the figures; return
    ``{"verdicts", "paths"}``. ``report(text)``: see :func:`run_experiments`."""
    from .report import write_report

    check_resume(out, plan.settings)
    out = Path(out)
    atomic_write_text(out / "audit_settings.json", json.dumps(plan.settings, indent=1))
    tables = run_experiments(plan, out, progress=progress, report=report)
    return write_report(plan, tables, out, figures=figures)


__all__ = ["AuditNetwork", "AuditData", "ModelSource", "assign_weights", "GRAPH_MODES", "method_graph", "AuditPlan", "AuditEstimate", "Progress",
           "progress_weights", "check_and_probe", "check_and_predict", "probe_alone",
           "reference_order",
           "run_method", "AuditError", "PREPROCESSING",
           "preprocess", "input_range", "read_image_dir", "builtin_data", "top_layer",
           "audit_network", "model_fingerprint", "choose_methods", "estimate_audit_patterns",
           "prepare_audit", "check_resume", "run_experiments", "run_audit"]

