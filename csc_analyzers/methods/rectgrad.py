"""RectGrad (Kim et al., 2019): the gradient, rectified at every ReLU by a percentile.

At every ReLU -- fused into a Conv/Dense layer (``activation="relu"``) or a
separate ``Activation("relu")`` / ``ReLU`` layer -- the backpropagated gradient
``g`` is kept only where the importance score ``a * g`` (``a`` the ReLU's
output) exceeds its ``q``-th percentile ``tau`` over the whole layer of that
sample, and set to zero elsewhere (the paper's eq. 14 family, section 2.2):

    R_l = 1[a_l * R_{l+1} > tau_l] * R_{l+1}

The rule replaces the ReLU's derivative (as in Kim et al.'s implementation and
the paper's code): for ``tau >= 0`` only units with ``a > 0`` pass, so the ReLU
mask is implied. The percentile is numpy's default (linear interpolation
between order statistics, ``np.percentile(..., q)``). The backward pass starts
from the gradient of the explained logit (a one-hot vector at the logits).
The paper uses ``q = 98``.
"""
from __future__ import annotations

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow.keras import layers as klayers

import innvestigate.backend as ibackend
import innvestigate.backend.checks as ichecks
import innvestigate.backend.graph as igraph
from innvestigate.analyzer.reverse_base import ReverseAnalyzerBase

from ..injection import InjectionMixin


def percentile_per_sample(values, q: float):
    """The ``q``-th percentile of each sample's values (all axes but the batch),
    with numpy's linear interpolation; shape ``(batch,) + (1,) * (ndim - 1)``.

    Needs only the order statistics ``low = floor(q / 100 * (n - 1))`` and
    ``low + 1``: they are the two smallest of the ``n - low`` largest values,
    found with an unsorted ``top_k`` (much cheaper than sorting a whole layer).
    """
    if None in values.shape[1:]:
        raise ValueError(f"RectGrad needs layers of known size, got shape {values.shape}")
    n = int(np.prod(values.shape[1:]))
    flat = tf.reshape(values, [-1, n])
    position = (q / 100.0) * (n - 1)
    low = int(np.floor(position))
    fraction = position - low
    largest = tf.math.top_k(flat, k=n - low, sorted=False).values
    smallest_two = -tf.math.top_k(-largest, k=min(2, n - low), sorted=True).values
    below = smallest_two[:, 0]
    above = smallest_two[:, -1]
    threshold = below + (above - below) * fraction
    return tf.reshape(threshold, [-1] + [1] * (len(values.shape) - 1))


def rectify(activation, gradient, q: float):
    """``gradient`` where ``activation * gradient`` exceeds its per-sample
    ``q``-th percentile, zero elsewhere."""
    score = activation * gradient
    threshold = percentile_per_sample(score, q)
    return tf.where(score > threshold, gradient, tf.zeros_like(gradient))


class RectGrad(InjectionMixin, ReverseAnalyzerBase):
    """Rectified gradient with percentile threshold ``percentile`` (q, 0..100).

    Only ReLU (and linear) activations are accepted. ``propagate`` injects a
    gradient at any layer and applies the same rectification below it.
    """

    def __init__(self, model, percentile: float = 98, **kwargs):
        if not 0 <= float(percentile) <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
        self._percentile = float(percentile)
        super().__init__(model, **kwargs)
        self._add_model_softmax_check()
        self._add_model_check(
            lambda layer: not ichecks.only_relu_activation(layer),
            "RectGrad is only specified for networks with ReLU activations.",
            check_type="exception",
        )
        self._do_model_checks()

    def _head_mapping(self, X):
        return tf.ones_like(X)

    def _rectgrad_mapping(self, Xs, Ys, reversed_Ys, reverse_state):
        layer = reverse_state["layer"]
        rectified = [rectify(y, r, self._percentile) for y, r in zip(Ys, reversed_Ys)]
        if isinstance(layer, (klayers.Activation, klayers.ReLU)):
            return rectified
        linear = igraph.copy_layer_wo_activation(layer, name_template="rectgrad_%s")
        return ibackend.gradients(Xs, ibackend.apply(linear, Xs), rectified)

    def _create_analysis(self, *args, **kwargs):
        self._add_conditional_reverse_mapping(
            lambda layer: ichecks.contains_activation(layer, "relu"),
            self._rectgrad_mapping,
            name="rectgrad_reverse_relu_layer",
        )
        return super()._create_analysis(*args, **kwargs)

    def _get_state(self):
        state = super()._get_state()
        state.update({"percentile": self._percentile})
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        percentile = state.pop("percentile")
        kwargs = super()._state_to_kwargs(state)
        kwargs.update({"percentile": percentile})
        return kwargs
