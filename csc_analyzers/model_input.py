"""What the API checks on the models and arrays a user hands it, before any
long work; each refusal is an :class:`~csc_analyzers.errors.InputError`
subclass whose message names the culprit.

* :func:`load_model`: the public loader (``csc_analyzers.load_model``): a
  ``.keras`` / ``.h5`` file or SavedModel directory, loaded in the project's
  graph mode with the saved weights, one-line errors for bad files, the
  layer-name counters moved past the model's names.
* :func:`prepare_model`: what :func:`csc_analyzers.create_analyzer` does to
  any model first: a model built or loaded in eager mode (before
  ``import csc_analyzers``) is copied into the graph (:func:`graph_model`),
  and the layer-name counters are moved past its names
  (:func:`reserve_layer_names`), so that a loaded model with Keras' default
  names (``add``, ``add_1``) works on the first call.
* :func:`check_batch` / :func:`check_neuron_selection`: an empty batch, a
  batch of the wrong shape, NaN / Inf values (counted and located), an
  index that names no output.
* :func:`relevance_growth`: relevance that grows far beyond the logit it
  explains, with the layer where it first passes the bound
  (:class:`~csc_analyzers.errors.RelevanceExplosionWarning`).
* :class:`InputCheckMixin`: the checks around ``analyze`` / ``propagate`` of
  the analyzers :func:`csc_analyzers.create_analyzer` returns.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras

from .errors import (EagerModelError, EmptyBatchError, InputShapeError, NeuronSelectionError,
                     NonFiniteInputError, RelevanceExplosionWarning)

# |R|_1 of a layer's relevance above this multiple of the image's largest
# |logit| is called an explosion. Rules that conserve relevance (LRP-z,
# epsilon, DeepLIFT, IG) keep it near the few-fold that cancellation of
# positive and negative parts gives; alpha-beta multiplies it by up to
# alpha + beta per layer (LRP alpha5-beta4: ~9e4 after 11 layers of a small
# random net, 2.9e35 on ResNet50V2).
EXPLOSION_BOUND = 1e4
# Analyzer keys whose maps are relevance in the logit's units (they sum to
# about the logit, or to f(x) - f(x0)); gradient-type maps have other units.
RELEVANCE_PREFIXES = ("lrp", "deep_taylor", "deep_lift", "excitation_backprop",
                      "pattern.attribution", "integrated_gradients", "input_t_gradient")


# -- models ---------------------------------------------------------------------------

def is_eager_model(model) -> bool:
    """True if ``model`` was built while TensorFlow executed eagerly (its
    variables live outside the graph the analyzers build in)."""
    return any(not getattr(v, "_in_graph_mode", True) for v in model.weights)


def graph_model(model):
    """``model`` itself if it lives in the graph; for a model built or loaded
    before ``import csc_analyzers`` (eager), a copy rebuilt from its
    configuration in the graph with its weights (same predictions). A
    subclassed model has no configuration to rebuild from:
    :class:`EagerModelError` says what to do instead."""
    if not is_eager_model(model):
        return model
    from tensorflow.python.eager import context

    advice = ("import csc_analyzers before building or loading the model, or save it "
              "(model.save('m.keras')) and load it with csc_analyzers.load_model")
    if not isinstance(model, (keras.Sequential,)) and not getattr(model, "_is_graph_network",
                                                                  False):
        raise EagerModelError(
            f"model {model.name!r} ({type(model).__name__}) was built in eager mode, before "
            "`import csc_analyzers` switched TensorFlow to graph mode, and a subclassed "
            f"model cannot be copied into the graph: {advice}")
    with context.eager_mode():
        values = [np.asarray(v.numpy()) for v in model.weights]
    try:
        copy = type(model).from_config(model.get_config())
    except Exception as error:  # custom layers without get_config, ...
        raise EagerModelError(
            f"model {model.name!r} was built in eager mode, before `import csc_analyzers`, "
            f"and cannot be rebuilt in graph mode ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): {advice}") from None
    shapes = [tuple(w.shape) for w in copy.weights]
    if shapes != [v.shape for v in values]:
        raise EagerModelError(
            f"model {model.name!r} was built in eager mode, before `import csc_analyzers`, "
            f"and its graph copy has other weights: {advice}")
    copy.set_weights(values)
    return copy


def reserve_layer_names(model) -> None:
    """Advance the graph's layer-name counters past the names of ``model``.

    A loaded model keeps its generated names (``add``, ``add_1``, ...) while
    the counters of the graph start at zero, so layers created later by an
    analyzer would get the same names and Keras refuses the analyzer model
    ("The name "add" is used 2 times"). Names not of the form ``prefix`` /
    ``prefix_N`` are left alone.
    """
    from keras.src import backend as kbackend  # Keras' own name counters

    highest: dict = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            reserve_layer_names(layer)
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", layer.name)
        prefix, number = match.group(1), int(match.group(2) or 0)
        highest[prefix] = max(highest.get(prefix, -1), number)
    for prefix, number in highest.items():
        while True:
            name = kbackend.unique_object_name(prefix, zero_based=True)
            suffix = name[len(prefix) + 1:] if name != prefix else "0"
            if not suffix.isdigit() or int(suffix) >= number:
                break


def prepare_model(model):
    """:func:`graph_model` of ``model`` with :func:`reserve_layer_names` done."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a Keras model, got {type(model).__name__}")
    model = graph_model(model)
    reserve_layer_names(model)
    return model


def load_model(path, *, argument: str = "model"):
    """The Keras model saved at ``path`` (a ``.keras`` or ``.h5`` file, or a
    SavedModel directory), without its training configuration, with the
    saved weights (its predictions equal those of the saved model), ready
    for :func:`csc_analyzers.create_analyzer`.

    Raises :class:`~csc_analyzers.errors.ModelFileError` (or
    ``ModelFileNotFoundError``) naming ``path`` for a missing, empty,
    corrupt or foreign file, and for a model with several inputs or outputs.
    ``keras.models.load_model`` after ``import csc_analyzers`` gives the same
    weights (:mod:`residual_support._tf` makes Keras' ``.keras`` loader run
    its weight assignments in graph mode).
    """
    from .checks import load_user_model

    model = load_user_model(path, argument=argument)
    reserve_layer_names(model)
    return model


# -- arrays -----------------------------------------------------------------------------

def _positions(mask: np.ndarray, limit: int = 3) -> str:
    where = np.argwhere(mask)[:limit]
    text = ", ".join(str(tuple(int(i) for i in index)) for index in where)
    return text + (", ..." if mask.sum() > limit else "")


def check_batch(model, x, *, name: str = "X") -> np.ndarray:
    """``x`` as float32 after checking it is a non-empty batch that fits the
    model's input and holds only finite values. Raises
    :class:`EmptyBatchError`, :class:`InputShapeError` or
    :class:`NonFiniteInputError` (with the count and first positions of the
    NaN and Inf values), each naming the array ``name``."""
    array = np.asarray(x)
    if array.dtype == object:
        raise InputShapeError(f"{name}: not a numeric array (dtype object); pass an "
                              "N x ... float array")
    array = array.astype(np.float32, copy=False)
    expected = tuple(model.inputs[0].shape)
    if array.ndim != len(expected):
        raise InputShapeError(f"{name}: shape {array.shape} has {array.ndim} dimensions, model "
                              f"{model.name!r} takes {len(expected)} (batch first: "
                              f"{expected}); for one image use x[None]")
    if array.shape[0] == 0:
        raise EmptyBatchError(f"{name}: empty batch (shape {array.shape}); pass at least one "
                              "image")
    wrong = [(axis, int(want), got) for axis, (want, got) in
             enumerate(zip(expected[1:], array.shape[1:]), start=1)
             if want is not None and int(want) != got]
    if wrong:
        raise InputShapeError(f"{name}: shape {array.shape} does not fit the input of model "
                              f"{model.name!r} {expected} (axis {wrong[0][0]}: "
                              f"{wrong[0][2]} instead of {wrong[0][1]})")
    nan, inf = np.isnan(array), np.isinf(array)
    if nan.any() or inf.any():
        parts = [f"{int(m.sum())} {label} (at {_positions(m)})"
                 for m, label in ((nan, "NaN"), (inf, "Inf")) if m.any()]
        images = sorted({int(i) for i in np.argwhere(nan | inf)[:, 0]})
        raise NonFiniteInputError(
            f"{name}: {' and '.join(parts)} of {array.size} positions, in image(s) "
            f"{images[:10]}{' ...' if len(images) > 10 else ''}; the maps of such inputs are "
            "undefined: replace or drop these images")
    return array


def check_neuron_selection(neuron_selection, *, n_outputs: int, batch: int, mode: str):
    """Raise :class:`NeuronSelectionError` unless ``neuron_selection`` fits
    ``mode`` and names outputs in [0, ``n_outputs``): one index, or one per
    image of the ``batch`` (or a multiple of it)."""
    if mode != "index":
        if neuron_selection is not None:
            raise NeuronSelectionError(
                f"neuron_selection={neuron_selection!r} given, but the analyzer's "
                f"neuron_selection_mode is {mode!r}; create it with "
                "neuron_selection_mode='index'")
        return
    if neuron_selection is None:
        raise NeuronSelectionError("neuron_selection_mode 'index' needs neuron_selection "
                                   "(an output index, or one per image)")
    index = np.asarray(neuron_selection)
    if index.dtype.kind not in "iu" and not (index.dtype.kind == "f"
                                              and np.all(np.mod(index, 1) == 0)):
        raise NeuronSelectionError(f"neuron_selection {neuron_selection!r}: not integer")
    flat = index.reshape(-1).astype(np.int64)
    if flat.size != 1 and flat.size % batch:
        raise NeuronSelectionError(
            f"neuron_selection has {flat.size} indices for a batch of {batch} images; give "
            "one index, or one per image")
    bad = flat[(flat < 0) | (flat >= n_outputs)]
    if bad.size:
        raise NeuronSelectionError(
            f"neuron_selection {bad[:5].tolist()}: out of range; the model has {n_outputs} "
            f"outputs (indices 0 to {n_outputs - 1})")


# -- relevance growth -------------------------------------------------------------------

def gradients_inside(analyzer) -> bool:
    """True for analyzers whose propagated values are relevance at the input
    only: Integrated Gradients (and the other gradient averages) and input x
    gradient pass plain gradients through the hidden layers and multiply by
    the input (difference) at the end."""
    from innvestigate.analyzer.gradient_based import InputTimesGradient

    from .methods.smoothgrad import GradientAverage

    return isinstance(analyzer, (GradientAverage, InputTimesGradient))


def _layer_order(analyzer, model) -> list:
    """The layers whose propagated values are relevance, input first, then
    in the model's order (:func:`gradients_inside`: the input only)."""
    if gradients_inside(analyzer):
        return ["input"]
    inputs = {layer.name for layer in model.layers if isinstance(layer, keras.layers.InputLayer)}
    names = [n for n in analyzer.injection_layers() if n not in inputs]
    order = {layer.name: k for k, layer in enumerate(model.layers)}
    return sorted(names, key=lambda n: -1 if n == "input" else order.get(n, len(order)))


@dataclass(frozen=True)
class GrowthSeed:
    """What :func:`relevance_growth` injects for one image: ``seed`` (batch
    1) at the logits layer ``top``, propagated to ``names`` (input first);
    ``scale`` is the image's largest |logit| and ``top_ratio`` the explained
    |logit| over it. ``input_factor``: what the propagated input value is
    multiplied by to give the map (the image, for input x gradient, whose
    propagation ends in the gradient), None if it is the map."""

    seed: np.ndarray
    top: str
    names: tuple
    scale: float
    top_ratio: float
    input_factor: Optional[np.ndarray] = None


def growth_seed(analyzer, x, *, target: Optional[int] = None,
                logits: Optional[np.ndarray] = None) -> GrowthSeed:
    """The :class:`GrowthSeed` of ``analyzer`` for one image ``x`` (batch 1)
    and output ``target`` (None: the predicted class): ``onehot(target) *
    logit`` (innvestigate's start of the relevance rules), or
    ``onehot(target)`` where that is what the map starts from: DeepLIFT
    (whose propagated values are contributions) and the
    :func:`gradients_inside` analyzers (a gradient of the logit).
    ``logits``: the model's output for ``x`` when already known (else one
    forward run computes it)."""
    from .methods.deeplift_wrapper import DeepLiftAnalyzer

    model = analyzer._model
    if logits is None:
        logits = model.predict_on_batch(np.asarray(x, np.float32))[0]
    logits = np.asarray(logits, dtype=np.float32)
    if target is None:
        target = int(np.argmax(logits))
    scale = float(np.max(np.abs(logits))) or 1.0
    top = model.outputs[0]._keras_history[0].name
    seed = np.zeros((1,) + logits.shape, np.float32)
    unit = isinstance(analyzer, DeepLiftAnalyzer) or gradients_inside(analyzer)
    seed[0, target] = 1.0 if unit else logits[target]
    names = tuple(n for n in _layer_order(analyzer, model) if n != top)
    from innvestigate.analyzer.gradient_based import InputTimesGradient
    factor = np.asarray(x, np.float32) if isinstance(analyzer, InputTimesGradient) else None
    return GrowthSeed(seed, top, names, scale, abs(float(logits[target])) / scale, factor)


def growth_ratios(values: dict, grow: GrowthSeed, *, bound: float = EXPLOSION_BOUND) -> tuple:
    """``(ratios, first)`` of :func:`relevance_growth` from ``values`` (layer
    -> relevance of ``grow.seed`` propagated from ``grow.top``, batch 1)."""
    values = dict(values)
    if grow.input_factor is not None and "input" in values:
        values["input"] = np.asarray(values["input"]) * grow.input_factor
    ratios = {name: float(np.abs(values[name]).sum()) / grow.scale for name in grow.names}
    ratios[grow.top] = grow.top_ratio
    first = None
    for name in reversed(grow.names):  # from the logits down
        if not np.isfinite(ratios[name]) or ratios[name] > bound:
            first = name
            break
    return ratios, first


def relevance_growth(analyzer, x, *, target: int, bound: float = EXPLOSION_BOUND):
    """Per-layer relevance of ``analyzer`` for one image ``x`` (batch 1) and
    output ``target``: ``(ratios, first)`` where ``ratios`` maps each layer
    (input first, logits last) to ``|R|_1 / max |logit|`` of the image and
    ``first`` is the highest layer (nearest the logits) whose ratio exceeds
    ``bound``, None if none does. The relevance injected at the logits is
    :func:`growth_seed`'s. For :func:`gradients_inside` analyzers (IG) only
    the input is measured: their hidden layers hold gradients, not relevance."""
    grow = growth_seed(analyzer, x, target=target)
    values = analyzer.propagate(x, grow.seed, grow.top, list(grow.names))
    return growth_ratios(values, grow, bound=bound)


def explosion_message(ratios: dict, first: str, bound: float = EXPLOSION_BOUND) -> str:
    low = ratios.get("input", max(ratios.values()))
    return (f"relevance explodes: |R|_1 reaches {low:.3g} x the largest |logit| at the input "
            f"(bound {bound:g}); it first exceeds the bound at layer {first!r} "
            f"({ratios[first]:.3g} x). The map is finite but its values mean little")


class InputCheckMixin:
    """``analyze`` and ``propagate`` refuse bad input (:func:`check_batch`,
    :func:`check_neuron_selection`) before any session run; ``analyze`` of
    a relevance analyzer (``relevance_output``) warns with
    :class:`RelevanceExplosionWarning` when a map's |R|_1 exceeds
    ``explosion_bound`` (None: off) times the image's largest |logit|,
    naming the layer where it starts if the analyzer has ``propagate``."""

    relevance_output = False
    explosion_bound = EXPLOSION_BOUND

    @staticmethod
    def load(class_name, state):
        """The saved analyzer as the class ``create_analyzer`` gives
        (:func:`csc_analyzers.serialization.load_analyzer`)."""
        from .serialization import load_analyzer
        return load_analyzer(class_name, state)

    @staticmethod
    def load_npz(fname):
        """:meth:`load` from a file written by ``save_npz``."""
        from .serialization import load_analyzer_npz
        return load_analyzer_npz(fname)

    def _n_outputs(self) -> int:
        return int(self._model.outputs[0].shape[-1])

    def analyze(self, X, neuron_selection=None, *args, **kwargs):
        x = check_batch(self._model, X, name="X")
        mode = getattr(self, "_neuron_selection_mode", "max_activation")
        check_neuron_selection(neuron_selection, n_outputs=self._n_outputs(),
                               batch=x.shape[0], mode=mode)
        result = super().analyze(x, neuron_selection, *args, **kwargs)
        if self.relevance_output and self.explosion_bound and mode != "all":
            self._warn_explosion(x, np.asarray(result), neuron_selection, mode)
        return result

    def propagate(self, x, relevance, from_layer, *args, **kwargs):
        x = check_batch(self._model, x, name="x")
        return super().propagate(x, relevance, from_layer, *args, **kwargs)

    def _warn_explosion(self, x, maps, neuron_selection, mode) -> None:
        if maps.shape[:1] != x.shape[:1]:
            return
        logits = np.asarray(self._model.predict_on_batch(x))
        scale = np.maximum(np.abs(logits).max(axis=1), 1e-12)
        ratio = np.abs(maps.reshape(len(maps), -1)).sum(axis=1) / scale
        ratio = np.where(np.isfinite(ratio), ratio, np.inf)
        worst = int(np.argmax(ratio))
        if ratio[worst] <= self.explosion_bound:
            return
        if mode == "index":
            targets = np.broadcast_to(np.asarray(neuron_selection).reshape(-1), (len(x),))
        else:
            targets = np.argmax(logits, axis=1)
        message = (f"relevance explodes: image {worst}'s map has |R|_1 = {ratio[worst]:.3g} x "
                   f"its largest |logit| (bound {self.explosion_bound:g})")
        if hasattr(self, "propagate") and hasattr(self, "injection_layers"):
            try:
                ratios, first = relevance_growth(self, x[worst:worst + 1],
                                                 target=int(targets[worst]),
                                                 bound=self.explosion_bound)
            except Exception:  # the layer scan is a diagnosis; the warning stands without
                first = None
            if first is not None:
                message += (f"; it first exceeds the bound at layer {first!r} "
                            f"({ratios[first]:.3g} x)")
        warnings.warn(message + ". The map is finite but its values mean little",
                      RelevanceExplosionWarning, stacklevel=3)


_CHECKED: dict = {}


def with_input_checks(cls, name: str = ""):
    """A subclass of analyzer class ``cls`` with :class:`InputCheckMixin`
    (cached per class and key); ``name`` (the analyzer key) decides whether
    its maps are relevance (:data:`RELEVANCE_PREFIXES`)."""
    if not isinstance(cls, type) or issubclass(cls, InputCheckMixin):
        return cls
    relevance = name.startswith(RELEVANCE_PREFIXES)
    key = (cls, relevance)
    if key not in _CHECKED:
        _CHECKED[key] = type(cls.__name__, (InputCheckMixin, cls), {
            "__doc__": cls.__doc__, "__module__": cls.__module__,
            "relevance_output": relevance})
    return _CHECKED[key]


__all__ = ["load_model", "prepare_model", "graph_model", "is_eager_model",
           "reserve_layer_names", "check_batch", "check_neuron_selection",
           "relevance_growth", "GrowthSeed", "growth_seed", "growth_ratios",
           "gradients_inside",
           "explosion_message", "InputCheckMixin", "with_input_checks",
           "EXPLOSION_BOUND", "RELEVANCE_PREFIXES"]
