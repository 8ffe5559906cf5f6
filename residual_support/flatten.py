"""Flatten nested models (a ``Sequential`` or functional model used as a
layer) into one functional model over the same layer objects.

innvestigate and the DeepLIFT converter reverse a model layer by layer; a
nested model is one opaque layer to them. :func:`flatten_model` calls the
inner layers directly on the outer tensors, so the new model computes the
same function with the same weights (shared variables: a change of the
user's weights shows in the analysis). The user's model is not changed: its
layers, outputs and predictions stay as they were (Keras only records one
more call node on each shared layer, as for any model built from existing
layers). Layers that take a ``training`` argument are called with
``training=False`` (analyses explain the model at inference). A model
without nested models is returned as it is.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow import keras


def has_nested_models(model) -> bool:
    return any(isinstance(layer, keras.Model) for layer in model.layers)


def _is_symbolic(value) -> bool:
    return hasattr(value, "_keras_history")


def _call_graph(model, inputs: list) -> list:
    """The outputs of ``model`` applied to ``inputs`` with every nested model
    replaced by calls of its own layers."""
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, keras.Sequential):
            h = inputs[0]
            for layer in model.layers:
                h = _call_layer(layer, [h])[0]
            return [h]
        raise TypeError(f"nested model {model.name!r} ({type(model).__name__}) is a "
                        "subclassed model; its layers cannot be read as a graph")
    values = {id(t): v for t, v in zip(model.inputs, inputs)}
    depths = sorted(model._nodes_by_depth, reverse=True)
    for depth in depths:
        for node in model._nodes_by_depth[depth]:
            layer = node.outbound_layer
            if node.is_input or isinstance(layer, keras.layers.InputLayer):
                continue
            args, kwargs = tf.nest.map_structure(
                lambda t: values[id(t)] if _is_symbolic(t) else t,
                (node.call_args, node.call_kwargs))
            if isinstance(layer, keras.Model):
                flat_inputs = tf.nest.flatten((args, kwargs))
                outs = _call_graph(layer, [t for t in flat_inputs if _is_symbolic(t)])
                outs = outs[0] if len(outs) == 1 else outs
            else:
                outs = layer(*args, **_inference(layer, kwargs))
            for t, v in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outs)):
                values[id(t)] = v
    return [values[id(t)] for t in model.outputs]


def _inference(layer, kwargs: dict) -> dict:
    """``kwargs`` with ``training=False`` for a layer whose call takes it: the
    outer model's call used to pass its (inference) learning phase to the
    nested model's layers; called alone, augmentation layers such as
    ``RandomFlip`` would otherwise default to training mode."""
    if getattr(layer, "_expects_training_arg", False) and kwargs.get("training") is None:
        return {**kwargs, "training": False}
    return kwargs


def _call_layer(layer, inputs):
    if isinstance(layer, keras.Model):
        return _call_graph(layer, inputs)
    return [layer(inputs[0], **_inference(layer, {}))]


def flatten_model(model):
    """``model`` itself if it holds no nested model, else a new functional
    model (same name, same input shape and dtype) over the innermost layers.
    Raises ValueError if two of those layers share a name (the flat model
    needs unique names; rename the layers of the nested model)."""
    if not has_nested_models(model):
        return model
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t.name.split(":")[0]
                          .split("/")[0]) for t in model.inputs]
    outputs = _call_graph(model, inputs)
    try:
        flat = keras.Model(inputs if len(inputs) > 1 else inputs[0],
                           outputs if len(outputs) > 1 else outputs[0], name=model.name)
    except ValueError as error:
        raise ValueError(f"model {model.name!r}: its nested models cannot be flattened "
                         f"({error}); give their layers unique names") from None
    aliases = getattr(model, "_csc_layer_aliases", None)
    if aliases:
        flat._csc_layer_aliases = dict(aliases)
    return flat


__all__ = ["flatten_model", "has_nested_models"]
