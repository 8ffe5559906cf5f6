"""Monotonic element-wise activations for the deeplift package (0.6.13 has
ReLU, PReLU, sigmoid, tanh and softmax): a ReLU clipped at ``max_value``
(ReLU6), ELU and softplus, as subclasses of its ``Activation``.

Each defines only the function and its derivative; deeplift's ``Activation``
gives the Rescale multiplier ``(f(x) - f(x0)) / (x - x0)`` (the derivative
where ``x`` is within 1e-7 of ``x0``) and the RevealCancel one from the
function alone, so summation-to-delta holds for both.

Import after ``residual_support._tf`` (the shim imports deeplift with the
TF1 API bound).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode + deeplift import first)

import tensorflow as tf
import deeplift.layers as dl


class ClippedReLU(dl.activations.Activation):
    """``min(max(x, 0), max_value)``: Keras ``ReLU(max_value=6)`` (ReLU6)."""

    def __init__(self, max_value, **kwargs):
        super().__init__(**kwargs)
        self.max_value = float(max_value)

    def _build_activation_vars(self, input_act_vars):
        return tf.clip_by_value(input_act_vars, 0.0, self.max_value)

    def _get_gradient_at_activation(self, activation_vars):
        inside = tf.logical_and(activation_vars > 0.0, activation_vars < self.max_value)
        return tf.cast(inside, activation_vars.dtype)


class ELU(dl.activations.Activation):
    """``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise (monotonic for alpha > 0)."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def _build_activation_vars(self, input_act_vars):
        return tf.where(input_act_vars > 0.0, input_act_vars,
                        self.alpha * (tf.exp(tf.minimum(input_act_vars, 0.0)) - 1.0))

    def _get_gradient_at_activation(self, activation_vars):
        return tf.where(activation_vars > 0.0, tf.ones_like(activation_vars),
                        self.alpha * tf.exp(tf.minimum(activation_vars, 0.0)))


class Softplus(dl.activations.Activation):
    """``log(1 + exp(x))``."""

    def _build_activation_vars(self, input_act_vars):
        return tf.nn.softplus(input_act_vars)

    def _get_gradient_at_activation(self, activation_vars):
        return tf.nn.sigmoid(activation_vars)


__all__ = ["ClippedReLU", "ELU", "Softplus"]
