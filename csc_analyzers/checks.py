"""Checks that run before any long work, each raising an
:class:`~csc_analyzers.errors.InputError` whose message names the culprit.

* :func:`load_user_model`: a Keras model from a ``.keras`` / ``.h5`` file or a
  SavedModel directory; a missing or corrupt file gives a one-line
  :class:`~csc_analyzers.errors.ModelFileError`, never a TensorFlow traceback.
* :func:`check_layers`: layers a method cannot handle (name, type, methods),
  from :mod:`residual_support.layers` and the DeepLIFT converter's check.
* :func:`check_activations`: non-ReLU activations, an error for methods only
  defined for ReLU networks, a warning where only the paper's theory assumes
  ReLU (:data:`RELU_ONLY`, :data:`RELU_THEORY`).
* :func:`check_input_shape`, :func:`check_methods`, :func:`check_network_name`,
  :func:`check_shard`, :func:`check_patterns_file`, :func:`check_image_directory`.
* :func:`preflight`: the model checks for a list of methods in one call.
* :func:`exit_on_input_error`: scripts print the message and exit with status 2.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from pathlib import Path

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow import keras

from .errors import (ActivationError, ArgumentError, ImageDirectoryError, InputError,
                     InputShapeError, ModelFileError, ModelFileNotFoundError,
                     PatternsFileError, UnsupportedLayerError)

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

DEEPLIFT_ANALYZERS = frozenset({"deep_lift.wrapper"})

# Analyzer keys whose rule is only defined for ReLU networks: a non-ReLU
# activation is an error.
RELU_ONLY = frozenset({"guided_backprop", "deconvnet", "rectgrad", "deep_taylor",
                       "deep_taylor.bounded", "pattern.net", "pattern.attribution"})
# Rules defined for any activation whose analysis in the paper assumes the
# non-negative activations of a ReLU network: a non-ReLU activation is a warning.
RELU_THEORY = frozenset({"lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.alpha_beta",
                         "lrp.cmp_alpha_1_beta_0", "lrp.cmp_alpha_2_beta_1", "lrp.z_plus",
                         "lrp.z_plus_fast", "lrp.alpha_1_beta_0_IB", "lrp.alpha_2_beta_1_IB",
                         "lrp.sequential_preset_a", "lrp.sequential_preset_b",
                         "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat",
                         "lrp.contrastive", "excitation_backprop",
                         "excitation_backprop.contrastive"})
# DeepLIFT's converter has rules for these activations (and leaky ReLUs).
# (monotonic activations: the deeplift package's and those of
# residual_support.deeplift_activations).
DEEPLIFT_ACTIVATIONS = frozenset({"linear", "relu", "sigmoid", "tanh", "leakyrelu", "elu",
                                  "softplus"})


def _deeplift_activation(name: str) -> bool:
    return name in DEEPLIFT_ACTIVATIONS or name.startswith(("leaky relu(", "relu(max_value="))


# --- model files ---------------------------------------------------------------------------

def run_weight_assignments(model, operations) -> None:
    """Run the variable assignments among ``operations`` (those a Keras
    loader created) other than the variables' initialisers. Keras' ``.keras``
    loader needs this in graph mode; :mod:`residual_support._tf` now does it
    for every call of the loader, so :func:`load_user_model` no longer calls
    this function."""
    initializers = {variable.initializer for variable in model.weights}
    assignments = [op for op in operations if op.type in ("AssignVariableOp", "Assign")
                   and op not in initializers]
    session = tf.compat.v1.keras.backend.get_session()
    for op in assignments:
        session.run(op)


def load_user_model(path, *, argument: str = "--network") -> keras.Model:
    """The Keras model saved at ``path`` (``.keras``, ``.h5`` or a SavedModel
    directory), loaded without compiling. Raises :class:`ModelFileError` naming
    the path (and ``argument``) if it is missing, of an unknown kind or corrupt."""
    path = Path(path)
    if not path.exists():
        raise ModelFileNotFoundError(
            f"{argument} {path}: no such file or directory; pass a .keras or .h5 file or a "
            "SavedModel directory")
    if path.is_dir():
        if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
            raise ModelFileError(
                f"{argument} {path}: a directory without saved_model.pb, not a SavedModel; "
                "pass the directory written by model.save(path) or a .keras/.h5 file")
    elif path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelFileError(
            f"{argument} {path}: unknown model file type {path.suffix!r}; save the model with "
            "model.save('model.keras') (or .h5)")
    elif path.stat().st_size == 0:
        raise ModelFileError(f"{argument} {path}: the file is empty; save the model again")
    try:  # a .keras file's weights: residual_support._tf runs their assignments
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # keras raises many kinds; all mean "cannot load"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"{argument} {path}: cannot load the model ({type(error).__name__}: "
            f"{reason[:200]}); check that the file is complete and was written by "
            f"model.save() with TensorFlow {tf.__version__} or a compatible version") from None
    if not isinstance(model, keras.Model) or not hasattr(model, "layers"):
        raise ModelFileError(
            f"{argument} {path}: holds a {type(model).__name__}, not a Keras model; save a "
            "Keras model with model.save()")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(
            f"{argument} {path}: the model has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; the analyses need one of each")
    return model


# --- layers and activations ----------------------------------------------------------------

def _spec_names(specs) -> list:
    return [getattr(spec, "name", str(spec)) for spec in specs]


def _analyzer(spec) -> str:
    return getattr(spec, "analyzer", str(spec))


def _deeplift_problems(model) -> dict:
    """``{(layer type, reason): [layer names]}`` of the layers the DeepLIFT
    converter rejects (it checks options such as dilation too)."""
    from residual_support.flatten import flatten_model

    from .methods import deeplift_convert as dc

    try:
        model = flatten_model(model)
        specs, output = dc.read_layers(model)
    except (UnsupportedLayerError, ValueError, TypeError) as error:
        return {(type(model).__name__, str(error)): [model.name]}
    problems = {}
    for spec in specs:
        try:
            dc._check(spec, spec.name == output, model)
        except UnsupportedLayerError as error:
            reason = str(error).split(": ", 1)[-1].split("; the DeepLIFT converter")[0]
            problems.setdefault((spec.class_name, reason), []).append(spec.name)
    return problems


def method_family(spec) -> str:
    """The method family (:data:`residual_support.layers.FAMILIES`) of the
    analyzer of ``spec`` (a registry :class:`MethodSpec` or an analyzer key)."""
    from residual_support import layers as rlayers

    from .factory import analyzers

    if _analyzer(spec) in DEEPLIFT_ANALYZERS:
        return rlayers.DEEPLIFT
    return rlayers.family_of(analyzers.get(_analyzer(spec)))


def supported_layers(spec) -> tuple:
    """The Keras layer classes the table of :mod:`residual_support.layers`
    names for the family of ``spec``'s analyzer (the gradient and backprop
    families run on any differentiable layer; this is the list they name)."""
    from residual_support import layers as rlayers

    family = method_family(spec)
    if family == rlayers.RULES:
        return tuple(rlayers.RULE_SUPPORT)
    if family == rlayers.PATTERN:
        return tuple(rlayers.PATTERN_SUPPORT)
    return rlayers.GRADIENT_LAYERS


def check_layers(model, specs) -> None:
    """Raise ONE :class:`UnsupportedLayerError` listing every layer of
    ``model`` (nested models included) that a method of ``specs`` cannot
    handle, grouped by layer type and reason, with the methods it blocks.
    Layer support: the per-family table of :mod:`residual_support.layers`;
    the DeepLIFT converter's own check for DeepLIFT. A softmax on the
    output is not a problem: the analyses strip it. No graph is built."""
    from residual_support import layers as rlayers

    from .logits import ends_in_softmax

    specs = list(specs)
    by_family = {}
    for spec in specs:
        by_family.setdefault(method_family(spec), []).append(spec)
    problems = {}
    # a softmax on the output is stripped before any analysis (logits.logit_model)
    stripped = ({model.outputs[0]._keras_history[0].name}
                if len(model.outputs) == 1 and ends_in_softmax(model) else set())
    for family, members in by_family.items():
        if family == rlayers.DEEPLIFT:
            found = _deeplift_problems(model)
        else:
            found = rlayers.blocking_layers(model, family)
        for key, names in found.items():
            names = [name for name in names if name not in stripped]
            if not names:
                continue
            entry = problems.setdefault(key, (list(names), []))
            entry[1].extend(_spec_names(members))
    if problems:
        text = "; ".join(
            f"{rlayers.describe_blocking({key: names})} [blocks {', '.join(methods)}]"
            for key, (names, methods) in problems.items())
        raise UnsupportedLayerError(
            f"model {model.name!r}: {text}. Replace these layers, or run only other methods "
            "(--methods); the gradient family (Gradient, Input x Gradient, SmoothGrad, "
            "Integrated Gradients) runs on any differentiable layer")


def layer_activations(model) -> dict:
    """Layer name -> activation name of every layer that applies a nonlinearity
    other than ReLU or identity, except a softmax on the output layer (the
    analyses strip it)."""
    from residual_support.layers import model_layers

    found = {}
    output_names = set(getattr(model, "output_names", ()) or ())
    for layer in model_layers(model):
        kind = type(layer).__name__
        name = None
        if hasattr(layer, "activation") and callable(layer.activation):
            name = getattr(layer.activation, "__name__", str(layer.activation))
        elif kind == "ReLU":
            cfg = layer.get_config()
            if cfg.get("max_value") is not None:
                name = f"relu(max_value={cfg['max_value']})"
            elif float(cfg.get("negative_slope") or 0) != 0:
                name = f"leaky relu(negative_slope={cfg['negative_slope']})"
            elif float(cfg.get("threshold") or 0) != 0:
                name = f"relu(threshold={cfg['threshold']})"
        elif kind in ("LeakyReLU", "ELU", "PReLU", "ThresholdedReLU", "Softmax"):
            name = kind.lower()
        if name is None or name in ("linear", "relu"):
            continue
        if name == "softmax" and layer.name in output_names:
            continue
        found[layer.name] = name
    return found


def check_activations(model, specs) -> list:
    """Check ``model``'s activations against the methods ``specs``.

    A non-ReLU activation raises :class:`ActivationError` for the methods of
    :data:`RELU_ONLY` (GuidedBP, Deconv, RectGrad, DTD, PatternNet/-Attribution
    are defined through the ReLU) and for DeepLIFT if it is not monotonic
    (DeepLIFT runs on ReLU, ReLU6, leaky ReLU, ELU, softplus, sigmoid, tanh;
    swish and GELU are refused); for the rules of :data:`RELU_THEORY` (z+/alpha-beta LRP and their
    relatives) it gives a warning, returned and logged. Gradient, SmoothGrad,
    Integrated Gradients and LRP-z are defined for any activation."""
    activations = layer_activations(model)
    if not activations:
        return []
    listed = ", ".join(f"{layer!r} ({act})" for layer, act in activations.items())
    errors, warnings = [], []
    for spec in specs:
        key = _analyzer(spec)
        if key in RELU_ONLY:
            errors.append(spec)
        elif key in DEEPLIFT_ANALYZERS:
            if not all(_deeplift_activation(a) for a in activations.values()):
                errors.append(spec)
        elif key in RELU_THEORY:
            warnings.append(spec)
    if errors:
        raise ActivationError(
            f"model {model.name!r} has non-ReLU activations at {listed}; "
            f"{', '.join(_spec_names(errors))} {'is' if len(errors) == 1 else 'are'} only "
            "defined for ReLU networks "
            "(DeepLIFT: monotonic ones: ReLU, ReLU6, leaky ReLU, ELU, softplus, sigmoid, "
            "tanh). Use a ReLU model or leave these methods out (--methods)")
    messages = [f"model {model.name!r} has non-ReLU activations at {listed}; "
                f"{spec.name if hasattr(spec, 'name') else spec} is defined for them, "
                "but the paper's analysis assumes ReLU networks" for spec in warnings]
    for message in messages:
        log.warning(message)
    return messages


def check_input_shape(model, images, *, argument: str = "--images") -> None:
    """Raise :class:`InputShapeError` if ``images`` (N x ...) do not fit the
    model's input (rank, and every dimension the model fixes)."""
    shape = tuple(np.shape(images))
    expected = tuple(model.inputs[0].shape)
    fixed = tuple(None if d is None else int(d) for d in expected[1:])
    if len(shape) != len(expected) or any(want is not None and got != want
                                          for got, want in zip(shape[1:], fixed)):
        wanted = "N x " + " x ".join("?" if d is None else str(d) for d in fixed)
        raise InputShapeError(
            f"{argument}: images of shape {shape} do not fit the input of model "
            f"{model.name!r} ({wanted}); give images of that shape (resize them, "
            "or convert to the model's channels)")


def preflight(model, specs, *, images=None, argument: str = "--images") -> list:
    """All model checks for running ``specs`` on ``model``: layers, activations
    and (if given) the images' shape. Returns the activation warnings."""
    check_layers(model, specs)
    warnings = check_activations(model, specs)
    if images is not None:
        check_input_shape(model, images, argument=argument)
    return warnings


# --- names and arguments -------------------------------------------------------------------

def check_methods(names, *, argument: str = "--methods") -> list:
    """The registry specs for ``names`` (see :func:`~csc_analyzers.registry.select_methods`);
    an unknown or empty name list raises :class:`ArgumentError` listing the valid names."""
    from .registry import ALL_METHODS, select_methods

    valid = ", ".join(["all", "extra"] + [s.name for s in ALL_METHODS])
    try:
        specs = select_methods(names)
    except KeyError as error:
        bad = error.args[0] if error.args else names
        bad = bad.split("'")[1] if isinstance(bad, str) and "'" in bad else bad
        raise ArgumentError(f"{argument}: unknown method {bad!r}; valid names: {valid}") from None
    if not specs:
        raise ArgumentError(f"{argument} {names!r}: no method given; valid names: {valid}")
    return specs


def check_network_name(name, *, argument: str = "--network", allow_files: bool = True) -> str:
    """``"name"`` for a known network name, ``"file"`` for a path that looks like
    a model (existing path or model suffix, if ``allow_files``); otherwise
    :class:`ArgumentError` listing the valid names."""
    from .models import NETWORK_NAMES

    if name in NETWORK_NAMES:
        return "name"
    path = Path(str(name))
    if allow_files and (path.suffix.lower() in MODEL_SUFFIXES or path.exists()):
        return "file"
    also = " or the path of a .keras/.h5 model or SavedModel directory" if allow_files else ""
    raise ArgumentError(
        f"{argument} {name!r}: unknown network; choose one of {', '.join(NETWORK_NAMES)}{also}")


def check_shard(spec):
    """:func:`~csc_analyzers.experiments.store.parse_shard` with an
    :class:`ArgumentError` (naming --shard) for a spec that makes no sense."""
    from .experiments.store import parse_shard

    try:
        return parse_shard(spec)
    except ValueError as error:
        raise ArgumentError(str(error)) from None


def check_positive(value, *, argument: str, minimum: int = 1) -> int:
    if int(value) < minimum:
        raise ArgumentError(f"{argument} {value}: must be >= {minimum}")
    return int(value)


def check_image_directory(root, *, n: int | None = None) -> list:
    """The (path, label) items of an ImageNet validation tree (see
    :func:`~csc_analyzers.data.imagenet.list_validation_dir`, which raises
    :class:`ImageDirectoryError`), and at least ``n`` of them."""
    from .data.imagenet import list_validation_dir

    items = list_validation_dir(root)
    if n is not None and n > len(items):
        raise ImageDirectoryError(f"asked for {n} images, {root} holds {len(items)}")
    return items


# --- patterns ------------------------------------------------------------------------------

def kernel_layers(model) -> list:
    """The layers of ``model`` with a kernel (Conv / Dense), in layer order."""
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]


def check_patterns_file(path, model, *, argument: str = "--patterns") -> list:
    """The pattern arrays of ``path`` (.npz, one array per kernel layer of
    ``model``, in layer order or keyed by layer name) after checking that they
    were made for this model: their number and each shape equal to the layer's
    kernel shape. Raises :class:`PatternsFileError` naming the file and layer."""
    path = Path(path)
    if not path.is_file():
        raise PatternsFileError(f"{argument} {path}: no such file; make one with "
                                "scripts/train_patterns.py")
    try:
        storage = importlib.import_module("csc_analyzers.pattern.storage")
    except ImportError:
        storage = None
    if storage is not None:  # the pattern package's own reader checks weight fingerprints
        try:
            storage.load_patterns(path, model)
        except Exception as error:  # any failure to read or match means: not for this model
            raise PatternsFileError(f"{argument} {path}: {error}; make patterns for this "
                                    "model with scripts/train_patterns.py") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files
                      if not key.startswith("__")}
    except Exception as error:
        raise PatternsFileError(
            f"{argument} {path}: cannot be read as an .npz of pattern arrays "
            f"({type(error).__name__}: {str(error)[:120]}); make it again with "
            "scripts/train_patterns.py") from None
    layers = kernel_layers(model)
    names = [layer.name for layer in layers]
    if set(arrays) <= set(names) and arrays:
        ordered = [(name, arrays.get(name)) for name in names]
    else:
        if len(arrays) != len(layers):
            raise PatternsFileError(
                f"{argument} {path}: holds {len(arrays)} pattern arrays, model "
                f"{model.name!r} has {len(layers)} kernel layers; the file was made for "
                "another model: make patterns for this model with scripts/train_patterns.py")
        ordered = list(zip(names, arrays.values()))
    for layer, (name, pattern) in zip(layers, ordered):
        want = tuple(layer.kernel.shape)
        if pattern is None:
            raise PatternsFileError(f"{argument} {path}: no pattern for layer {name!r}")
        if tuple(pattern.shape) != want:
            raise PatternsFileError(
                f"{argument} {path}: pattern for layer {name!r} has shape {pattern.shape}, "
                f"its kernel {want}; the file was made for another model: make patterns for "
                "this model with scripts/train_patterns.py")
    return [pattern for _name, pattern in ordered]


# --- scripts -------------------------------------------------------------------------------

@contextlib.contextmanager
def exit_on_input_error(prog: str | None = None):
    """Turn an :class:`InputError` raised inside the block into
    ``prog: error: message`` on stderr and ``SystemExit(2)`` (no traceback)."""
    try:
        yield
    except InputError as error:
        name = prog or Path(sys.argv[0]).name
        print(f"{name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["load_user_model", "check_layers", "layer_activations", "check_activations",
           "check_input_shape", "preflight", "check_methods", "check_network_name",
           "check_shard", "check_positive", "check_image_directory", "kernel_layers",
           "check_patterns_file", "exit_on_input_error", "supported_layers", "method_family",
           "RELU_ONLY",
           "RELU_THEORY", "DEEPLIFT_ACTIVATIONS"]
