"""Pattern files: ``.npz`` keyed by layer name, tied to the model's weights.

A pattern file holds one array per Dense/Conv2D layer (the pattern, with the
kernel's shape) under the layer's name, and a ``__meta__`` entry (JSON) with
the estimator, the number of samples per layer and a fingerprint of every
layer's weights. :func:`load_patterns` with a model checks the fingerprints:
patterns estimated for other weights are an error naming the file and layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers as klayers

META_KEY = "__meta__"
PATTERN_FORMAT = "csc-patterns/1"

_UNSUPPORTED_KERNEL_LAYERS = (klayers.Conv2DTranspose, klayers.DepthwiseConv2D,
                              klayers.SeparableConv2D)


def is_pattern_layer(layer) -> bool:
    """True for the layers that carry patterns: Dense and (plain) Conv2D."""
    if isinstance(layer, klayers.Dense):
        return True
    return isinstance(layer, klayers.Conv2D) and not isinstance(layer, _UNSUPPORTED_KERNEL_LAYERS)


def pattern_layers(model) -> list:
    """The model's Dense and Conv2D layers in model order.

    Raises ``ValueError`` naming the layer for any other layer with a kernel
    (Conv1D, Conv3D, depthwise/separable/transposed convolutions) or a nested
    model, which the pattern methods do not support.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, klayers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"layer {layer.name!r} of model {model.name!r} is a nested model; "
                "flatten the model before estimating or using patterns")
        if is_pattern_layer(layer):
            found.append(layer)
        elif getattr(layer, "kernel", None) is not None:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has a kernel but the "
                "pattern methods support only Dense and Conv2D layers")
    return found


def weights_fingerprint(weights) -> str:
    """SHA-256 (first 16 hex digits) of a list of weight arrays (shapes and
    float32 values)."""
    digest = hashlib.sha256()
    for weight in weights:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        digest.update(repr(weight.shape).encode())
        digest.update(weight.tobytes())
    return digest.hexdigest()[:16]


def layer_fingerprint(layer) -> str:
    """Fingerprint of a layer's weights (:func:`weights_fingerprint`)."""
    return weights_fingerprint(layer.get_weights())


def pattern_layer_weights(model) -> dict:
    """``{layer name: [kernel, bias...]}`` of every pattern layer, fetched in
    one session run."""
    layers = pattern_layers(model)
    variables = [layer.weights for layer in layers]
    flat = tf.compat.v1.keras.backend.batch_get_value([v for vs in variables for v in vs])
    result, start = {}, 0
    for layer, vs in zip(layers, variables):
        result[layer.name] = flat[start:start + len(vs)]
        start += len(vs)
    return result


def model_fingerprints(model, weights: dict | None = None) -> dict:
    """``{layer name: fingerprint}`` for every pattern layer of ``model``
    (``weights``: the output of :func:`pattern_layer_weights`, if at hand)."""
    weights = pattern_layer_weights(model) if weights is None else weights
    return {name: weights_fingerprint(values) for name, values in weights.items()}


def combined_fingerprint(fingerprints: dict) -> str:
    """One fingerprint for a whole ``{layer: fingerprint}`` table."""
    text = ";".join(f"{name}={value}" for name, value in fingerprints.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_savez(path, arrays: dict) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def meta_array(meta: dict) -> np.ndarray:
    return np.array(json.dumps(meta, sort_keys=True))


def read_meta(data, path) -> dict:
    if META_KEY not in data:
        raise ValueError(f"{path}: not a pattern file of this project (no {META_KEY!r} entry)")
    return json.loads(str(data[META_KEY]))


@dataclass
class PatternSet:
    """Patterns of one model: ``patterns`` maps layer names to arrays with the
    kernels' shapes; ``estimator`` is "linear" or "relu" (see
    :mod:`csc_analyzers.pattern.estimators`), ``n_samples`` the number of
    samples (positions for convolutions) per layer, ``fingerprints`` the
    weight fingerprints of the layers they were estimated for."""

    patterns: dict
    estimator: str
    n_samples: dict = field(default_factory=dict)
    fingerprints: dict = field(default_factory=dict)
    layer_estimators: dict = field(default_factory=dict)

    def check_model(self, model, source="patterns") -> None:
        """Raise ``ValueError`` naming ``source`` and the layer if these
        patterns do not belong to ``model`` (missing layer, wrong shape or
        different weights)."""
        layers = {layer.name: layer for layer in pattern_layers(model)}
        actual_fingerprints = model_fingerprints(model) if self.fingerprints else {}
        missing = [name for name in layers if name not in self.patterns]
        if missing:
            raise ValueError(
                f"{source}: no pattern for layer(s) {missing} of model {model.name!r}")
        for name, pattern in self.patterns.items():
            if name not in layers:
                raise ValueError(
                    f"{source}: layer {name!r} is not a Dense/Conv2D layer of model "
                    f"{model.name!r}; its layers are {list(layers)}")
            kernel_shape = tuple(layers[name].kernel.shape)
            if tuple(pattern.shape) != kernel_shape:
                raise ValueError(
                    f"{source}: pattern of layer {name!r} has shape {tuple(pattern.shape)}, "
                    f"the layer's kernel has shape {kernel_shape}")
            expected = self.fingerprints.get(name)
            if expected is not None:
                actual = actual_fingerprints[name]
                if actual != expected:
                    raise ValueError(
                        f"{source}: patterns of layer {name!r} were estimated for other "
                        f"weights (fingerprint {expected}, model {model.name!r} has {actual})")


def save_patterns(path, pattern_set: PatternSet) -> Path:
    """Write a :class:`PatternSet` to the ``.npz`` file ``path`` (atomically)."""
    bad = [name for name in pattern_set.patterns if name == META_KEY]
    if bad:
        raise ValueError(f"layer name {META_KEY!r} is reserved in pattern files")
    meta = {"format": PATTERN_FORMAT, "estimator": pattern_set.estimator,
            "n_samples": {k: int(v) for k, v in pattern_set.n_samples.items()},
            "fingerprints": dict(pattern_set.fingerprints),
            "layer_estimators": dict(pattern_set.layer_estimators),
            "layers": list(pattern_set.patterns)}
    arrays = {name: np.asarray(p, dtype=np.float32) for name, p in pattern_set.patterns.items()}
    arrays[META_KEY] = meta_array(meta)
    atomic_savez(path, arrays)
    return Path(path)


def load_patterns(path, model=None) -> PatternSet:
    """Read a pattern file; with ``model``, check that it belongs to the model
    (``ValueError`` naming the file and the offending layer otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pattern file {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as data:
        meta = read_meta(data, path)
        if meta.get("format") != PATTERN_FORMAT:
            raise ValueError(f"{path}: unknown pattern file format {meta.get('format')!r}")
        patterns = {name: np.array(data[name]) for name in meta["layers"]}
    pattern_set = PatternSet(patterns, meta["estimator"], meta.get("n_samples", {}),
                             meta.get("fingerprints", {}), meta.get("layer_estimators", {}))
    if model is not None:
        pattern_set.check_model(model, source=str(path))
    return pattern_set


def resolve_patterns(patterns, model) -> dict:
    """``{layer name: float32 array}`` from a dict, a :class:`PatternSet` or a
    path, checked against ``model`` (shapes always; weight fingerprints for
    files and pattern sets)."""
    if patterns is None:
        raise ValueError("patterns= is required: a dict layer name -> array, a PatternSet "
                         "or the path of a pattern file (scripts/train_patterns.py)")
    if isinstance(patterns, (str, os.PathLike)):
        pattern_set = load_patterns(patterns, model)
    elif isinstance(patterns, PatternSet):
        pattern_set = patterns
        pattern_set.check_model(model)
    elif isinstance(patterns, dict):
        pattern_set = PatternSet({k: np.asarray(v) for k, v in patterns.items()}, "given")
        pattern_set.check_model(model, source="patterns=")
    else:
        raise TypeError(f"patterns= must be a dict, a PatternSet or a path, "
                        f"got {type(patterns).__name__}")
    return {name: np.asarray(p, dtype=np.float32) for name, p in pattern_set.patterns.items()}
