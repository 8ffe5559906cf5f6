"""Convert an in-memory tf.keras model to a deeplift model.

The converter reads the model's structure from ``model.get_config()`` and its
parameters from ``layer.get_weights()`` (no ``.h5`` round trip; deeplift's
own ``.h5`` converter breaks on tf.keras 2.14 files). It handles Sequential
and functional models (nested models are flattened first,
:func:`residual_support.flatten.flatten_model`) built from the layers of
:data:`residual_support.layers.DEEPLIFT_SUPPORT` (channels_last):

    InputLayer, Conv2D, Dense (both with a fused activation), Activation, ReLU,
    LeakyReLU, MaxPooling2D, AveragePooling2D, Flatten, Dropout,
    BatchNormalization, ZeroPadding2D, GlobalAveragePooling2D, Add,
    Concatenate, DepthwiseConv2D and SeparableConv2D (as the Conv2D with the
    equivalent kernel: both are linear maps), Rescaling and Normalization
    (as per-channel affine maps, deeplift's BatchNormalization with mean 0,
    variance 1, epsilon 0).

Nonlinearities get the Rescale (or RevealCancel) rule: the monotonic ReLU,
leaky ReLU (deeplift's PReLU), sigmoid, tanh, and the monotonic activations
of :mod:`residual_support.deeplift_activations` (ReLU with ``max_value``
such as ReLU6, ELU, softplus). Swish and GELU are not monotonic and are
refused. A softmax at
the output is dropped: the deeplift model ends
at the logits. The whole model is checked first; an unsupported layer or
option raises :class:`UnsupportedLayerError` naming the layer before any graph
operation is created.

Every Keras layer maps to the deeplift node that computes its output; a layer
with a fused activation becomes two nodes, ``<name>/linear`` and ``<name>``.

Every weight-dependent array of the deeplift model (Dense / Conv2D kernel and
bias, BatchNormalization gamma, beta, mean and variance) is a
:class:`~residual_support.deeplift_layers.GraphWeight` that remembers the
Keras layer and the function of its weights it came from;
:meth:`ConvertedModel.sync` re-loads all of them from the Keras model's current
weights without adding graph operations.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode + deeplift import first)

import deeplift.layers as dl
from tensorflow import keras
from deeplift.models import GraphModel

from residual_support import deeplift_activations as ra
from residual_support import deeplift_layers as rl
from residual_support import deeplift_pooling as rp
from residual_support.flatten import flatten_model
from residual_support.layers import AUGMENTATION, DEEPLIFT_SUPPORT

from ..errors import UnsupportedLayerError

NONLINEAR_MODES = {
    "rescale": dl.NonlinearMxtsMode.Rescale,
    "reveal_cancel": dl.NonlinearMxtsMode.RevealCancel,
}
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "elu", "softplus", "softmax")
SUPPORTED = tuple(DEEPLIFT_SUPPORT)
_CONV_LIKE = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
#: Augmentation layers: the identity at inference.
_IDENTITY = tuple(cls.__name__ for cls in AUGMENTATION)


@dataclass
class LayerSpec:
    """One Keras layer as read from the model config."""
    name: str
    class_name: str
    config: dict
    inbound: list = field(default_factory=list)


@dataclass
class ConvertedModel:
    """A deeplift model built from a Keras model.

    ``graph_model``: deeplift ``GraphModel`` over all nodes; ``nodes``: Keras
    layer name -> the deeplift node computing that layer's output (``"input"``
    and the input layer's name -> the input node); ``input_node``,
    ``output_node`` (the logits); ``graph_weights``: every weight-dependent
    array held in the graph, each with its Keras source layer; they are
    initialised once in the session (:meth:`initialize`) and re-loaded from
    the Keras model's current weights by :meth:`sync`.
    """
    graph_model: GraphModel
    nodes: dict
    input_node: object
    output_node: object
    graph_weights: list

    def initialize(self, session) -> None:
        """Load the arrays the graph weights were built from (one session run)."""
        rl.GraphWeight.initialize_all(self.graph_weights, session)

    def source_layers(self) -> list:
        """Names of the Keras layers whose weights the graph holds, in order."""
        return list(dict.fromkeys(w.source.layer for w in self.graph_weights))

    def sync(self, model, session, layers=None) -> None:
        """Re-load the graph weights from the current weights of ``model``
        (the converted Keras model or one with the same layer names and
        weight shapes): those of every source layer, or only of the Keras
        layers named in ``layers`` (the ones that changed). One session run
        reads the Keras weights, one assigns them. No graph operation is added."""
        names = self.source_layers()
        if layers is not None:
            wanted = set(layers)
            names = [name for name in names if name in wanted]
        present = {layer.name for layer in model.layers}
        missing = [name for name in names if name not in present]
        if missing:
            raise ValueError(f"model {model.name!r} has no layers {missing}; it is not the "
                             "model this DeepLIFT graph was converted from")
        if not names:
            return
        chosen = [w for w in self.graph_weights if w.source.layer in names]
        rl.GraphWeight.sync_all(chosen, layer_weights(model, names), session)


def _unsupported(spec: LayerSpec, why: str):
    return UnsupportedLayerError(
        f"layer {spec.name!r} of type {spec.class_name}: {why}; the DeepLIFT converter "
        f"supports {', '.join(SUPPORTED)}")


def read_layers(model) -> tuple[list, str]:
    """The model's layers in execution order as :class:`LayerSpec` and the
    name of its output layer, from ``model.get_config()`` (of a model
    without nested models, see :func:`flatten_model`)."""
    config = model.get_config()
    raw = config["layers"]
    specs = []
    if "input_layers" not in config:  # Sequential: a chain
        if not raw or raw[0]["class_name"] != "InputLayer":
            shape = [None] + list(model.input_shape[1:])
            specs.append(LayerSpec(f"{model.name}_input", "InputLayer",
                                   {"batch_input_shape": shape}))
        for entry in raw:
            inbound = [specs[-1].name] if specs else []
            specs.append(LayerSpec(entry["config"]["name"], entry["class_name"],
                                   entry["config"], inbound))
        return specs, specs[-1].name
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise UnsupportedLayerError(
            f"model {model.name!r} has {len(config['input_layers'])} inputs and "
            f"{len(config['output_layers'])} outputs; the DeepLIFT converter needs one of each")
    for entry in raw:
        name = entry.get("name", entry["config"].get("name"))
        spec = LayerSpec(name, entry["class_name"], entry["config"])
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) > 1:
            raise _unsupported(spec, f"is called {len(nodes)} times (shared layers)")
        if nodes:
            node = nodes[0]
            node = node.get("args", node) if isinstance(node, dict) else node
            spec.inbound = [item[0] for item in node]
        specs.append(spec)
    return specs, config["output_layers"][0][0]


def _activation_name(spec: LayerSpec) -> str:
    activation = spec.config.get("activation", "linear")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise _unsupported(spec, f"activation {activation!r} (supported: {ACTIVATIONS})")
    return activation


def _check(spec: LayerSpec, is_output: bool, model) -> None:
    """Raise :class:`UnsupportedLayerError` if ``spec`` cannot be converted."""
    cls, cfg = spec.class_name, spec.config
    if cls in ("Functional", "Sequential", "Model"):
        raise _unsupported(spec, "nested model (call the converter on a flat model)")
    if cls not in SUPPORTED:
        raise _unsupported(spec, "unsupported layer type")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(spec, f"data_format {cfg['data_format']!r}")
    if cls == "InputLayer":
        shape = cfg.get("batch_input_shape")
        if shape is None or any(d is None for d in shape[1:]):
            raise _unsupported(spec, f"input shape {shape} must be fully known")
    if cls in _CONV_LIKE + ("Dense", "Activation"):
        activation = _activation_name(spec)
        if activation == "softmax" and not is_output:
            raise _unsupported(spec, "softmax before the output")
    if cls == "Softmax" and not is_output:
        raise _unsupported(spec, "softmax before the output")
    if cls in _CONV_LIKE:
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise _unsupported(spec, f"dilation_rate {cfg['dilation_rate']}")
        if cfg.get("groups", 1) != 1:
            raise _unsupported(spec, f"groups={cfg['groups']}")
    if cls == "Dense" and len(model.get_layer(spec.name).input_shape) != 2:
        raise _unsupported(spec, "Dense on a tensor of rank > 2")
    if cls == "ReLU":
        if float(cfg.get("threshold", 0.0)) != 0.0:
            raise _unsupported(spec, "ReLU with a threshold")
        if cfg.get("max_value") is not None and float(cfg.get("negative_slope", 0.0)) != 0.0:
            raise _unsupported(spec, "ReLU with both max_value and negative_slope")
    if cls == "ELU" and float(cfg.get("alpha", 1.0)) <= 0:
        raise _unsupported(spec, "ELU with alpha <= 0 (not monotonic)")
    if cls in ("BatchNormalization", "Normalization"):
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        rank = len(model.get_layer(spec.name).input_shape)
        if not isinstance(axis, int) or axis not in (-1, rank - 1):
            raise _unsupported(spec, f"axis {cfg.get('axis')} (only the last axis)")
    if cls == "GlobalAveragePooling2D" and cfg.get("keepdims", False):
        raise _unsupported(spec, "keepdims=True")
    if cls == "Concatenate" and cfg.get("axis", -1) not in (
            -1, len(model.get_layer(spec.name).output_shape) - 1):
        raise _unsupported(spec, f"axis {cfg.get('axis')} (only the last axis)")


def check_model(model) -> tuple[list, str]:
    """Check every layer of ``model`` (no graph operation is created); ONE
    :class:`UnsupportedLayerError` lists every layer the converter cannot
    handle, grouped by type and reason."""
    model = flatten_model(model)
    specs, output = read_layers(model)
    problems = OrderedDict()
    for spec in specs:
        try:
            _check(spec, spec.name == output, model)
        except UnsupportedLayerError as error:
            reason = str(error).split(": ", 1)[-1].split("; the DeepLIFT converter")[0]
            problems.setdefault((spec.class_name, reason), []).append(spec.name)
    if problems:
        if len(problems) == 1 and len(next(iter(problems.values()))) == 1:
            (kind, reason), names = next(iter(problems.items()))
            raise _unsupported(LayerSpec(names[0], kind, {}), reason)
        text = "; ".join(f"layers {', '.join(repr(n) for n in names)} ({kind}): {reason}"
                         for (kind, reason), names in problems.items())
        raise UnsupportedLayerError(f"model {model.name!r}: {text}; the DeepLIFT converter "
                                    f"supports {', '.join(SUPPORTED)}")
    return specs, output


def _padding(cfg) -> str:
    return cfg["padding"].upper()


def _activation_node(activation: str, name: str, nonlinear_mode: str):
    kwargs = dict(name=name, verbose=False, nonlinear_mxts_mode=NONLINEAR_MODES[nonlinear_mode])
    if activation == "relu":
        return dl.activations.ReLU(**kwargs)
    if activation == "sigmoid":
        return dl.activations.Sigmoid(**kwargs)
    if activation == "elu":
        return ra.ELU(**kwargs)
    if activation == "softplus":
        return ra.Softplus(**kwargs)
    return dl.activations.Tanh(**kwargs)


def _filled(value, like_index, weights):
    """A vector of ``value`` as long as the last axis of ``weights[like_index]``."""
    return np.full(np.shape(weights[like_index])[-1], value, dtype=np.float32)


def _linear_sources(spec: LayerSpec) -> dict:
    """Kernel and bias of a Dense / Conv2D layer as functions of its weights
    (a layer without bias gets zeros)."""
    bias = itemgetter(1) if spec.config.get("use_bias", True) else partial(_filled, 0.0, 0)
    return {"kernel": rl.WeightSource(spec.name, itemgetter(0)),
            "bias": rl.WeightSource(spec.name, bias)}


def depthwise_to_conv(depthwise: np.ndarray) -> np.ndarray:
    """The Conv2D kernel (h, w, c, c m) of a depthwise kernel (h, w, c, m):
    input channel c feeds only the outputs c m .. c m + m - 1."""
    h, w, c, m = depthwise.shape
    kernel = np.zeros((h, w, c, c * m), dtype=np.float32)
    for j in range(m):
        kernel[:, :, np.arange(c), np.arange(c) * m + j] = depthwise[:, :, :, j]
    return kernel


def separable_to_conv(depthwise: np.ndarray, pointwise: np.ndarray) -> np.ndarray:
    """The Conv2D kernel (h, w, c, o) of a separable convolution."""
    h, w, c, m = depthwise.shape
    return np.einsum("hwcm,cmo->hwco", depthwise, pointwise.reshape(c, m, -1))


def _conv_like_sources(spec: LayerSpec) -> dict:
    """Kernel and bias of a Dense, Conv2D, DepthwiseConv2D or SeparableConv2D
    layer as a Conv2D / Dense would have them."""
    cls = spec.class_name
    if cls in ("Dense", "Conv2D"):
        return _linear_sources(spec)
    if cls == "DepthwiseConv2D":
        kernel, n_kernels = (lambda w: depthwise_to_conv(w[0])), 1
    else:
        kernel, n_kernels = (lambda w: separable_to_conv(w[0], w[1])), 2
    bias = (itemgetter(n_kernels) if spec.config.get("use_bias", True)
            else (lambda w: np.zeros(kernel(w).shape[-1], np.float32)))
    return {"kernel": rl.WeightSource(spec.name, kernel),
            "bias": rl.WeightSource(spec.name, bias)}


def _affine_sources(spec: LayerSpec, model) -> dict:
    """gamma, beta, mean, var of deeplift's BatchNormalization (epsilon 0)
    that compute a Rescaling or Normalization layer: ``gamma x + beta``."""
    channels = int(model.get_layer(spec.name).input_shape[-1])
    cfg = spec.config

    def full(value):
        return np.broadcast_to(np.asarray(value, np.float32).reshape(-1),
                               (channels,)).astype(np.float32)

    if spec.class_name == "Rescaling":
        gamma, beta = (lambda w: full(cfg["scale"])), (lambda w: full(cfg["offset"]))
    else:
        layer = model.get_layer(spec.name)
        eps = float(keras.backend.epsilon())

        def moments(w):
            if w:
                return full(w[0]), full(w[1])
            return full(layer.input_mean), full(layer.input_variance)

        def spread(w):
            return np.maximum(np.sqrt(moments(w)[1]), eps)

        if cfg.get("invert", False):
            gamma, beta = spread, (lambda w: moments(w)[0])
        else:
            gamma, beta = (lambda w: 1.0 / spread(w)), (lambda w: -moments(w)[0] / spread(w))
    derive = dict(gamma=gamma, beta=beta, mean=lambda w: full(0.0), var=lambda w: full(1.0))
    return {key: rl.WeightSource(spec.name, fn) for key, fn in derive.items()}


def _batchnorm_sources(spec: LayerSpec) -> dict:
    """gamma, beta, mean, var of a BatchNormalization layer as functions of its
    weights ``[gamma if scale] + [beta if center] + [mean, var]`` (a missing
    gamma is ones, a missing beta zeros)."""
    scale, center = spec.config.get("scale", True), spec.config.get("center", True)
    gamma = itemgetter(0) if scale else partial(_filled, 1.0, -1)
    beta = itemgetter(int(scale)) if center else partial(_filled, 0.0, -1)
    derive = dict(gamma=gamma, beta=beta, mean=itemgetter(-2), var=itemgetter(-1))
    return {key: rl.WeightSource(spec.name, fn) for key, fn in derive.items()}


def _values(sources: dict, weights: list) -> dict:
    return {key: source.derive(weights) for key, source in sources.items()}


def _build_nodes(spec, weights, inputs, *, is_output, nonlinear_mode, cross_mxts, maxpool_mode,
                 model=None):
    """deeplift nodes for one Keras layer: ``(first node, output node)``;
    ``None`` for a layer that passes its input through (softmax at the output)."""
    cls, cfg, name = spec.class_name, spec.config, spec.name
    if cls == "InputLayer":
        node = dl.core.Input(batch_shape=[None] + list(cfg["batch_input_shape"][1:]),
                             name=name, verbose=False)
        return node, node
    if cls in ("Dense",) + _CONV_LIKE:
        activation = _activation_name(spec)
        if activation == "softmax" and is_output:
            activation = "linear"
        sources = _conv_like_sources(spec)
        values = _values(sources, weights)
        linear_name = name if activation == "linear" else f"{name}/linear"
        if cls == "Dense":
            linear = rl.Dense(**values, cross_mxts=cross_mxts, sources=sources,
                              name=linear_name, verbose=False)
        else:
            linear = rl.Conv2D(**values, strides=cfg["strides"], padding=_padding(cfg),
                               cross_mxts=cross_mxts, sources=sources,
                               name=linear_name, verbose=False)
        linear.set_inputs(inputs[0])
        if activation == "linear":
            return linear, linear
        node = _activation_node(activation, name, nonlinear_mode)
        node.set_inputs(linear)
        return linear, node
    if cls in ("Activation", "Softmax"):
        activation = "softmax" if cls == "Softmax" else _activation_name(spec)
        if activation == "softmax":
            return None
        if activation == "linear":
            node = dl.core.NoOp(name=name, verbose=False)
        else:
            node = _activation_node(activation, name, nonlinear_mode)
    elif cls == "ReLU":
        slope = float(cfg.get("negative_slope", 0.0))
        kwargs = dict(name=name, verbose=False,
                      nonlinear_mxts_mode=NONLINEAR_MODES[nonlinear_mode])
        if cfg.get("max_value") is not None:
            node = ra.ClippedReLU(max_value=float(cfg["max_value"]), **kwargs)
        else:
            node = (dl.activations.ReLU(**kwargs) if slope == 0.0
                    else dl.activations.PReLU(alpha=slope, **kwargs))
    elif cls == "ELU":
        node = ra.ELU(alpha=float(cfg.get("alpha", 1.0)), name=name, verbose=False,
                      nonlinear_mxts_mode=NONLINEAR_MODES[nonlinear_mode])
    elif cls == "MaxPooling2D":
        node = rp.MaxPool2D(mode=maxpool_mode, pool_size=tuple(cfg["pool_size"]),
                            strides=tuple(cfg["strides"]), padding=_padding(cfg),
                            data_format="channels_last", name=name, verbose=False)
    elif cls == "AveragePooling2D":
        node = rp.AvgPool2D(pool_size=tuple(cfg["pool_size"]), strides=tuple(cfg["strides"]),
                            padding=_padding(cfg), data_format="channels_last",
                            name=name, verbose=False)
    elif cls == "Flatten":
        node = dl.core.Flatten(name=name, verbose=False)
    elif cls == "Dropout" or cls in _IDENTITY:
        node = dl.core.NoOp(name=name, verbose=False)
    elif cls == "BatchNormalization":
        sources = _batchnorm_sources(spec)
        node = rl.BatchNormalization(**_values(sources, weights), epsilon=float(cfg["epsilon"]),
                                     sources=sources, name=name, verbose=False)
    elif cls in ("Rescaling", "Normalization"):
        sources = _affine_sources(spec, model)
        node = rl.BatchNormalization(**_values(sources, weights), epsilon=0.0,
                                     sources=sources, name=name, verbose=False)
    elif cls == "LeakyReLU":
        node = dl.activations.PReLU(alpha=float(cfg.get("alpha", 0.3)), name=name,
                                    verbose=False,
                                    nonlinear_mxts_mode=NONLINEAR_MODES[nonlinear_mode])
    elif cls == "ZeroPadding2D":
        padding = cfg["padding"]
        node = rl.ZeroPad2D(padding=tuple(tuple(int(p) for p in pair) for pair in padding),
                            name=name, verbose=False)
    elif cls == "GlobalAveragePooling2D":
        node = rp.GlobalAvgPool2D(name=name, verbose=False)
    else:  # Add, Concatenate
        node = (rl.Add if cls == "Add" else rl.Concat)(name=name, verbose=False)
        node.set_inputs(list(inputs))
        return node, node
    node.set_inputs(inputs[0])
    return node, node


def layer_weights(model, names) -> dict:
    """``layer.get_weights()`` of the layers ``names`` of ``model`` (name ->
    list of arrays), fetched in one session run."""
    layers = [model.get_layer(name) for name in names]
    values = iter(keras.backend.batch_get_value([w for layer in layers for w in layer.weights]))
    return {layer.name: [next(values) for _ in layer.weights] for layer in layers}


def convert(model, *, nonlinear_mode: str = "rescale", cross_mxts: bool = True,
            maxpool_mode: str = "interpolate") -> ConvertedModel:
    """Build the deeplift model of ``model`` in the current default graph.

    ``nonlinear_mode``: ``"rescale"`` or ``"reveal_cancel"`` for every ReLU
    (sigmoid, tanh); ``cross_mxts``: ``False`` for the decoupled ablation of
    the linear rule (see :mod:`residual_support.deeplift_layers`);
    ``maxpool_mode``: ``"interpolate"`` or ``"gradient"``
    (:class:`residual_support.deeplift_pooling.MaxPool2D`). The forward pass
    (activations, references, contributions) is built; multipliers are not.
    """
    if nonlinear_mode not in NONLINEAR_MODES:
        raise ValueError(f"nonlinear_mode must be one of {sorted(NONLINEAR_MODES)}, "
                         f"got {nonlinear_mode!r}")
    if maxpool_mode not in rp.MAXPOOL_MODES:
        raise ValueError(f"maxpool_mode must be one of {rp.MAXPOOL_MODES}, got {maxpool_mode!r}")
    model = flatten_model(model)
    specs, output_name = check_model(model)
    outputs: dict = {}
    name_to_layer: OrderedDict = OrderedDict()
    input_name = None
    all_weights = layer_weights(
        model, [spec.name for spec in specs if spec.class_name != "InputLayer"])
    for spec in specs:
        inputs = [outputs[name] for name in spec.inbound]
        weights = all_weights.get(spec.name, [])
        built = _build_nodes(spec, weights, inputs, is_output=spec.name == output_name,
                             nonlinear_mode=nonlinear_mode, cross_mxts=cross_mxts,
                             maxpool_mode=maxpool_mode, model=model)
        if built is None:
            outputs[spec.name] = inputs[0]
            continue
        first, last = built
        if spec.class_name == "InputLayer":
            input_name = spec.name
        for node in {id(first): first, id(last): last}.values():
            name_to_layer[node.get_name()] = node
        outputs[spec.name] = last
    output_node = outputs[output_name]
    output_node.build_fwd_pass_vars()
    nodes = dict(outputs)
    nodes["input"] = outputs[input_name]
    weights = [w for node in name_to_layer.values() for w in getattr(node, "graph_weights", [])]
    return ConvertedModel(graph_model=GraphModel(name_to_layer, [input_name]), nodes=nodes,
                          input_node=outputs[input_name], output_node=output_node,
                          graph_weights=weights)
