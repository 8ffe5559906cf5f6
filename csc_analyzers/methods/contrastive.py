"""Contrastive LRP (Gu et al., 2018; the paper's eq. 15).

    max(0, n(r_x(x | r_logits := y_k)) - n(r_x(x | r_logits := y_not_k)))

``y_k = y * m_k`` keeps only the explained logit, ``y_not_k = y * (1 - m_k)``
all the others; ``r`` is LRP with the z+ rule (alpha = 1, beta = 0, bias
ignored) and ``n(.)`` divides a map by its sum over the whole input of the
sample. ``use_max=False`` omits the ``max(0, .)`` (the paper's Figure 1e).

The analyzer builds both backward passes in one graph: the second pass maps
the neuron-selection layer to ``y * (1 - m_k)`` instead of ``y * m_k`` and
reuses the rule objects (and their weight copies) of the first pass.
``propagate`` is the non-contrastive z+ relevance chain (the first pass): an
injected relevance has no class to contrast with.
"""
from __future__ import annotations

import inspect

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf

import innvestigate.analyzer.relevance_based.relevance_rule as rrule
import innvestigate.backend.graph as igraph
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP

from ..injection import InjectionMixin


def sum_normalise(relevance):
    """``relevance / sum(relevance)`` per sample (zero where the sum is zero)."""
    axes = list(range(1, len(relevance.shape)))
    total = tf.reduce_sum(relevance, axis=axes, keepdims=True)
    safe = tf.where(tf.equal(total, 0.0), tf.ones_like(total), total)
    return tf.where(tf.equal(total, 0.0), tf.zeros_like(relevance), relevance / safe)


def initialise_mapping(meta, layer, model):
    """The reverse mapping ``f(Xs, Ys, reversed_Ys, reverse_state)`` that
    innvestigate's ``reverse_model`` makes of ``meta`` (a mapping, a function
    ``f(layer, state)`` returning one, a ``ReverseMappingBase`` class, or None)."""
    state = {"model": model, "layer": layer}
    if meta is None:
        return None
    if inspect.isclass(meta) and issubclass(meta, igraph.ReverseMappingBase):
        return meta(layer, state).apply
    if callable(meta) and len(inspect.signature(meta).parameters) == 2:
        return meta(layer, state)
    return meta


def contrast(target, other, use_max: bool = True):
    """Eq. 15 from the two relevance maps of the explained and the other logits."""
    difference = sum_normalise(target) - sum_normalise(other)
    return tf.maximum(difference, 0.0) if use_max else difference


class ContrastiveLRP(InjectionMixin, LRP):
    """Contrastive LRP with z+ relevances; ``use_max`` applies ``max(0, .)``.

    Needs ``neuron_selection_mode`` "max_activation" or "index" (the class k).
    """

    rule = rrule.Alpha1Beta0IgnoreBiasRule

    def __init__(self, model, use_max: bool = True, **kwargs):
        self._use_max = bool(use_max)
        self._contrast_pass = False
        self._mappings = {}
        self._reversed_model = None
        super().__init__(model, rule=self.rule, bn_layer_rule=self.rule, **kwargs)
        if self._neuron_selection_mode == "all":
            raise ValueError(
                "ContrastiveLRP explains one class against the others; use "
                "neuron_selection_mode 'max_activation' or 'index', not 'all'")
        self._do_model_checks()

    def _rule_for_residual_layer(self, layer):
        """The rule that ``Add``/``BatchNormalization`` layers should follow."""
        return self.rule

    def _complement_selection(self, Xs, Ys, reversed_Ys, reverse_state):
        """Map the neuron selection to ``y * (1 - m_k)`` (the other logits)."""
        ones = [tf.ones_like(r) for r in reversed_Ys]
        masks = self._gradient_reverse_mapping(Xs, Ys, ones, reverse_state)
        logits, mask = Xs[0], masks[0]
        return [logits * (1.0 - mask)] + list(masks[1:])

    def _reverse_mapping(self, layer):
        if self._contrast_pass and layer in self._special_helper_layers:
            return self._complement_selection
        if id(layer) not in self._mappings:
            self._mappings[id(layer)] = initialise_mapping(
                super()._reverse_mapping(layer), layer, self._reversed_model)
        return self._mappings[id(layer)]

    def _reverse_model(self, model, stop_analysis_at_tensors=None,
                       return_all_reversed_tensors=False):
        self._reversed_model = model
        target, reversed_tensors = super()._reverse_model(
            model, stop_analysis_at_tensors, return_all_reversed_tensors)
        injection_points = self._injection_points
        self._contrast_pass = True
        try:
            other, _ = super()._reverse_model(model, stop_analysis_at_tensors, False)
        finally:
            self._contrast_pass = False
            self._injection_points = injection_points
        combined = [contrast(t, o, self._use_max) for t, o in zip(target, other)]
        return combined, reversed_tensors
