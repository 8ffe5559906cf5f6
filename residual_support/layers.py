"""Which Keras layers each method family supports, and facts about a model's graph.

One table, per method family, is the single source of layer support: the
model checks (:func:`check_model`, :func:`blocking_layers`), the audit's list
of known layer types and the README table (:func:`support_table_markdown`)
are all read from it.

Method families (:data:`FAMILIES`):

- ``gradient`` (Gradient, Input x Gradient, SmoothGrad, Integrated
  Gradients): every differentiable layer; nothing is refused.
- ``backprop`` (Guided Backprop, Deconvnet, RectGrad): the gradient with the
  method's backward ReLU at ReLU units, the plain gradient through every
  other layer; nothing is refused for its type (non-ReLU activations are
  refused by :func:`csc_analyzers.checks.check_activations`: these methods
  are defined through the ReLU).
- ``rules`` (LRP with every rule and preset, Deep Taylor, Excitation
  Backprop and their contrastive variants): the layers of
  :data:`RULE_SUPPORT`, each with its convention.
- ``pattern`` (PatternNet, PatternAttribution): :data:`PATTERN_SUPPORT`.
- ``deeplift`` (the deeplift-package wrapper): :data:`DEEPLIFT_SUPPORT`
  (by class name; the converter checks layer options itself).

The rules family's conventions on the layers of modern networks are those of
:mod:`residual_support.modern` (separable convolution as one linear map,
Multiply as a gate, element-wise activations passed through unchanged).
LayerNormalization (and Group- / UnitNormalization) is refused by the rules,
pattern and DeepLIFT families: its scale 1/std(x) is a function of the input
itself, so the layer is not a fixed affine map, and no rule of these
families says how relevance divides between a value and its normalisation
(innvestigate has none either; treating the std as a constant, as done for
transformers, is a different method); the gradient families run on it.

Nested models are flattened before an analyzer is built
(:mod:`residual_support.flatten`), so their layers are checked one by one.

:func:`nonnegative_inputs` tells whether every input of a layer comes out of a
ReLU (possibly through pooling, padding, reshaping or an ``Add`` of such
tensors); rules use it to skip the terms of negative inputs, which vanish.
"""
from __future__ import annotations

from collections import OrderedDict

from . import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras
from tensorflow.keras import layers as klayers


class UnsupportedLayerError(TypeError):
    """A model holds a layer that an analyzer cannot propagate through."""


GRADIENT, BACKPROP, RULES, PATTERN, DEEPLIFT = (
    "gradient", "backprop", "rules", "pattern", "deeplift")
FAMILIES = (GRADIENT, BACKPROP, RULES, PATTERN, DEEPLIFT)
#: Family -> the methods it holds (for messages and the README table).
FAMILY_METHODS = OrderedDict([
    (GRADIENT, "Gradient, Input x Gradient, SmoothGrad, Integrated Gradients"),
    (BACKPROP, "Guided Backprop, Deconvnet, RectGrad"),
    (RULES, "LRP (every rule and preset), Deep Taylor, Excitation Backprop"),
    (PATTERN, "PatternNet, PatternAttribution"),
    (DEEPLIFT, "DeepLIFT (Rescale, RevealCancel, ablation)"),
])


def _group(names):
    return tuple(getattr(klayers, name) for name in names if hasattr(klayers, name))


KERNEL = _group(["Dense", "Conv1D", "Conv2D", "Conv3D"])
DEPTHWISE = _group(["DepthwiseConv2D"])
SEPARABLE = _group(["SeparableConv2D"])
TRANSPOSED = _group(["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"])
AFFINE = _group(["BatchNormalization", "Rescaling", "Normalization"])
AVERAGE_POOLING = _group(["AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                          "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                          "GlobalAveragePooling3D"])
MAX_POOLING = _group(["MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D",
                      "GlobalMaxPooling2D", "GlobalMaxPooling3D"])
UPSAMPLING = _group(["UpSampling1D", "UpSampling2D", "UpSampling3D"])
RESHAPING = _group(["ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
                    "Cropping2D", "Cropping3D", "Flatten", "Reshape", "Permute",
                    "Concatenate"])
IDENTITY_AT_INFERENCE = _group(["Dropout", "SpatialDropout1D", "SpatialDropout2D",
                                "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
                                "AlphaDropout", "ActivityRegularization"])
#: Data-augmentation layers: the identity at inference (RandomCrop is not:
#: it crops the centre at inference, and is not listed).
AUGMENTATION = _group(["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                       "RandomContrast", "RandomBrightness"])
#: Element-wise activation layers (``Activation`` itself: any element-wise
#: function; a softmax inside the network is not element-wise and is refused).
ELEMENTWISE = _group(["Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU"])

_RULE_CONVENTIONS = [
    (_group(["InputLayer"]), "-"),
    (KERNEL, "the analyzer's rule"),
    (DEPTHWISE, "the analyzer's rule on the depthwise kernel (a convolution whose "
                "channel-to-channel kernel is block diagonal)"),
    (SEPARABLE, "the analyzer's rule on ONE linear map: the Conv2D whose kernel is "
                "depthwise kernel x pointwise kernel"),
    (TRANSPOSED, "innvestigate's rule classes (positive / negative parts of the kernel)"),
    (_group(["Add"]), "the analyzer's rule for residual layers on W = [I ... I]"),
    (_group(["Subtract"]), "the analyzer's rule for residual layers on W = [I, -I] "
                           "(innvestigate: the gradient, +R and -R)"),
    (_group(["BatchNormalization"]), "the analyzer's rule for residual layers on the "
                                     "per-channel affine map k x + b"),
    (_group(["Rescaling", "Normalization"]),
     "as BatchNormalization: k x + b per channel (innvestigate: the gradient, which "
     "multiplies relevance by k)"),
    (AVERAGE_POOLING, "the analyzer's rule for residual layers (equal positive weights)"),
    (MAX_POOLING, "all relevance to the maximum (gradient)"),
    (UPSAMPLING, "gradient: the relevance of the copies is summed (innvestigate)"),
    (RESHAPING, "moved with the values (gradient)"),
    (IDENTITY_AT_INFERENCE + AUGMENTATION, "identity (inference mode)"),
    (_group(["Activation", "ReLU"]),
     "passed through unchanged (as innvestigate does for activations)"),
    (_group(["LeakyReLU", "PReLU", "ELU", "ThresholdedReLU"]),
     "passed through unchanged, like Activation (innvestigate: the gradient, i.e. times "
     "the local slope); keeps LRP-z = gradient x input on leaky ReLU nets"),
    (_group(["Multiply"]), "gate: all relevance to the signal input (the full-size one, "
                           "else the one not from a sigmoid); the gate gets none"),
]
#: Layer class -> the convention of the rule-based family on it.
RULE_SUPPORT = OrderedDict((cls, text) for group, text in _RULE_CONVENTIONS for cls in group)

_PATTERN_CONVENTIONS = [
    (_group(["InputLayer"]), "-"),
    (_group(["Dense", "Conv2D"]), "the layer's pattern in place of its kernel"),
    (_group(["Add", "BatchNormalization"]) + AVERAGE_POOLING + MAX_POOLING + RESHAPING
     + _group(["Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"]),
     "gradient"),
    (_group(["Activation", "ReLU"]), "gradient (a ReLU's forward mask)"),
]
#: Layer class -> the convention of PatternNet / PatternAttribution on it.
PATTERN_SUPPORT = OrderedDict((cls, text) for group, text in _PATTERN_CONVENTIONS
                              for cls in group)

#: Keras class name -> how the DeepLIFT converter maps it (the converter
#: checks each layer's options, e.g. dilation, itself).
DEEPLIFT_SUPPORT = OrderedDict([
    ("InputLayer", "-"),
    ("Dense", "linear rule"),
    ("Conv2D", "linear rule"),
    ("DepthwiseConv2D", "linear rule on the equivalent Conv2D kernel"),
    ("SeparableConv2D", "linear rule on the equivalent Conv2D kernel"),
    ("BatchNormalization", "linear rule (per-channel affine)"),
    ("Rescaling", "linear rule (per-channel affine)"),
    ("Normalization", "linear rule (per-channel affine)"),
    ("Add", "linear rule"),
    ("Concatenate", "linear rule"),
    ("AveragePooling2D", "linear rule"),
    ("GlobalAveragePooling2D", "linear rule"),
    ("MaxPooling2D", "interpolating max rule (or gradient)"),
    ("ZeroPadding2D", "linear rule"),
    ("Flatten", "linear rule"),
    ("Dropout", "identity"),
] + [(cls.__name__, "identity (inference mode)") for cls in AUGMENTATION] + [
    ("Activation", "Rescale / RevealCancel (monotonic: relu, sigmoid, tanh, elu, softplus)"),
    ("ReLU", "Rescale / RevealCancel (negative_slope or max_value, e.g. ReLU6; no threshold)"),
    ("LeakyReLU", "Rescale / RevealCancel"),
    ("ELU", "Rescale / RevealCancel"),
    ("Softmax", "only at the output (stripped)"),
])

#: The pre-table rule set, kept for PatternNet and for old imports.
RULE_LAYERS = tuple(RULE_SUPPORT)
#: Classes the gradient family names in the table (it runs on any layer).
GRADIENT_LAYERS = tuple(dict.fromkeys(RULE_LAYERS + UPSAMPLING))

#: Layers that pass a tensor on without changing its sign.
_SIGN_PRESERVING = (MAX_POOLING + AVERAGE_POOLING + RESHAPING
                    + _group(["Dropout", "SpatialDropout1D", "SpatialDropout2D",
                              "SpatialDropout3D", "Add"]))

#: Layers a first kernel layer may sit behind and still see the raw input.
_INPUT_PRESERVING = _group(["ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
                            "Cropping2D", "Cropping3D", "Flatten", "Reshape", "Permute",
                            "Dropout"])


def known_layer_types() -> frozenset:
    """Names of every layer type some family has a stated rule for (the
    audit names layers outside this set when an analyzer fails)."""
    names = [cls.__name__ for cls in list(RULE_SUPPORT) + list(PATTERN_SUPPORT)]
    return frozenset(names + list(DEEPLIFT_SUPPORT))


def model_layers(model) -> list:
    """The layers of ``model``, nested models included (depth first)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(model_layers(layer))
    return found


def family_of(analyzer_class) -> str:
    """The method family (:data:`FAMILIES`) of an analyzer class: its
    ``layer_family`` attribute if it has one, else read from its bases."""
    from innvestigate.analyzer.deeptaylor import DeepTaylor
    from innvestigate.analyzer.gradient_based import Deconvnet, GuidedBackprop
    from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP

    explicit = getattr(analyzer_class, "layer_family", None)
    if explicit in FAMILIES:
        return explicit
    if not isinstance(analyzer_class, type):
        return GRADIENT
    names = {cls.__name__ for cls in analyzer_class.__mro__}
    if "DeepLiftAnalyzer" in names:
        return DEEPLIFT
    if "PatternNet" in names:
        return PATTERN
    if issubclass(analyzer_class, (LRP, DeepTaylor)) or getattr(analyzer_class,
                                                                 "residual_rules", False):
        return RULES
    if issubclass(analyzer_class, (GuidedBackprop, Deconvnet)) or "RectGrad" in names:
        return BACKPROP
    return GRADIENT


_REFUSAL_REASONS = [
    (_group(["LayerNormalization", "GroupNormalization", "UnitNormalization"]),
     "its scale 1/std(x) is computed from the input itself, so it is not a fixed affine "
     "map and no rule of the family says how relevance splits between the value and "
     "its normalisation (innvestigate has none either); use a gradient-based method"),
    (_group(["Lambda"]), "an arbitrary function: no rule is defined for it"),
    (_group(["LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D"]),
     "a recurrent layer: no rule is defined for it"),
    (_group(["Softmax"]), "a softmax inside the network is not element-wise"),
]


def _in_table(layer, table) -> bool:
    return type(layer) in table or (isinstance(layer, tuple(table))
                                    and not _is_subclass_with_own_call(layer, table))


def _is_softmax_activation(layer) -> bool:
    return (isinstance(layer, klayers.Activation)
            and getattr(layer.activation, "__name__", "") == "softmax")


def gate_index(layer):
    """For a two-input ``Multiply``: the index of its gate input (the one
    broadcast to the output's shape, else the one that comes out of a
    sigmoid or hard sigmoid), or None if neither input is a gate."""
    shapes = [tuple(s) for s in _input_shapes(layer)]
    if len(shapes) != 2:
        return None
    output = tuple(layer.get_output_shape_at(0))
    full = [shape == output for shape in shapes]
    if full.count(True) == 1:
        return full.index(False)
    sigmoid = [_ends_in_sigmoid(parent) for parent in _input_layers_first_call(layer)]
    if sigmoid.count(True) == 1:
        return sigmoid.index(True)
    return None


def _input_shapes(layer):
    shapes = layer.get_input_shape_at(0)
    return shapes if isinstance(shapes, list) else [shapes]


def _input_layers_first_call(layer):
    tensors = layer.get_input_at(0)
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return [t._keras_history[0] for t in tensors]


def _ends_in_sigmoid(layer) -> bool:
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return name in ("sigmoid", "hard_sigmoid")


def layer_problem(layer, family: str):
    """Why methods of ``family`` cannot pass relevance through ``layer``, or
    None if they can. Nested models count as supported (they are flattened)."""
    if family in (GRADIENT, BACKPROP) or isinstance(layer, keras.Model):
        return None
    if family == DEEPLIFT:
        if type(layer).__name__ in DEEPLIFT_SUPPORT:
            return None
        return "the DeepLIFT converter has no rule for this layer type"
    table = RULE_SUPPORT if family == RULES else PATTERN_SUPPORT
    if not _in_table(layer, table):
        for group, reason in _REFUSAL_REASONS:
            if isinstance(layer, group):
                return reason
        if isinstance(layer, tuple(table)):
            return "a subclass of a supported layer with its own call(): its function is unknown"
        return "no rule of this family is defined for this layer type"
    if _is_softmax_activation(layer):
        return "a softmax inside the network is not element-wise"
    if family == RULES and isinstance(layer, klayers.Multiply) and gate_index(layer) is None:
        return ("a product of two inputs of which neither is a gate (broadcast, or out of "
                "a sigmoid): the gate convention does not apply")
    if (isinstance(layer, DEPTHWISE + SEPARABLE)
            and getattr(layer, "data_format", "channels_last") != "channels_last"):
        return "data_format channels_first (only channels_last is supported)"
    return None


def blocking_layers(model, family: str) -> "OrderedDict":
    """``{(layer type, reason): [layer names]}`` of every layer of ``model``
    (nested models included) that methods of ``family`` cannot pass through."""
    found = OrderedDict()
    for layer in model_layers(model):
        reason = layer_problem(layer, family)
        if reason is not None:
            found.setdefault((type(layer).__name__, reason), []).append(layer.name)
    return found


def describe_blocking(blocking) -> str:
    """One text for :func:`blocking_layers`' result, grouped by layer type."""
    return "; ".join(f"layer{'s' if len(names) > 1 else ''} "
                     f"{', '.join(repr(n) for n in names)} ({kind}): {reason}"
                     for (kind, reason), names in blocking.items())


def check_model(model, method_name: str, *, gradient_only: bool = False,
                family: str | None = None) -> None:
    """Raise ONE :class:`UnsupportedLayerError` listing every layer of
    ``model`` that ``method_name`` (of ``family``, see :data:`FAMILIES`;
    default ``rules``, or ``gradient`` with ``gradient_only``) cannot pass
    through, grouped by layer type with the reason. Returns None when every
    layer is supported. Called before any graph is built."""
    family = family or (GRADIENT if gradient_only else RULES)
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; valid: {FAMILIES}")
    blocking = blocking_layers(model, family)
    if blocking:
        count = sum(len(names) for names in blocking.values())
        raise UnsupportedLayerError(
            f"model {model.name!r}: method {method_name!r} ({family} family) cannot pass "
            f"relevance through {count} layer{'s' if count > 1 else ''}: "
            f"{describe_blocking(blocking)}. Replace these layers or use a method of the "
            "gradient family (Gradient, Input x Gradient, SmoothGrad, Integrated Gradients), "
            "which runs on any differentiable layer")


def _is_subclass_with_own_call(layer, table=None) -> bool:
    """True for a user subclass of a supported layer that redefines ``call``."""
    known = tuple(table) if table is not None else tuple(RULE_SUPPORT) + UPSAMPLING
    for cls in type(layer).__mro__:
        if cls in known:
            return False
        if "call" in vars(cls):
            return True
    return False


def support_table_markdown() -> str:
    """The supported-layers table per method family, in markdown, generated
    from :data:`RULE_SUPPORT`, :data:`PATTERN_SUPPORT` and
    :data:`DEEPLIFT_SUPPORT` (rows: layer types; cells: the convention)."""
    names = list(dict.fromkeys([cls.__name__ for cls in RULE_SUPPORT]
                               + [cls.__name__ for cls in PATTERN_SUPPORT]
                               + list(DEEPLIFT_SUPPORT) + [c.__name__ for c in UPSAMPLING]))
    rules = {cls.__name__: text for cls, text in RULE_SUPPORT.items()}
    pattern = {cls.__name__: text for cls, text in PATTERN_SUPPORT.items()}
    rows = [f"| layer | {' | '.join(FAMILIES)} |", "|---" * (len(FAMILIES) + 1) + "|"]
    for name in names:
        cells = ["gradient", "gradient (method's rule at ReLUs)",
                 rules.get(name, "refused"), pattern.get(name, "refused"),
                 DEEPLIFT_SUPPORT.get(name, "refused")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append("| any other differentiable layer | gradient | gradient | refused | refused "
                "| refused |")
    legend = "\n".join(f"- **{family}**: {methods}" for family, methods in FAMILY_METHODS.items())
    return legend + "\n\n" + "\n".join(rows) + "\n"


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
           "is_first_kernel_layer", "FAMILIES", "FAMILY_METHODS", "RULE_SUPPORT",
           "PATTERN_SUPPORT", "DEEPLIFT_SUPPORT", "family_of", "layer_problem",
           "blocking_layers", "describe_blocking", "gate_index", "known_layer_types",
           "support_table_markdown"]
