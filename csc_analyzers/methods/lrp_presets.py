"""LRP composite presets "CMP" (Kohlbrenner et al., 2019; Lapuschkin et al., 2017).

LRP-epsilon for Dense layers and LRP alpha-beta for convolutions (section 5 of
the paper). The paper's code uses innvestigate's sequential presets A
(alpha 1, beta 0) and B (alpha 2, beta 1) with ``epsilon=1e-10``; these
classes are those presets with that epsilon as default, relevance injection
(``propagate``), and ``BatchNormalization`` passed through the convolution
rule. :meth:`_rule_for_residual_layer` tells rule-aware ``Add``/BN mappings to
follow the convolution rule too.

The alpha-beta rule puts the full bias of a convolution (and a BN shift) into
both the activator's and the inhibitor's denominator, as innvestigate and the
paper's code do; ``alpha_beta_bias="split"`` (an option of every LRP analyzer,
see :class:`residual_support.ResidualRulesMixin`) gives the positive part to
the activator and the negative part to the inhibitor instead (Zennit's
convention). On the CIFAR net the maps of the two conventions differ by a
median relative L2 of about 8 % (a1b0) and 54 % (a2b1) over 8 built-in images
(``scripts/measure_rule_conventions.py``).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.analyzer.relevance_based.relevance_rule as rrule
from innvestigate.analyzer.relevance_based.relevance_analyzer import (
    LRPSequentialPresetA,
    LRPSequentialPresetB,
)

from ..injection import InjectionMixin

CMP_EPSILON = 1e-10


class _CMPMixin:
    conv_rule = None

    def _rule_for_residual_layer(self, layer):
        """The rule that ``Add``/``BatchNormalization`` layers should follow:
        the convolution rule."""
        return self.conv_rule


class LRPCMPAlpha1Beta0(_CMPMixin, InjectionMixin, LRPSequentialPresetA):
    """LRP CMP a1b0: epsilon rule (``epsilon``, default 1e-10) on Dense layers,
    alpha1-beta0 (with bias) on convolutions."""

    conv_rule = rrule.Alpha1Beta0Rule

    def __init__(self, model, *args, epsilon: float = CMP_EPSILON, **kwargs):
        kwargs.setdefault("bn_layer_rule", self.conv_rule)
        super().__init__(model, *args, epsilon=epsilon, **kwargs)


class LRPCMPAlpha2Beta1(_CMPMixin, InjectionMixin, LRPSequentialPresetB):
    """LRP CMP a2b1: epsilon rule (``epsilon``, default 1e-10) on Dense layers,
    alpha2-beta1 (with bias) on convolutions."""

    conv_rule = rrule.Alpha2Beta1Rule

    def __init__(self, model, *args, epsilon: float = CMP_EPSILON, **kwargs):
        kwargs.setdefault("bn_layer_rule", self.conv_rule)
        super().__init__(model, *args, epsilon=epsilon, **kwargs)
