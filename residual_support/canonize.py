"""Fold BatchNormalization into the preceding Conv/Dense layer.

In inference mode ``BN(W x + b) = k * (W x + b) + (beta - mean * k)`` with
``k = gamma / sqrt(var + eps)`` per output channel, so a Conv2D/Dense layer
followed by a BatchNormalization over its channel axis is one Conv2D/Dense
layer with kernel ``W * k`` and bias ``b * k + beta - mean * k``.
:func:`fold_batchnorm` rewrites a functional model's config that way and
builds a new model; the user's model and its weights are not touched.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

import numpy as np
from tensorflow import keras
from tensorflow.keras import backend
from tensorflow.keras import layers as klayers

_FOLDABLE = (klayers.Conv1D, klayers.Conv2D, klayers.Conv3D, klayers.Dense)


def _references(config):
    """Yield every [layer_name, node_index, tensor_index, ...] reference of a
    functional config (inbound nodes and model outputs)."""
    for layer in config["layers"]:
        for node in layer["inbound_nodes"]:
            for ref in node:
                yield ref
    yield from config["output_layers"]


def _foldable_pairs(model, config) -> dict:
    """BN layer name -> name of the Conv/Dense layer it can be folded into."""
    uses = {}
    for ref in _references(config):
        uses[ref[0]] = uses.get(ref[0], 0) + 1
    by_name = {layer.name: layer for layer in model.layers}
    pairs = {}
    for entry in config["layers"]:
        layer = by_name[entry["name"]]
        if type(layer) is not klayers.BatchNormalization or len(entry["inbound_nodes"]) != 1:
            continue
        node = entry["inbound_nodes"][0]
        if len(node) != 1:
            continue
        parent = by_name[node[0][0]]
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(layer.get_input_shape_at(0))
        if (type(parent) in _FOLDABLE and uses.get(parent.name) == 1
                and parent.get_config().get("activation") == "linear"
                and getattr(parent, "data_format", "channels_last") == "channels_last"
                and [a % rank for a in axes] == [rank - 1]):
            pairs[layer.name] = parent.name
    return pairs


def folded_weights(kernel, bias, bn_layer, bn_weights=None):
    """Kernel and bias of ``conv -> bn`` as one layer (float64 arithmetic);
    ``bn_weights``: the BN layer's weights if already read."""
    config = bn_layer.get_config()
    if bn_weights is None:
        bn_weights = bn_layer.get_weights()
    weights = [np.asarray(w, np.float64) for w in bn_weights]
    gamma = weights.pop(0) if config["scale"] else 1.0
    beta = weights.pop(0) if config["center"] else 0.0
    mean, variance = weights
    k = gamma / np.sqrt(variance + config["epsilon"])
    kernel = np.asarray(kernel, np.float64) * k
    bias = (0.0 if bias is None else np.asarray(bias, np.float64)) * k + beta - mean * k
    dtype = bn_layer.dtype or "float32"
    return kernel.astype(dtype), np.broadcast_to(bias, kernel.shape[-1:]).astype(dtype)


def fold_batchnorm(model, name: str | None = None):
    """A new functional model with every BatchNormalization that directly
    follows a linear-activation Conv1D/2D/3D or Dense layer (channels last,
    used only by that BN) folded into it; other BN layers are kept. Output
    equal to ``model`` in inference mode up to float rounding. The layer
    aliases ``model._csc_layer_aliases`` carry over (an alias of a folded BN
    now names the conv). ``model`` itself is not changed."""
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise TypeError(f"fold_batchnorm needs a functional or Sequential Keras model, "
                        f"got {type(model).__name__} {getattr(model, 'name', '')!r}")
    source_model = model
    if isinstance(model, keras.Sequential):
        source_model = keras.Model(model.inputs, model.outputs, name=model.name)
    config = source_model.get_config()
    pairs = _foldable_pairs(source_model, config)
    convs = set(pairs.values())
    layers_config = []
    for entry in config["layers"]:
        if entry["name"] in pairs:
            continue
        if entry["name"] in convs:
            entry = dict(entry, config=dict(entry["config"], use_bias=True))
        layers_config.append(entry)
    for entry in layers_config:
        for node in entry["inbound_nodes"]:
            for ref in node:
                if ref[0] in pairs:
                    ref[0] = pairs[ref[0]]
    for ref in config["output_layers"]:
        if ref[0] in pairs:
            ref[0] = pairs[ref[0]]
    config["layers"] = layers_config
    config["name"] = name or f"{model.name}_folded"
    folded = keras.Model.from_config(config)

    by_name = {layer.name: layer for layer in source_model.layers}
    bn_of = {conv: bn for bn, conv in pairs.items()}
    # one session run reads every weight and one writes them: a get_weights /
    # set_weights per layer extends and runs the session once per layer, which
    # costs minutes on models with hundreds of layers
    sources = [by_name[layer.name] for layer in folded.layers] + [by_name[bn] for bn in pairs]
    variables = [v for layer in sources for v in layer.weights]
    values = dict(zip((id(v) for v in variables), backend.batch_get_value(variables)))

    def weights_of(layer):
        return [values[id(v)] for v in layer.weights]

    assignments = []
    for layer in folded.layers:
        source = by_name[layer.name]
        if layer.name in bn_of:
            weights = weights_of(source)
            bias = weights[1] if source.use_bias else None
            new = folded_weights(weights[0], bias, by_name[bn_of[layer.name]],
                                 weights_of(by_name[bn_of[layer.name]]))
        else:
            new = weights_of(source)
        if len(new) != len(layer.weights):
            raise ValueError(f"layer {layer.name!r}: {len(new)} weights for "
                             f"{len(layer.weights)} variables")
        assignments.extend(zip(layer.weights, new))
    backend.batch_set_value(assignments)
    aliases = getattr(model, "_csc_layer_aliases", None)
    if aliases:
        folded._csc_layer_aliases = {k: pairs.get(v, v) for k, v in aliases.items()}
    return folded


__all__ = ["fold_batchnorm", "folded_weights"]
