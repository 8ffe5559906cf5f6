"""What the sanity-check, random-logit and class-sensitivity experiments share:
choosing methods for a network, building an analyzer from a method spec,
computing 2-D saliency maps, the per-image random class, and unit keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from ..factory import analyzers as ANALYZERS
from ..factory import create_analyzer
from ..integrity import UNDEFINED_SCORE, undefined_reason
from ..logits import logit_model
from ..metrics.heatmaps import postprocess
from ..registry import PLAIN, RECIPE_SETTINGS_DEFAULTS, MethodSpec, recipe_settings

# A patterns provider: ``patterns(network) -> patterns`` for PatternNet/-Attribution.
PatternsProvider = Callable[[object], object]

ROW_COLUMNS = ("network", "method", "image_id", "experiment", "level", "layer",
               "metric", "value", "seed", "nonfinite", "undefined")


@dataclass
class ModelNetwork:
    """A :class:`~csc_analyzers.models.Network`-like wrapper of any Keras model
    (the fields the experiments read). ``sanity_layers`` default to every
    weight layer, ``layers`` to the model's layer names."""

    name: str
    model: object
    input_range: tuple = (0.0, 1.0)
    sanity_layers: Sequence[str] = ()
    aliases: dict = field(default_factory=dict)
    class_names: Sequence[str] = ()
    analyzer_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.sanity_layers:
            self.sanity_layers = tuple(layer.name for layer in self.model.layers
                                       if layer.weights)
        if not self.class_names:
            self.class_names = tuple(str(k) for k in range(self.n_classes))

    @property
    def n_classes(self) -> int:
        return int(self.model.outputs[0].shape[-1])


def select_for(network, specs: Sequence[MethodSpec], experiment: str,
               patterns: PatternsProvider | None = None, table=None, *,
               recipe: str = PLAIN) -> tuple:
    """``(runnable, skipped)``: the specs that run on ``network`` in ``experiment``
    under ``recipe`` and ``(spec, reason)`` for the others (analyzer not
    available, left out of this network or experiment or by the recipe,
    pattern method without a patterns provider)."""
    table = ANALYZERS if table is None else table
    runnable, skipped = [], []
    for spec in specs:
        if spec.analyzer not in table:
            skipped.append((spec, f"analyzer {spec.analyzer!r} is not available"))
        elif not spec.runs_on(network.name, experiment):
            skipped.append((spec, f"left out of {network.name}/{experiment}"))
        elif not spec.runs_on(network.name, experiment, recipe=recipe):
            skipped.append((spec, spec.recipe_change(network.name, recipe).note))
        elif spec.needs_patterns and patterns is None:
            skipped.append((spec, "needs patterns and no patterns provider was given"))
        else:
            runnable.append(spec)
    return runnable, skipped


ANALYSIS_MODEL = "<analysis model>"  # analyzer_cache key of the shared logit model


def analysis_model(network):
    """The model the analyzers and the randomisation share: ``network.model``
    without its final softmax (its own layers, see :func:`logit_model`).
    A network with an ``analyzer_cache`` keeps it there, so that every
    experiment randomises the very layers its cached analyzers read (a fused
    softmax is replaced by a clone layer once, not per call)."""
    cache = getattr(network, "analyzer_cache", None)
    if cache is not None and ANALYSIS_MODEL in cache:
        return cache[ANALYSIS_MODEL]
    model = logit_model(network.model)
    aliases = getattr(network, "aliases", None)
    if aliases:
        model._csc_layer_aliases = dict(aliases)
    if cache is not None:
        cache[ANALYSIS_MODEL] = model
    return model


def analyzer_key(spec: MethodSpec, network, recipe: str = PLAIN):
    """The ``analyzer_cache`` key of ``spec`` on ``network`` under ``recipe``:
    the method name, with the recipe where it changes the method there."""
    if spec.recipe_change(network.name, recipe) is None:
        return spec.name
    return (spec.name, recipe)


def build_analyzer(spec: MethodSpec, model, network,
                   patterns: PatternsProvider | None = None, *, recipe: str = PLAIN):
    """The analyzer of ``spec`` on ``model`` (a logit model of ``network``),
    explaining the class given per image (``neuron_selection_mode="index"``),
    with the keyword arguments ``recipe`` adds on this network.

    A network with an ``analyzer_cache`` dict keeps the analyzer there, so the
    CSC, sanity-check, random-logit and class-sensitivity experiments share
    one graph per (network, method, recipe): the analyzers read the model's own
    variables, which the sanity check randomises in place and restores."""
    cache = getattr(network, "analyzer_cache", None)
    key = analyzer_key(spec, network, recipe)
    if cache is not None and key in cache:
        return cache[key]
    kwargs = spec.analyzer_kwargs(tuple(network.input_range), network=network.name,
                                  recipe=recipe)
    if spec.needs_patterns:
        if patterns is None:
            raise ValueError(f"method {spec.name!r} needs patterns; pass a patterns provider")
        kwargs["patterns"] = patterns(network) if callable(patterns) else patterns
    analyzer = create_analyzer(spec.analyzer, model, neuron_selection_mode="index",
                               check_inputs=False, **kwargs)  # experiments score bad inputs
    aliases = getattr(network, "aliases", None)
    if aliases:
        analyzer.layer_aliases = dict(aliases)
    if cache is not None:
        cache[key] = analyzer
    return analyzer


def record_recipe(store, network, recipe: str = PLAIN) -> None:
    """Record in ``store`` the recipe in effect on ``network`` and what it
    changes there (:func:`~csc_analyzers.registry.recipe_settings`);
    ArgumentError if the store holds units of this network made under another
    one (units stored before recipes were recorded count as ``plain``)."""
    store.check_settings(network.name, recipe_settings(network.name, recipe),
                         defaults=RECIPE_SETTINGS_DEFAULTS)


def image_id_options(analyzer, image_ids) -> dict:
    """``{"image_ids": image_ids}`` for an analyzer whose results depend on
    the image id (``takes_image_ids``, e.g. SmoothGrad's per-image noise),
    else ``{}``; None gives ``{}`` (such an analyzer then keys on the image)."""
    if image_ids is None or not getattr(analyzer, "takes_image_ids", False):
        return {}
    return {"image_ids": [int(i) for i in np.ravel(image_ids)]}


def explain(analyzer, image, target: int, spec: MethodSpec, *,
            image_id: int | None = None) -> np.ndarray:
    """The 2-D saliency map (H, W) of one image (H, W, C) for class ``target``,
    post-processed as ``spec`` says. Images are analysed one at a time, so a
    map does not depend on which other images share a batch. ``image_id``
    goes to analyzers that take image ids (SmoothGrad draws the image's
    noise from it), so a map is the same in every run, shard and process."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"image has shape {x.shape}; expected one image (H, W, C)")
    out = analyzer.analyze(x[None], neuron_selection=[int(target)],
                           **image_id_options(analyzer, image_id))
    if isinstance(out, dict):
        if len(out) != 1:
            raise ValueError(f"analyzer of {spec.name!r} returned {len(out)} outputs")
        out = next(iter(out.values()))
    return postprocess(np.asarray(out)[0], method=spec.postprocess)


def map_reason(*maps, image=None, constant_undefined: bool = True) -> tuple:
    """``(nonfinite, undefined)`` of the rows scored from ``maps`` of
    ``image``: whether a map (or the image) held NaN/Inf, and the reason of
    :func:`~csc_analyzers.integrity.undefined_reason` ("" if defined)."""
    reason = undefined_reason(*maps, inputs=image, constant_undefined=constant_undefined)
    nonfinite = any(not np.isfinite(np.asarray(m, dtype=np.float64)).all() for m in maps)
    return nonfinite or reason == "nan input", reason


def random_class(true_class: int, n_classes: int, *, seed: int, image_id: int) -> int:
    """A class drawn uniformly from the ``n_classes - 1`` classes other than
    ``true_class``, with an rng seeded by ``(seed, image_id)``."""
    if n_classes < 2:
        raise ValueError(f"n_classes={n_classes}: a random other class needs >= 2 classes")
    if not 0 <= true_class < n_classes:
        raise ValueError(f"true class {true_class} outside 0..{n_classes - 1}")
    rng = np.random.default_rng([int(seed), int(image_id)])
    draw = int(rng.integers(0, n_classes - 1))
    return draw + 1 if draw >= true_class else draw


def unit_keys(network_name: str, specs: Sequence[MethodSpec], image_ids) -> list:
    """Units in their fixed order: method-major, then image."""
    return [(network_name, spec.name, int(i)) for spec in specs for i in image_ids]


def row(network, method, image_id, experiment, level, layer, metric, value, seed, *,
        nonfinite: bool = False, undefined: str = "") -> dict:
    """One table row; ``nonfinite`` is True if ``value`` is NaN/Inf or the
    caller flags it (e.g. a map behind the value held NaN/Inf). ``undefined``
    is why the row is not scored (:func:`~csc_analyzers.integrity.undefined_reason`
    of its maps: "zero map", "overflow", ...), "" if it is; a NaN/Inf value
    without a reason from its maps gets ``"undefined score"``."""
    value = float(value)
    flag = bool(nonfinite) or not np.isfinite(value)
    reason = str(undefined or "")
    if not reason and not np.isfinite(value):
        reason = UNDEFINED_SCORE
    return dict(zip(ROW_COLUMNS, (network, method, int(image_id), experiment, int(level),
                                  layer, metric, value, int(seed), flag, reason)))


__all__ = ["ModelNetwork", "PatternsProvider", "ROW_COLUMNS", "select_for", "analysis_model",
           "build_analyzer", "analyzer_key", "record_recipe", "image_id_options", "explain",
           "random_class", "unit_keys", "row", "map_reason"]
