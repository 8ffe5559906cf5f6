"""Analyse models on their logits: a softmax at the output is stripped.

Attribution methods explain a logit, not a probability (the paper omits the
final softmax, section 2). :func:`logit_model` returns a *new* functional
model that ends before the softmax; the user's model and its layers are not
changed (a layer with a fused softmax is rebuilt as a copy sharing nothing).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers


def _is_softmax_layer(layer) -> bool:
    if isinstance(layer, klayers.Softmax):
        return True
    if isinstance(layer, klayers.Activation):
        return layer.activation is keras.activations.softmax or (
            getattr(layer.activation, "__name__", "") == "softmax")
    return False


def _has_fused_softmax(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return (not isinstance(layer, klayers.Activation)
            and activation is not None
            and getattr(activation, "__name__", "") == "softmax")


def ends_in_softmax(model) -> bool:
    """True if the model's single output comes from a softmax."""
    layer = model.outputs[0]._keras_history[0]
    return _is_softmax_layer(layer) or _has_fused_softmax(layer)


def logit_model(model):
    """Return ``model`` itself if it outputs logits, else a new ``keras.Model``
    over the same layers that ends before the softmax; a last layer with a
    fused softmax is replaced by a linear clone with copied weights."""
    if len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.outputs)} outputs; "
            "attribution needs a single output tensor")
    if not ends_in_softmax(model):
        return model
    output = model.outputs[0]
    layer, node_index, _ = output._keras_history
    inputs = layer.get_input_at(node_index)
    if _is_softmax_layer(layer):
        logits = inputs
    else:
        config = layer.get_config()
        config["activation"] = "linear"
        clone = layer.__class__.from_config(config)
        logits = clone(inputs)
        clone.set_weights(layer.get_weights())
    stripped = keras.Model(inputs=model.inputs, outputs=logits, name=model.name)
    aliases = getattr(model, "_csc_layer_aliases", None)
    if aliases:
        stripped._csc_layer_aliases = dict(aliases)
    return stripped
