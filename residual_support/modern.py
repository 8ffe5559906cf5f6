"""Reverse mappings of the rule-based analyzers for the layers of modern
Keras networks (MobileNet, EfficientNet, Xception, tutorial models).

:func:`add_modern_mappings` is called by
:class:`residual_support.ResidualRulesMixin` while it builds the analysis:

- ``DepthwiseConv2D`` and ``SeparableConv2D``: the analyzer's rule for the
  layer (the first of its ``(condition, rule)`` pairs that accepts the layer;
  Deep Taylor: z+), applied to :class:`~residual_support.linear.DepthwiseView`
  / :class:`~residual_support.linear.SeparableView` (a separable convolution
  is ONE linear map, its effective Conv2D kernel). A rule with no
  :class:`~residual_support.rules.RuleSpec` description (a custom class) and
  rule lists without conditions use innvestigate's rule class on the layer.
- ``Rescaling`` and ``Normalization``: the analyzer's rule for
  BatchNormalization, on the per-channel affine map (:func:`affine_view`).
  ``Rescaling(1/255)`` has no offset: every rule passes its relevance on
  unchanged (k x / (k x) = 1).
- ``Subtract``: the residual rule on ``W = [I, -I]``.
- ``Multiply`` as a gate (squeeze-excite): the product ``s * g`` hands all
  its relevance to the signal ``s`` and none to the gate ``g``, which is
  treated as a constant of the forward pass (the gate is the input broadcast
  to the output's shape, else the one out of a sigmoid,
  :func:`residual_support.layers.gate_index`). Conservation holds through
  the signal path; the gate's own branch receives no relevance.
- ``LeakyReLU``, ``PReLU``, ``ELU``, ``ThresholdedReLU`` layers (LRP): the
  relevance passes unchanged, as innvestigate does for ``Activation`` layers
  and for the activation fused into a Conv/Dense layer.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from innvestigate.analyzer.deeptaylor import DeepTaylor
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP
from tensorflow.keras import layers as klayers

from .layers import DEPTHWISE, SEPARABLE, gate_index, nonnegative_inputs
from .linear import DepthwiseView, SeparableView, SubtractView, affine_view
from .rules import Z_PLUS, ResidualRule

_PASS_ON = tuple(getattr(klayers, name) for name in ("LeakyReLU", "PReLU", "ELU",
                                                     "ThresholdedReLU"))
_NEW_AFFINE = (klayers.Rescaling, klayers.Normalization)


def _pass_on(Xs, Ys, reversed_Ys, reverse_state):
    return reversed_Ys


def _gate_mapping(layer, _reverse_state):
    gate = gate_index(layer)

    def mapping(Xs, Ys, Rs, reverse_state):
        return [tf.zeros_like(x) if i == gate else Rs[0] for i, x in enumerate(Xs)]
    return mapping


def _kernel_spec(analyzer, layer):
    """The RuleSpec of the analyzer's rule for ``layer``, or None when only
    innvestigate's rule class can say (custom rule, unconditioned rule list)."""
    if isinstance(analyzer, DeepTaylor):
        return Z_PLUS
    if not analyzer._rules_use_conditions:
        return None
    rule = next((r for condition, r in analyzer._rules if condition(layer)), None)
    if rule is None:
        return None
    try:
        return analyzer._describe(rule)
    except TypeError:
        return None


def _kernel_mapping(analyzer):
    def mapping(layer, reverse_state):
        spec = _kernel_spec(analyzer, layer)
        if spec is None:
            return analyzer.create_rule_mapping(layer, reverse_state)
        view = DepthwiseView(layer) if isinstance(layer, DEPTHWISE) else SeparableView(layer)
        return ResidualRule(view, spec, nonnegative=nonnegative_inputs(layer)).apply
    return mapping


def add_modern_mappings(analyzer, priority: int) -> None:
    """Register the mappings of the module docstring on ``analyzer`` (an
    LRP or Deep Taylor analyzer with :class:`ResidualRulesMixin`)."""
    add = analyzer._add_conditional_reverse_mapping
    add(lambda layer: isinstance(layer, DEPTHWISE + SEPARABLE), _kernel_mapping(analyzer),
        priority, name="modern_depthwise_separable")
    add(lambda layer: isinstance(layer, _NEW_AFFINE), analyzer._residual_mapping(affine_view),
        priority, name="modern_affine")
    add(lambda layer: isinstance(layer, klayers.Subtract),
        analyzer._residual_mapping(lambda layer: SubtractView()), priority,
        name="modern_subtract")
    add(lambda layer: isinstance(layer, klayers.Multiply) and gate_index(layer) is not None,
        _gate_mapping, priority, name="modern_multiply_gate")
    if isinstance(analyzer, LRP):
        add(lambda layer: isinstance(layer, _PASS_ON), _pass_on, priority,
            name="modern_elementwise_activation")


__all__ = ["add_modern_mappings"]
