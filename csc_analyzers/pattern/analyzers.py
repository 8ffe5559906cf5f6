"""PatternNet and PatternAttribution as innvestigate reverse analyzers.

Both start the backward pass with the selected output value ``y`` (the
logit, innvestigate's identity head mapping, as in innvestigate 1.0) and
reverse every Dense/Conv2D layer as its gradient with the kernel replaced:

* ``pattern.net`` (eq. 10): ``r_l = A_l^T r_{l+1}`` -- the pattern ``A``;
* ``pattern.attribution`` (eq. 11): ``r_l = (W_l (.) A_l)^T r_{l+1}``.

A layer's own activation is reversed as its gradient first (for a ReLU: the
forward pass's mask). Every other layer is reversed as the gradient does:
ReLU layers (forward mask), max-pooling (forward switches), average pooling,
Flatten, Dropout, padding, and, on residual networks, BatchNormalization (the
per-channel scale ``gamma / sqrt(var + eps)``) and Add (the relevance goes
unchanged to every summand). For methods whose rule is a linear map per
layer these are the natural pass-throughs: BN is a fixed per-channel linear
map at inference and Add the sum of its inputs, so reversing them as the
gradient keeps the backward pass linear in the relevance; they carry no
pattern of their own (estimate patterns for the Conv2D/Dense layers only).

No final multiplication by the input: for a linear neuron ``y = w^T x``,
PatternAttribution's map ``(w (.) a) y`` already equals ``w (.) (x - x0)``
with the root point ``x0 = x - a y`` of Kindermans et al. (2018, sec. 4.2),
i.e. the "input" factor of the Taylor/LRP-style attribution is ``a y``, which
the backward pass produces itself. innvestigate 1.0's PatternAttribution
does the same (no input multiplication).

The backward pass is linear in the relevance (no bottleneck projection by
default), so :meth:`propagate` (relevance injection) is linear in ``v``.
"""
from __future__ import annotations

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from innvestigate.analyzer.reverse_base import ReverseAnalyzerBase
from tensorflow.keras import layers as klayers

from ..injection import InjectionMixin
from .storage import is_pattern_layer, pattern_layers, resolve_patterns

__all__ = ["PatternNet", "PatternAttribution"]


def _kernel_op(layer, x, kernel):
    """The layer's linear map with ``kernel`` instead of its weights (no bias)."""
    if isinstance(layer, klayers.Dense):
        return tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]])
    return tf.nn.conv2d(x, kernel, strides=list(layer.strides),
                        padding=layer.padding.upper(), dilations=list(layer.dilation_rate))


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


class _PatternBackward(klayers.Layer):
    """Reverse one Dense/Conv2D layer: the gradient of its activation (if
    any), then the gradient of its linear map with the backward kernel in
    place of the kernel. The backward kernel is a non-trainable weight set
    with :meth:`set_weights` (no large constants in the graph)."""

    def __init__(self, layer, kernel_shape, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._kernel_shape = tuple(kernel_shape)

        # closures, so that Keras does not track the forward layer's weights
        def linear_map(x, kernel):
            return _kernel_op(layer, x, kernel)

        def pre_activation(x):
            pre = _kernel_op(layer, x, layer.kernel)
            return tf.nn.bias_add(pre, layer.bias) if layer.use_bias else pre

        self._linear_map = linear_map
        self._pre_activation = pre_activation
        self._activation = None if _activation_name(layer) == "linear" else layer.activation

    def build(self, input_shape):
        self.backward_kernel = self.add_weight(
            name="backward_kernel", shape=self._kernel_shape, initializer="zeros",
            trainable=False)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs):
        x, relevance = inputs
        if self._activation is not None:
            pre = self._pre_activation(x)
            relevance = tf.gradients(self._activation(pre), pre, grad_ys=relevance)[0]
        out = self._linear_map(x, self.backward_kernel)
        return tf.gradients(out, x, grad_ys=relevance)[0]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class PatternNet(InjectionMixin, ReverseAnalyzerBase):
    """PatternNet (Kindermans et al. 2018; eq. 10 of the paper).

    :param model: a Keras model without a final softmax (use
      :func:`csc_analyzers.create_analyzer`, which strips it).
    :param patterns: ``{layer name: array with the kernel's shape}`` for every
      Dense and Conv2D layer, a :class:`~csc_analyzers.pattern.storage.PatternSet`,
      or the path of a pattern file (checked against the model's weights).
    Further keyword arguments go to innvestigate's ``ReverseAnalyzerBase``
    (e.g. ``neuron_selection_mode``).

    For a one-layer model ``y = w^T x + b`` the map is ``a * y``.
    """

    def __init__(self, model, patterns=None, **kwargs):
        super().__init__(model, **kwargs)
        self._add_model_softmax_check()
        self._do_model_checks()
        self._patterns = resolve_patterns(patterns, model)
        layers = pattern_layers(model)
        kernels = tf.compat.v1.keras.backend.batch_get_value([layer.kernel for layer in layers])
        self._backward_kernels = {
            layer.name: np.asarray(self._backward_kernel(kernel, self._patterns[layer.name]),
                                   dtype=np.float32)
            for layer, kernel in zip(layers, kernels)}
        self._add_conditional_reverse_mapping(
            lambda layer: is_pattern_layer(layer) and layer.name in self._backward_kernels,
            self._kernel_mapping, name="pattern_kernel_layer")

    def _backward_kernel(self, kernel: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """The matrix that replaces the layer's ``kernel`` in the backward pass: ``A``."""
        return pattern

    def _kernel_mapping(self, layer, _state):
        kernel = self._backward_kernels[layer.name]
        backward = _PatternBackward(layer, kernel.shape, name=f"pattern_backward_{layer.name}")

        def apply(Xs, Ys, reversed_Ys, _reverse_state):
            result = backward([Xs[0], reversed_Ys[0]])
            self._pending_kernels.append((backward.backward_kernel, kernel))
            return [result]

        return apply

    def _reverse_model(self, *args, **kwargs):
        """Build the backward graph, then set every backward kernel in one
        assignment (setting each while the graph grows re-sends the whole
        graph to the session per layer: 60 of 73 s on ResNet50V2)."""
        self._pending_kernels = []
        reversed_tensors = super()._reverse_model(*args, **kwargs)
        pending, self._pending_kernels = self._pending_kernels, []
        tf.compat.v1.keras.backend.batch_set_value(pending)
        return reversed_tensors

    def _get_state(self):
        state = super()._get_state()
        state.update({"patterns": self._patterns})
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        patterns = state.pop("patterns")
        kwargs = super()._state_to_kwargs(state)
        kwargs.update({"patterns": patterns})
        return kwargs


class PatternAttribution(PatternNet):
    """PatternAttribution (Kindermans et al. 2018; eq. 11 of the paper):
    the backward pass uses ``W (.) A``. The map is *not* multiplied by the
    input at the end (see the module docstring): for a one-layer model
    ``y = w^T x + b`` it is ``(w (.) a) * y = w (.) (x - x0)``, ``x0 = x - a y``.
    """

    def _backward_kernel(self, kernel: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """``W (.) A``."""
        return kernel * pattern
