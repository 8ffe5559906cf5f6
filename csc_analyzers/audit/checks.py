"""Checks the audit runs before any long work: is the saved model a single
image-classifier graph the analyzers can read, and which methods can explain
it.

Each check is a small function that raises :class:`AuditError` (or returns a
:class:`MethodCheck`) with a message naming the culprit: the file, the layer,
the argument.
"""
from __future__ import annotations

import re
import resource
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.backend.graph as igraph
from innvestigate.analyzer.base import AnalyzerBase

from residual_support.layers import known_layer_types

from .. import model_input
from ..experiments.common import explain, image_id_options
from ..experiments.csc import create_method_analyzer, unit_vectors
from ..model_input import GrowthSeed, growth_ratios, growth_seed, reserve_layer_names
from ..experiments.sanity import weight_sync
from ..registry import MethodSpec

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

# Layer types some method family of the project has a stated rule for (the
# single table of residual_support.layers); a failing analyzer on a model
# holding another type names those layers.
KNOWN_LAYER_TYPES = known_layer_types()


class AuditError(ValueError):
    """A problem with the audit's inputs (model, images, arguments), found
    before any long work; the message names the culprit."""


@dataclass(frozen=True)
class MethodCheck:
    """Whether a method can explain the model: ``ok``, the ``reason`` if not
    (naming the layers in ``layers``), and whether its top-layer sanity check
    can run (``sanity_reason`` says why not). ``final`` is False for a check
    made without building the method (:func:`static_check`), which the
    audit completes when it runs the method."""

    spec: MethodSpec
    ok: bool
    reason: str = ""
    layers: tuple = ()
    sanity_ok: bool = True
    sanity_reason: str = ""
    warnings: tuple = ()
    cost: Optional["MethodCost"] = None
    final: bool = True
    # the rows of the method's CSC unit of the checked image, when the check
    # computed them (:func:`check_method` with ``n_vectors``)
    csc_unit: tuple = field(default=(), repr=False, compare=False)

    def lines(self) -> list:
        """What the user reads about this check: not applicable and why, no
        top-layer SSIM and why, and each warning."""
        name = self.spec.name
        if not self.ok:
            return [f"{name} not applicable: {self.reason}"]
        found = ([f"{name}: no top-layer SSIM: {self.sanity_reason}"]
                 if not self.sanity_ok else [])
        return found + [f"{name}: warning: {warning}" for warning in self.warnings]


def maps_per_image(sanity: bool, composites: bool) -> int:
    """The saliency maps the audit computes per image for one method: the
    random-logit pair (predicted and random class), the randomised map of
    the top-layer sanity check (its original map is the random logit's
    predicted-class map) and the class-gap pair when measured."""
    return 2 + (1 if sanity else 0) + (2 if composites else 0)


@dataclass(frozen=True)
class MethodCost:
    """What one method costs, measured on one image: ``build_s`` (analyzer
    graph built, the check's propagation, which is the first image's CSC
    unit, the first map: paid once), ``csc_s`` (one CSC unit: ``n_vectors``
    vectors from the logits to every layer, with its statistics; 0 if the
    method is left out of CSC),
    ``map_s`` (one saliency map once the graph runs), ``maps_per_image``
    (:func:`maps_per_image`),
    ``rss_bytes`` (peak resident memory of the process after the probe).
    ``predicted_from``: the measured method this cost was predicted from
    (:func:`csc_analyzers.audit.cost.predict_cost`), empty when measured."""

    build_s: float
    csc_s: float
    map_s: float
    maps_per_image: int
    rss_bytes: int
    predicted_from: str = ""

    @property
    def per_image_s(self) -> float:
        return self.csc_s + self.maps_per_image * self.map_s

    def run_s(self, n_images: int) -> float:
        """Time of the experiments on ``n_images`` images after the check
        (graph built, the first image's CSC unit computed)."""
        return n_images * self.maps_per_image * self.map_s + max(n_images - 1, 0) * self.csc_s


# -- the model file ---------------------------------------------------------------

def load_model(path):
    """The Keras model saved at ``path`` (``.keras`` / ``.h5`` file or a
    SavedModel directory), loaded without its training configuration
    (:func:`csc_analyzers.load_model`; its errors become :class:`AuditError`)."""
    from ..errors import InputError
    from ..model_input import load_model as load_checked
    try:
        return load_checked(path, argument="model")
    except InputError as error:
        raise AuditError(str(error)) from None


def check_model_io(model, source: str = "model") -> dict:
    """``{"height", "width", "channels", "n_classes"}`` of a single-input image
    classifier; raises :class:`AuditError` for anything else (several inputs
    or outputs, non-image input, fewer than two classes). Nested models are
    fine: the audit flattens them (:func:`residual_support.flatten_model`)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise AuditError(f"{source}: has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; the audit explains models with one image input and one "
                         "class-score output")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape) or shape[-1] not in (1, 3):
        raise AuditError(f"{source}: input shape {shape}; the audit needs images of a fixed "
                         "size, height x width x channels with 1 or 3 channels (channels last)")
    out = tuple(model.outputs[0].shape[1:])
    if len(out) != 1 or out[0] is None or out[0] < 2:
        raise AuditError(f"{source}: output shape {out}; the audit needs a vector of at least "
                         "two class scores per image")
    return {"height": int(shape[0]), "width": int(shape[1]), "channels": int(shape[2]),
            "n_classes": int(out[0])}


# -- methods ------------------------------------------------------------------------

def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _analyzer_chain(analyzer):
    while analyzer is not None:
        yield analyzer
        analyzer = getattr(analyzer, "_subanalyzer", None)


def triggered_checks(analyzer, model) -> list:
    """``(message, layer names)`` of every innvestigate model check of
    ``analyzer`` (or the analyzer it wraps) that a layer of ``model`` triggers."""
    found = []
    for current in _analyzer_chain(analyzer):
        if not isinstance(current, AnalyzerBase) or not current._model_checks:
            continue
        checks = [entry["check"] for entry in current._model_checks]
        hits = igraph.model_contains(model, checks)
        for entry, layers in zip(current._model_checks, hits):
            if layers:
                found.append((entry["message"].strip(), tuple(layer.name for layer in layers)))
    return found


def unknown_layers(model) -> tuple:
    """``(name, type)`` of the layers of ``model`` whose type is not in
    :data:`KNOWN_LAYER_TYPES`."""
    return tuple((layer.name, type(layer).__name__) for layer in model.layers
                 if type(layer).__name__ not in KNOWN_LAYER_TYPES)


def diagnose(error, analyzer, model) -> tuple:
    """``(reason, layer names)`` for an analyzer that failed on ``model``: the
    innvestigate checks it trips, else the layers of unknown type, else the
    error itself."""
    named = re.findall(r"layer '([^']+)'", str(error))
    if named:
        return _first_line(error), tuple(dict.fromkeys(named))
    if analyzer is not None:
        hits = triggered_checks(analyzer, model)
        if hits:
            layers = tuple(dict.fromkeys(name for _, names in hits for name in names))
            text = "; ".join(f"{message} (layers {', '.join(repr(n) for n in names)})"
                             for message, names in hits)
            return text, layers
    unknown = unknown_layers(model)
    if unknown:
        text = ", ".join(f"{name!r} ({kind})" for name, kind in unknown)
        return (f"no backward rule for layer {text} "
                f"[{type(error).__name__}: {_first_line(error)}]"), tuple(n for n, _ in unknown)
    return f"{type(error).__name__}: {_first_line(error)}", ()


def _unchecked_analyzer(spec: MethodSpec, network, patterns):
    """The analyzer of ``spec`` built with innvestigate's model checks off (to
    read which checks the model trips), or None if it cannot be built."""
    from ..factory import create_analyzer

    kwargs = spec.analyzer_kwargs(network.input_range)
    if spec.needs_patterns:
        kwargs["patterns"] = patterns(network) if callable(patterns) else patterns
    try:
        return create_analyzer(spec.analyzer, network.model, disable_model_checks=True,
                               **kwargs)
    except Exception:  # analyzers without model checks do not take the option
        return None


def static_check(spec: MethodSpec, network, *, patterns=None, table=None) -> MethodCheck:
    """What can be known of ``spec`` on ``network`` without building a graph:
    its analyzer is installed, its patterns exist, and every layer of the
    model is one its family can pass (:func:`csc_analyzers.checks.check_layers`,
    all blocking layers named). An applicable result is not ``final``:
    :func:`check_method` completes it once the method is built."""
    from ..checks import check_layers
    from ..errors import UnsupportedLayerError

    if table is None:
        from ..factory import analyzers as table
    if spec.analyzer not in table:
        return MethodCheck(spec, False, f"analyzer {spec.analyzer!r} is not installed")
    if spec.needs_patterns and patterns is None:
        return MethodCheck(spec, False, "needs patterns; the pattern module is not installed")
    try:
        check_layers(network.model, [spec])
    except UnsupportedLayerError as error:
        reason, layers = diagnose(error, None, network.model)
        return MethodCheck(spec, False, reason, layers)
    return MethodCheck(spec, True, final=False)


def construction_check(spec: MethodSpec, network, *, patterns=None) -> MethodCheck:
    """Whether the analyzer of ``spec`` can be constructed on ``network``:
    its own model checks (e.g. innvestigate's refusal of GuidedBP on a
    network with other activations than ReLU) run in its constructor,
    before any analysis graph is built. Use it on a copy of the model in a
    graph that is released afterwards. DeepLIFT's converter is checked by
    :func:`static_check` and is not constructed here (its constructor
    converts the model)."""
    if spec.analyzer.startswith("deep_lift"):
        return MethodCheck(spec, True, final=False)
    try:
        create_method_analyzer(spec, network, patterns)
    except Exception as error:  # every refusal of a third-party analyzer is reported
        reason, layers = diagnose(error, _unchecked_analyzer(spec, network, patterns),
                                  network.model)
        return MethodCheck(spec, False, reason, layers)
    return MethodCheck(spec, True, final=False)


def check_method(spec: MethodSpec, network, image: np.ndarray, *, patterns=None,
                 table=None, seed: int = 0, probe: Optional[dict] = None,
                 n_vectors: Optional[int] = None, image_id: int = 0,
                 image_logits: Optional[np.ndarray] = None) -> MethodCheck:
    """Build the analyzer of ``spec`` on ``network`` and propagate random
    vectors from the logits to every layer of ``network.layers`` for one
    ``image``: with ``n_vectors``, those of the image's CSC unit
    (:func:`~csc_analyzers.experiments.csc.unit_vectors` of ``seed`` and
    ``image_id``), whose rows the check returns (``MethodCheck.csc_unit``)
    when the method runs CSC; else two vectors of ``default_rng(seed)``.
    For a method whose relevance growth is measured (:func:`wants_growth`)
    on layers among these (Integrated Gradients: the input only), the
    growth's seed is propagated with them as one more vector. A method
    left out of CSC (SmoothGrad), whose experiments use only its maps, or
    whose analyzer has no ``propagate``, explains the image's predicted
    class instead. Any failure makes the method not applicable, with the
    layers to blame. Then ask whether the analyzer follows in-place weight
    randomisation (the top-layer sanity check), and collect the
    :func:`method_warnings`. With ``probe`` (keyword arguments of
    :func:`probe_cost` but ``build_s``: ``n_vectors``, ``composites``, ...)
    the check is timed from here and the cost of one image measured
    (``MethodCheck.cost``); its ``n_vectors`` is the check's unless given.
    ``image_logits``: the model's logits of ``image`` when known (the
    audit's data), which saves a forward run of a graph not run before."""
    if probe is not None:
        probe = {**probe, "started": time.perf_counter()}
        if n_vectors is None:
            n_vectors = probe.get("n_vectors")
    if table is None:
        from ..factory import analyzers as table
    if spec.analyzer not in table:
        return MethodCheck(spec, False, f"analyzer {spec.analyzer!r} is not installed")
    if spec.needs_patterns and patterns is None:
        return MethodCheck(spec, False, "needs patterns; the pattern module is not installed")
    if spec.analyzer.startswith("deep_lift"):
        from ..methods.deeplift_convert import UnsupportedLayerError, check_model
        try:
            check_model(network.model)
        except UnsupportedLayerError as error:
            reason, layers = diagnose(error, None, network.model)
            return MethodCheck(spec, False, reason, layers)
    analyzer = None
    x = np.asarray(image, dtype=np.float32)[None]
    logits = network.csc_layers[0]
    growth = None
    rows = ()
    try:
        analyzer = create_method_analyzer(spec, network, patterns)
        if hasattr(analyzer, "propagate") and (spec.runs_on(network.name, "csc")
                                               or wants_growth(spec, analyzer)):
            shape = tuple(analyzer.relevance_shape(logits))
            if n_vectors is None:
                vectors = np.random.default_rng(seed).standard_normal((2,) + shape)
                vectors = vectors.astype(np.float32)
            else:
                vectors = unit_vectors(seed, image_id, 0, n_vectors, shape)
            n = len(vectors)
            lower = list(network.layers[:-1])
            growth = _growth_seed(spec, analyzer, x, logits, image_logits)
            # the growth check shares this propagation where it reads no other
            # layer (IG: the input, one vector at a time); else it runs on its
            # own, in batch 1, once the check passed (the relevance of every
            # layer in batch 3 raised LRP CMP a2b1's peak on ResNet50V2 at
            # 224 px from 4.95 to 5.64 GiB)
            rides = isinstance(growth, GrowthSeed) and set(growth.names) <= set(lower)
            if rides:
                vectors = np.concatenate([vectors, growth.seed.astype(np.float32)])
            out = analyzer.propagate(x, vectors, logits, lower,
                                     **image_id_options(analyzer, [image_id]))
            values = [np.asarray(out[name]) for name in lower]
            if rides:
                growth = growth_ratios({name: out[name][n:] for name in growth.names},
                                       growth, bound=model_input.EXPLOSION_BOUND)
            if n_vectors is not None and spec.runs_on(network.name, "csc"):
                rows = _unit_of_check(analyzer, x, network, spec, logits, image_id=image_id,
                                      n_vectors=n_vectors, seed=seed, patterns=patterns,
                                      table=table,
                                      relevances={name: out[name][:n] for name in lower})
        else:  # its experiments use its maps only: the predicted class's map
            scores = (network.model.predict_on_batch(x)[0] if image_logits is None
                      else image_logits)
            values = [explain(analyzer, x[0], int(np.argmax(scores)), spec)]
    except Exception as error:  # every failure of a third-party analyzer is reported
        if analyzer is None:
            analyzer = _unchecked_analyzer(spec, network, patterns)
        reason, layers = diagnose(error, analyzer, network.model)
        return MethodCheck(spec, False, reason, layers)
    bad = [name for name, value in zip(network.layers, values) if not np.all(np.isfinite(value))]
    if bad:
        return MethodCheck(spec, False, f"non-finite relevance at layer {bad[0]!r}", (bad[0],))
    if isinstance(growth, GrowthSeed):
        growth = _own_growth(analyzer, x, growth)
    notes = tuple(method_warnings(spec, network, analyzer, x, growth=growth))
    if spec.needs_patterns:
        check = MethodCheck(spec, True, sanity_ok=False, warnings=notes, sanity_reason=(
            "its patterns belong to the trained weights; randomising the top layer "
            "would need patterns estimated anew"), csc_unit=rows)
    else:
        try:
            weight_sync(analyzer, spec.name, network.model)
            check = MethodCheck(spec, True, warnings=notes, csc_unit=rows)
        except ValueError as error:
            check = MethodCheck(spec, True, sanity_ok=False, sanity_reason=_first_line(error),
                                warnings=notes, csc_unit=rows)
    if probe is None:
        return check
    started = probe.pop("started", None)
    cost = probe_cost(spec, analyzer, network, x[0], sanity=check.sanity_ok,
                      build_s=time.perf_counter() - started if started else 0.0, **probe)
    return replace(check, cost=cost)


def _unit_of_check(analyzer, x, network, spec: MethodSpec, logits: str, *, image_id: int,
                   n_vectors: int, seed: int, patterns, table, relevances: dict) -> tuple:
    """The rows of the CSC unit of ``x`` made from the check's propagation
    ``relevances`` (the unit's vectors at ``logits``, every lower layer),
    or () if the network's CSC injects elsewhere or skips the method."""
    from ..experiments.csc import make_plan, unit_rows

    plan = make_plan(network, [spec], patterns=patterns, table=table)
    if not plan.methods or plan.injection_layers != (logits,) or set(
            plan.lower_layers[logits]) - set(relevances):
        return ()
    return tuple(unit_rows(analyzer, x, network, plan, image_id=image_id, method=spec.name,
                           n_vectors=n_vectors, seed=seed, exact_max_dim=0,
                           propagated={logits: relevances}))


def wants_growth(spec: MethodSpec, analyzer) -> bool:
    """Whether the audit measures the relevance growth of ``spec``: its maps
    are relevance and its analyzer propagates from any layer."""
    return (spec.analyzer.startswith(model_input.RELEVANCE_PREFIXES)
            and hasattr(analyzer, "injection_layers"))


def _growth_seed(spec: MethodSpec, analyzer, x: np.ndarray, logits: str,
                 image_logits: Optional[np.ndarray] = None):
    """The :class:`~csc_analyzers.model_input.GrowthSeed` of ``x``'s predicted
    class if the growth is measured and starts at ``logits``; else None, or
    the note saying why it could not be made. ``image_logits``: the model's
    output for ``x`` when known."""
    if not wants_growth(spec, analyzer):
        return None
    try:
        grow = growth_seed(analyzer, x, logits=image_logits)
    except Exception as error:  # a diagnosis only; say that it could not be made
        return _not_measured(error)
    return grow if grow.top == logits else None


def _own_growth(analyzer, x: np.ndarray, grow: GrowthSeed):
    """:func:`~csc_analyzers.model_input.relevance_growth` from a made seed:
    ``(ratios, first)``, or the note saying why it could not be measured."""
    try:
        values = analyzer.propagate(x, grow.seed, grow.top, list(grow.names))
        return growth_ratios(values, grow, bound=model_input.EXPLOSION_BOUND)
    except Exception as error:  # a diagnosis only; say that it could not be made
        return _not_measured(error)


def _not_measured(error: Exception) -> str:
    return f"relevance growth not measured ({type(error).__name__}: {_first_line(error)})"


def method_warnings(spec: MethodSpec, network, analyzer, x: np.ndarray, *,
                    growth=None) -> list:
    """What the user must know about ``spec`` on this model: the activation
    warnings of :mod:`csc_analyzers.checks` (methods defined through the
    ReLU, or whose analysis in the paper assumes ReLU networks, on a model
    with other activations) and, for methods whose maps are relevance
    (:func:`wants_growth`), an explosion of relevance
    (:func:`csc_analyzers.model_input.relevance_growth`) for the predicted
    class of ``x``. ``growth``: the growth's ``(ratios, first)`` or the note
    why it was not measured, when already known (:func:`check_method`
    measures it with its own propagation)."""
    from ..checks import RELU_ONLY, RELU_THEORY, layer_activations
    from ..model_input import explosion_message, relevance_growth

    notes = []
    activations = layer_activations(network.model)
    if activations:
        listed = ", ".join(f"{layer!r} ({act})" for layer, act in
                           list(activations.items())[:4]) + (", ..." if len(activations) > 4
                                                             else "")
        if spec.analyzer in RELU_ONLY:
            notes.append(f"defined through the ReLU; the model has other activations at "
                         f"{listed}: the map follows the project's convention there and the "
                         "paper's analysis does not apply")
        elif spec.analyzer in RELU_THEORY:
            notes.append(f"defined for any activation, but the paper's analysis assumes ReLU "
                         f"networks; the model has other activations at {listed}")
    if isinstance(growth, str):
        notes.append(growth)
    elif wants_growth(spec, analyzer):
        bound = model_input.EXPLOSION_BOUND
        if growth is None:
            target = int(np.argmax(network.model.predict_on_batch(x)[0]))
            try:
                growth = relevance_growth(analyzer, x, target=target, bound=bound)
            except Exception as error:  # a diagnosis only; say that it could not be made
                growth = _not_measured(error)
        if isinstance(growth, str):
            notes.append(growth)
        elif growth[1] is not None:
            notes.append(explosion_message(*growth, bound))
    return notes


def probe_cost(spec: MethodSpec, analyzer, network, image: np.ndarray, *, build_s: float,
               n_vectors: int, seed: int, sanity: bool, composites: bool,
               patterns=None) -> MethodCost:
    """Time a CSC unit and a saliency map of ``spec`` on ``image``, each twice:
    the first call warms the graph up and is counted with ``build_s``, the
    second is the per-image cost."""
    from ..experiments.csc import make_plan, unit_rows

    def twice(run) -> tuple:
        """(first, second) durations: the first call may build graph parts
        (IG's and SmoothGrad's CSC sums: 15 s on a small ResNet, minutes on
        MobileNetV2), the second is what every further image costs."""
        times = []
        for k in range(2):
            start = time.perf_counter()
            run(k)
            times.append(time.perf_counter() - start)
        return times[0], times[1]

    target = int(np.argmax(network.model.predict_on_batch(image[None])[0]))
    csc_first = csc_s = 0.0
    if "csc" not in spec.exclude_experiments:
        plan = make_plan(network, [spec], patterns=patterns)
        csc_first, csc_s = twice(lambda k: unit_rows(
            analyzer, image[None], network, plan, image_id=k, method=spec.name,
            n_vectors=n_vectors, seed=seed, exact_max_dim=0))
    map_first, map_s = twice(lambda k: explain(analyzer, image, target, spec, image_id=k))
    maps = maps_per_image(sanity, composites)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    warmup = max(csc_first - csc_s, 0.0) + max(map_first - map_s, 0.0)
    return MethodCost(build_s=build_s + warmup, csc_s=csc_s, map_s=map_s,
                      maps_per_image=maps, rss_bytes=int(rss))


def check_methods(specs, network, image, *, patterns=None, table=None, seed: int = 0) -> list:
    """:func:`check_method` for every spec, in order."""
    return [check_method(spec, network, image, patterns=patterns, table=table, seed=seed)
            for spec in specs]


__all__ = ["AuditError", "MethodCheck", "MethodCost", "maps_per_image", "method_warnings",
           "wants_growth", "probe_cost", "load_model", "check_model_io", "reserve_layer_names",
           "triggered_checks", "unknown_layers", "diagnose", "static_check",
           "construction_check", "check_method",
           "check_methods",
           "KNOWN_LAYER_TYPES", "MODEL_SUFFIXES"]
