"""Excitation Backprop (Zhang et al., 2018) and its contrastive form (eq. 16).

Excitation BP propagates *marginal winning probabilities* top-down with the
z+ rule without bias (the paper's eq. 5): the input neuron ``i`` of a layer
receives the share ``[w_ij h_i]^+ / sum_k [w_kj h_k]^+`` of the probability of
output neuron ``j``. The backward pass starts from a one-hot vector at the
explained logit (probability 1 for the class, eq. 16's ``m_k``), so for a
network without dead ends the input relevance sums to 1. For non-negative
inputs (every layer after a ReLU) this is Zhang et al.'s rule with the
positive weights; at a first layer with signed inputs the positive
contributions ``[w_ij x_i]^+`` of eq. 5 are used, as in innvestigate's z+ rule.
Max pooling passes the probability to the winner (the gradient mapping).

Contrastive Excitation BP replaces the rule of the final dense layer by
``(Z+ - N+) m_k`` (eq. 16) where ``N+`` is ``Z+`` computed on the negated
weights ``-W``; every other layer uses Excitation BP.

Both are innvestigate ``LRP`` subclasses, so rule-aware handling of
``Add``/``BatchNormalization`` composed onto LRP classes applies to them;
:meth:`ExcitationBackprop._rule_for_residual_layer` names the rule such layers
should follow (the Excitation rule).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow.keras import layers as klayers

import innvestigate.analyzer.relevance_based.relevance_rule as rrule
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP

from .injection import InjectionMixin


class ExcitationRule(rrule.AlphaBetaRule):
    """The z+ rule without bias (eq. 5): alpha = 1, beta = 0, bias ignored."""

    def __init__(self, layer, state):
        super().__init__(layer, state, alpha=1, beta=0, bias=False)


class ContrastiveExcitationRule(rrule.AlphaBetaRule):
    """``(Z+ - N+) R`` for the final dense layer (eq. 16), without bias.

    ``N+`` is Z+ on the negated weights: ``[-w_ij h_i]^+ / sum_k [-w_kj h_k]^+``,
    which is innvestigate's normalised *negative* (inhibitor) contribution of
    the alpha-beta rule. So this is the alpha-beta rule with alpha = beta = 1,
    a setting innvestigate's parameter check (alpha - beta = 1) does not
    admit, hence beta is set after construction.
    """

    def __init__(self, layer, state):
        super().__init__(layer, state, alpha=1, beta=0, bias=False)
        self._beta = 1


def final_dense_layer(model):
    """The Dense layer that computes the model's single output (the logits);
    layers without weights after it (e.g. a linear Activation) are skipped."""
    layer = model.outputs[0]._keras_history[0]
    while not layer.weights and len(layer._inbound_nodes) == 1:
        inbound = layer._inbound_nodes[0].inbound_layers
        if isinstance(inbound, (list, tuple)):
            if len(inbound) != 1:
                break
            inbound = inbound[0]
        if isinstance(inbound, klayers.InputLayer):
            break
        layer = inbound
    if not isinstance(layer, klayers.Dense):
        raise ValueError(
            f"contrastive Excitation BP needs a Dense output layer; model "
            f"{model.name!r} ends in {layer.name!r} ({type(layer).__name__})")
    return layer


class ExcitationBackprop(InjectionMixin, LRP):
    """Excitation Backprop: the z+ rule without bias, started from a one-hot
    vector at the explained logit. ``propagate`` applies the same rule below
    any layer."""

    rule = ExcitationRule

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=self._rules_for(model), bn_layer_rule=self.rule,
                         **kwargs)
        self._do_model_checks()

    def _rules_for(self, model):
        return self.rule

    def _head_mapping(self, X):
        return tf.ones_like(X)

    def _rule_for_residual_layer(self, layer):
        """The rule that ``Add``/``BatchNormalization`` layers should follow."""
        return self.rule


class ContrastiveExcitationBackprop(ExcitationBackprop):
    """Contrastive Excitation BP (eq. 16): ``(Z+ - N+) m_k`` at the final
    dense layer, Excitation BP below.

    ``propagate`` from the logits applies the contrastive final rule; from any
    lower layer it is the Excitation BP chain (the rules are per layer).
    """

    def _rules_for(self, model):
        final = final_dense_layer(model)
        return [(lambda layer: layer is final, ContrastiveExcitationRule),
                (lambda layer: True, self.rule)]
