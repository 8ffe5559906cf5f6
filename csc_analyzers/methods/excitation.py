"""Excitation Backprop (Zhang et al., 2018) and its contrastive form (eq. 16).

Excitation BP propagates *marginal winning probabilities* top-down with the
z+ rule without bias (the paper's eq. 5): the input neuron ``i`` of a layer
receives the share ``[w_ij h_i]^+ / sum_k [w_kj h_k]^+`` of the probability of
output neuron ``j``. The backward pass starts from a one-hot vector at the
explained logit (probability 1 for the class, eq. 16's ``m_k``). For non-negative
inputs (every layer after a ReLU) this is Zhang et al.'s rule with the
positive weights; at a first layer with signed inputs the positive
contributions ``[w_ij x_i]^+`` of eq. 5 are used, as in innvestigate's z+ rule.
Max pooling passes the probability to the winner (the gradient mapping).

What is conserved. The rule hands all of a unit's relevance to its inputs
when the unit has a positive contribution ``[w_ij h_i]^+ > 0``; a unit
without one (its output is positive only through its bias) keeps its
relevance, which is lost. So the map sums to 1 exactly on a network whose
every positive unit has a positive contribution: without biases, or with
biases too small to carry a unit alone. Through a ``BatchNormalization``
layer (``create_analyzer(..., canonize=False)``, the default) the rule sees
BN as ``k x + b`` with the bias ignored, so relevance is also lost (a) at
every unit whose BN shift ``b`` alone makes it positive (``k x <= 0 < k x + b``)
and (b) below a negative BN scale ``k``: the unit is positive because ``x``
is negative, and the convolution below hands relevance only along ``x``'s
positive contributions, which may not exist. ``canonize=True`` (BN folded into
the convolutions) removes (b) and turns (a) into the bias loss above.
Measured on the test suite's small ResNet (``tests/residual_nets.py``, random
weights and BN statistics, 3 images): map sums 0.56-0.73 with
``canonize=False``, 0.95-0.98 with ``canonize=True``; with zero biases and BN
shifts but BN scales of both signs 0.83-0.99 vs. exactly 1; with zero shifts
and positive scales exactly 1 in both modes. The analyzer warns
(``UserWarning``) when the model it explains contains ``BatchNormalization``.
The same holds for LRP z+ (the same rule started from the logit instead of 1).

Contrastive Excitation BP replaces the rule of the final dense layer by
``(Z+ - N+) m_k`` (eq. 16) where ``N+`` is ``Z+`` computed on the negated
weights ``-W``; every other layer uses Excitation BP.

Both are innvestigate ``LRP`` subclasses, so rule-aware handling of
``Add``/``BatchNormalization`` composed onto LRP classes applies to them;
:meth:`ExcitationBackprop._rule_for_residual_layer` names the rule such layers
should follow (the Excitation rule).
"""
from __future__ import annotations

import warnings

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow.keras import layers as klayers

import innvestigate.analyzer.relevance_based.relevance_rule as rrule
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP

from ..injection import InjectionMixin


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
    any layer. The map sums to 1 only where no unit is positive through its
    bias alone; on a model with ``BatchNormalization`` it loses more (see the
    module docstring) and a ``UserWarning`` says so: analyse
    ``create_analyzer(name, model, canonize=True)`` to fold BN first."""

    rule = ExcitationRule

    def __init__(self, model, **kwargs):
        if any(isinstance(layer, klayers.BatchNormalization) for layer in model.layers):
            warnings.warn(
                f"{type(self).__name__}: model {model.name!r} has BatchNormalization layers; "
                "the rule ignores their shift and follows the convolution's positive "
                "contributions below a negative BN scale, so the map sums to less than 1; "
                "create_analyzer(..., canonize=True) folds BN into the convolutions, which "
                "conserves the relevance except at units positive by their bias alone",
                UserWarning, stacklevel=3)
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
