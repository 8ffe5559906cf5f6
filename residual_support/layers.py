"""Which Keras layers the analyzers support, and facts about a model's graph.

:func:`check_model` runs before any analyzer graph is built: a layer the
method cannot pass relevance through gives an :class:`UnsupportedLayerError`
that names the layer, its type and the method.

:func:`nonnegative_inputs` tells whether every input of a layer comes out of a
ReLU (possibly through pooling, padding, reshaping or an ``Add`` of such
tensors); rules use it to skip the terms of negative inputs, which vanish.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers


class UnsupportedLayerError(TypeError):
    """A model holds a layer that an analyzer cannot propagate through."""


#: Layers with a reverse mapping for the rule-based methods (LRP, Deep Taylor,
#: Excitation BP) and therefore for every method.
RULE_LAYERS = (
    klayers.InputLayer,
    klayers.Dense,
    klayers.Conv1D,
    klayers.Conv2D,
    klayers.Conv3D,
    klayers.Add,
    klayers.BatchNormalization,
    klayers.AveragePooling1D,
    klayers.AveragePooling2D,
    klayers.AveragePooling3D,
    klayers.GlobalAveragePooling1D,
    klayers.GlobalAveragePooling2D,
    klayers.GlobalAveragePooling3D,
    klayers.MaxPooling1D,
    klayers.MaxPooling2D,
    klayers.MaxPooling3D,
    klayers.GlobalMaxPooling1D,
    klayers.GlobalMaxPooling2D,
    klayers.GlobalMaxPooling3D,
    klayers.ZeroPadding1D,
    klayers.ZeroPadding2D,
    klayers.ZeroPadding3D,
    klayers.Cropping1D,
    klayers.Cropping2D,
    klayers.Cropping3D,
    klayers.Activation,
    klayers.ReLU,
    klayers.Dropout,
    klayers.SpatialDropout1D,
    klayers.SpatialDropout2D,
    klayers.SpatialDropout3D,
    klayers.Flatten,
    klayers.Reshape,
    klayers.Permute,
    klayers.Concatenate,
)

#: Gradient-type methods also pass through these (their gradient is all they need).
GRADIENT_LAYERS = RULE_LAYERS + (
    klayers.UpSampling1D,
    klayers.UpSampling2D,
    klayers.UpSampling3D,
    klayers.GaussianNoise,
    klayers.ActivityRegularization,
)

#: Layers that pass a tensor on without changing its sign.
_SIGN_PRESERVING = (
    klayers.MaxPooling1D, klayers.MaxPooling2D, klayers.MaxPooling3D,
    klayers.GlobalMaxPooling1D, klayers.GlobalMaxPooling2D, klayers.GlobalMaxPooling3D,
    klayers.AveragePooling1D, klayers.AveragePooling2D, klayers.AveragePooling3D,
    klayers.GlobalAveragePooling1D, klayers.GlobalAveragePooling2D,
    klayers.GlobalAveragePooling3D,
    klayers.ZeroPadding1D, klayers.ZeroPadding2D, klayers.ZeroPadding3D,
    klayers.Cropping1D, klayers.Cropping2D, klayers.Cropping3D,
    klayers.Dropout, klayers.SpatialDropout1D, klayers.SpatialDropout2D,
    klayers.SpatialDropout3D, klayers.Flatten, klayers.Reshape, klayers.Permute,
    klayers.Concatenate, klayers.Add,
)

#: Layers a first kernel layer may sit behind and still see the raw input.
_INPUT_PRESERVING = (
    klayers.ZeroPadding1D, klayers.ZeroPadding2D, klayers.ZeroPadding3D,
    klayers.Cropping1D, klayers.Cropping2D, klayers.Cropping3D,
    klayers.Flatten, klayers.Reshape, klayers.Permute, klayers.Dropout,
)


def model_layers(model) -> list:
    """The layers of ``model``, nested models included (depth first)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(model_layers(layer))
    return found


def check_model(model, method_name: str, *, gradient_only: bool = False) -> None:
    """Raise :class:`UnsupportedLayerError` for the first layer of ``model``
    that ``method_name`` cannot pass through (LSTM, Conv2DTranspose, Lambda,
    nested models, ...). ``gradient_only`` selects the wider set of layers
    of gradient-type methods. Returns None when every layer is supported."""
    supported = GRADIENT_LAYERS if gradient_only else RULE_LAYERS
    for layer in model_layers(model):
        if isinstance(layer, keras.Model):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}) of model {model.name!r} "
                f"is a nested model, which method {method_name!r} does not support; "
                "build the model as one flat functional model")
        if type(layer) in supported or (
                isinstance(layer, supported) and not _is_subclass_with_own_call(layer)):
            continue
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({type(layer).__name__}) of model {model.name!r} is not "
            f"supported by method {method_name!r}; supported layer types: "
            f"{sorted({cls.__name__ for cls in supported})}")


def _is_subclass_with_own_call(layer) -> bool:
    """True for a user subclass of a supported layer that redefines ``call``."""
    for cls in type(layer).__mro__:
        if cls in GRADIENT_LAYERS:
            return False
        if "call" in vars(cls):
            return True
    return False


def inbound_layers(layer) -> list:
    """The layers whose outputs feed ``layer`` (over all its calls)."""
    found = []
    for node in layer._inbound_nodes:
        for tensor in node.input_tensors if isinstance(node.input_tensors, (list, tuple)) \
                else [node.input_tensors]:
            found.append(tensor._keras_history[0])
    return found


def _is_relu(layer) -> bool:
    if isinstance(layer, klayers.ReLU):
        return float(layer.negative_slope) == 0.0 and float(layer.threshold) >= 0.0
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "relu"


def nonnegative_output(layer, _seen=None) -> bool:
    """True if every output value of ``layer`` is >= 0 by construction: a
    ReLU, or a sign-preserving layer (pooling, padding, reshaping, ``Add``,
    ``Concatenate``) all of whose inputs are non-negative."""
    if _is_relu(layer):
        return True
    if not isinstance(layer, _SIGN_PRESERVING):
        return False
    seen = set() if _seen is None else _seen
    if id(layer) in seen:
        return False
    seen.add(id(layer))
    parents = inbound_layers(layer)
    return bool(parents) and all(nonnegative_output(p, seen) for p in parents)


def nonnegative_inputs(layer) -> bool:
    """True if every input of ``layer`` is >= 0 by construction."""
    parents = inbound_layers(layer)
    return bool(parents) and all(nonnegative_output(p) for p in parents)


def is_first_kernel_layer(layer) -> bool:
    """True for a layer with a kernel whose inputs are the model input, seen
    through padding, cropping and reshaping layers (ResNet-50's ``conv1``
    sits behind a ``ZeroPadding2D``)."""
    if not hasattr(layer, "kernel"):
        return False
    frontier = inbound_layers(layer)
    while frontier:
        parent = frontier.pop()
        if isinstance(parent, klayers.InputLayer):
            continue
        if isinstance(parent, _INPUT_PRESERVING):
            frontier.extend(inbound_layers(parent))
            continue
        return False
    return bool(inbound_layers(layer))


__all__ = ["UnsupportedLayerError", "RULE_LAYERS", "GRADIENT_LAYERS", "check_model",
           "model_layers", "inbound_layers", "nonnegative_output", "nonnegative_inputs",
           "is_first_kernel_layer"]
