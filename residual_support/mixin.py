"""Mixins that make innvestigate analyzers run on residual networks.

:class:`ResidualRulesMixin` goes before an innvestigate ``LRP`` or
``DeepTaylor`` class in the bases. It

1. checks the model's layers before anything is built
   (:func:`residual_support.layers.check_model`) and drops innvestigate's
   warning-level model checks, which raise ``NotImplementedError`` on any
   layer outside innvestigate's convnet list (a ``ReLU`` layer, say);
2. registers reverse mappings that pass relevance through ``Add``,
   ``BatchNormalization`` and average pooling as ``residual_rule`` says
   (:data:`residual_support.rules.RESIDUAL_RULES`): ``"analyzer"`` applies
   the analyzer's rule for those layers, :meth:`_rule_for_residual_layer`
   (default: the rule the analyzer applies to a convolution in the middle of
   the network; Deep Taylor: z+) through all three; ``"paper"`` does so
   through ``Add`` and ``BatchNormalization`` only and takes innvestigate's
   rule through average pooling (LRP: z-rule; Deep Taylor: the gradient), as
   the paper's code (``monkey_patch_lrp_resnet.py`` patched only the Add and
   BN reverse layers); ``"innvestigate"`` gives innvestigate 2.1.2's numbers (LRP: z-rule
   through Add and average pooling; Deep Taylor: the gradient there and
   the W**2 rule on BatchNormalization), except that LRP's
   rule through BatchNormalization (innvestigate's ``bn_layer_rule``, else
   the z-rule) is computed on the exact affine map of the layer:
   innvestigate's fused BN layer is wrong (``sqrt(var**2 + eps)`` and
   ``beta - mean / sqrt(...)``), see :mod:`csc_analyzers.deviations`. The
   default is the class attribute ``default_residual_rule``: ``"innvestigate"`` for the classes the
   analyzer table holds under innvestigate's names, ``"analyzer"`` for the
   project's own names; separate ``ReLU`` layers pass relevance on
   unchanged like ``Activation`` layers; padding, dropout, flatten and max
   pooling pass it along the gradient;
3. computes the alpha-beta family (alpha1-beta0, alpha2-beta1, alpha5-beta4,
   z+, Deep Taylor's z+) on Dense/Conv layers with
   :func:`residual_support.rules.alpha_beta`, which leaves out the terms of
   negative inputs after a ReLU and the beta pass when beta = 0 (same numbers
   as innvestigate's rules);
4. for bounded Deep Taylor, applies the z^B rule to the first kernel layer
   also when padding sits between it and the input (ResNet-50's ``conv1``);
5. with ``add_relevance_clip=(low, high)``, clips the relevance leaving every
   ``Add`` layer (the relevance of each of its inputs) to [low, high], as the
   paper's code did on ResNet-50 with (0, 1000) (:func:`check_add_relevance_clip`);
6. with ``alpha_beta_bias="split"``, the alpha-beta family gives the positive
   part of a layer's bias to the activator and the negative part to the
   inhibitor (Zennit's convention) instead of the full bias to both
   (``"shared"``, the default: innvestigate's and the paper's convention);
   see :mod:`residual_support.rules`.

:class:`GradientResidualMixin` is the counterpart for gradient-type analyzers
(Gradient, Guided Backprop, Deconvnet and their subclasses): the model check,
and ``Deconvnet``'s rectification on separate ``ReLU`` layers.
"""
from __future__ import annotations

import dataclasses
import warnings

from . import _tf  # noqa: F401  (graph mode first)

import innvestigate.backend.checks as ichecks
from innvestigate.analyzer.deeptaylor import BoundedDeepTaylor, DeepTaylor
from innvestigate.analyzer.gradient_based import Deconvnet
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP, LRP_RULES
from innvestigate.analyzer.relevance_based.relevance_rule import BoundedRule
import numpy as np
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers as klayers

from .layers import check_model, family_of, is_first_kernel_layer, nonnegative_inputs
from .linear import AddView, BatchNormView, KernelView, PoolView
from .modern import add_modern_mappings
from .rules import (W_SQUARE, Z, Z_NO_BIAS, Z_PLUS, ResidualRule, RuleSpec, check_bias_convention,
                    check_residual_rule, describe_rule)

#: Priority of the residual mappings among innvestigate's conditional mappings
#: (innvestigate's own use -1, bounded DTD's first layer 10).
PRIORITY = 5

_POOLING = (klayers.AveragePooling1D, klayers.AveragePooling2D, klayers.AveragePooling3D,
            klayers.GlobalAveragePooling1D, klayers.GlobalAveragePooling2D,
            klayers.GlobalAveragePooling3D)
_ALONG_GRADIENT = (
    klayers.ZeroPadding1D, klayers.ZeroPadding2D, klayers.ZeroPadding3D,
    klayers.Cropping1D, klayers.Cropping2D, klayers.Cropping3D,
    klayers.Dropout, klayers.SpatialDropout1D, klayers.SpatialDropout2D,
    klayers.SpatialDropout3D, klayers.Flatten, klayers.Reshape, klayers.Permute,
    klayers.MaxPooling1D, klayers.MaxPooling2D, klayers.MaxPooling3D,
    klayers.GlobalMaxPooling1D, klayers.GlobalMaxPooling2D, klayers.GlobalMaxPooling3D,
    klayers.Concatenate,
)
_KERNEL_LAYERS = (klayers.Dense, klayers.Conv1D, klayers.Conv2D, klayers.Conv3D)


def _is_plain_kernel_layer(layer) -> bool:
    """Dense / Conv (channels last), not a transposed or separable variant."""
    return (type(layer) in _KERNEL_LAYERS
            and getattr(layer, "data_format", "channels_last") == "channels_last")


def _pass_on(Xs, Ys, reversed_Ys, reverse_state):
    """Relevance through an elementwise activation layer: unchanged."""
    return reversed_Ys


def _overflow_message(analyzer) -> str:
    message = (f"{_method_name(analyzer)}: the relevance map has non-finite values "
               "(float32 overflow or 0/0)")
    if any(isinstance(layer, klayers.BatchNormalization) for layer in analyzer._model.layers):
        message += ("; an alpha-beta rule with alpha > 1 multiplies the relevance of every "
                    "BatchNormalization unit by alpha or -beta, so it grows exponentially "
                    "with depth: create_analyzer(..., canonize=True) folds "
                    "BatchNormalization into the convolutions first")
    return message


def check_add_relevance_clip(value, method: str = "analyzer"):
    """``None`` or ``(low, high)`` as two floats with ``low < high``; a
    ValueError naming ``method`` and the value otherwise."""
    if value is None:
        return None
    problem = None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        problem = "expected None or a pair (low, high)"
    elif not all(isinstance(v, (int, float, np.integer, np.floating))
                 and not isinstance(v, (bool, np.bool_)) for v in value):
        problem = "low and high must be numbers"
    elif not all(np.isfinite(float(v)) for v in value):
        problem = "low and high must be finite"
    elif not float(value[0]) < float(value[1]):
        problem = "low must be smaller than high"
    if problem:
        raise ValueError(f"{method}: add_relevance_clip={value!r}: {problem}, "
                         "e.g. (0, 1000) as in the paper's code")
    return float(value[0]), float(value[1])


def _clipped(apply, low: float, high: float):
    """A reverse mapping that clips each relevance ``apply`` returns to [low, high]."""
    def mapping(Xs, Ys, Rs, reverse_state):
        return [tf.clip_by_value(r, low, high) for r in apply(Xs, Ys, Rs, reverse_state)]
    return mapping


def _method_name(analyzer) -> str:
    return getattr(type(analyzer), "method_name", None) or type(analyzer).__name__


class ResidualRulesMixin:
    """Rule-aware Add / BatchNormalization / pooling support for LRP and
    Deep Taylor analyzers (see the module docstring). Subclasses with
    per-layer rules override :meth:`_rule_for_residual_layer`.

    ``add_relevance_clip``: None (default) or ``(low, high)``. With a pair,
    the relevance the rule hands from an ``Add`` layer to each of its inputs
    is clipped elementwise to [low, high] (``analyze`` and ``propagate``
    alike). This breaks relevance conservation on purpose: every value is
    replaced by ``min(max(r, low), high)``, so relevance above ``high`` is
    dropped and, with ``low = 0``, all negative relevance is dropped at
    every ``Add`` (no negative relevance passes a skip connection or a
    residual branch); the map no longer sums to the explained output. It
    exists to reproduce the paper's code, which clipped to (0, 1000) on
    ResNet-50 for the alpha-beta rules and the CMP composites (the ``paper``
    recipe of :mod:`csc_analyzers.registry`). Only the ``Add``'s share is
    clipped: an input that also feeds other layers (an identity shortcut)
    adds the unclipped relevance from those layers. Default None: the maps
    are those of the analyzer without this option, bit for bit.

    ``residual_rule``: ``"analyzer"`` or ``"innvestigate"`` (None: the class's
    ``default_residual_rule``), see :data:`residual_support.rules.RESIDUAL_RULES`
    and the module docstring.

    ``alpha_beta_bias``: the bias convention of every alpha-beta rule the
    analyzer applies (on Dense / Conv layers and through ``Add`` /
    ``BatchNormalization``): ``"shared"`` (default) puts the layer's full
    bias b into both the activator's and the inhibitor's denominator, as
    innvestigate 2.1.2 and the paper's code do; ``"split"`` puts b+ = max(b, 0)
    into the activator's and b- = min(b, 0) into the inhibitor's, as the
    textbook rule (the bias as one more input) and Zennit do. It changes
    nothing for rules that ignore the bias (z+, Excitation BP, contrastive
    LRP, Deep Taylor) and for non-alpha-beta rules (the CMP presets' epsilon
    rule on Dense layers). With "split", a Dense / Conv layer the fast rule
    cannot compute (channels_first, transposed or separable convolutions)
    raises ValueError instead of falling back to innvestigate's rule.
    """

    #: ``residual_rule`` when none is given (see the module docstring).
    default_residual_rule = "analyzer"

    def __init__(self, model, *args, add_relevance_clip=None, alpha_beta_bias="shared",
                 residual_rule=None, **kwargs):
        if not isinstance(self, (LRP, DeepTaylor)):
            raise TypeError(f"{type(self).__name__}: ResidualRulesMixin needs an "
                            "innvestigate LRP or DeepTaylor class after it in the bases")
        self._residual_rule = check_residual_rule(
            type(self).default_residual_rule if residual_rule is None else residual_rule,
            _method_name(self))
        self._add_relevance_clip = check_add_relevance_clip(add_relevance_clip,
                                                            _method_name(self))
        self._alpha_beta_bias = check_bias_convention(alpha_beta_bias, _method_name(self))
        if not kwargs.get("disable_model_checks", False):
            check_model(model, _method_name(self))
        self._residual_probes = {}
        super().__init__(model, *args, **kwargs)

    def _get_state(self):
        state = super()._get_state()
        state["add_relevance_clip"] = self._add_relevance_clip
        state["alpha_beta_bias"] = self._alpha_beta_bias
        state["residual_rule"] = self._residual_rule
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        clip = state.pop("add_relevance_clip", None)
        bias_convention = state.pop("alpha_beta_bias", "shared")
        residual_rule = state.pop("residual_rule", None)
        kwargs = super()._state_to_kwargs(state)
        kwargs["residual_rule"] = residual_rule
        kwargs["add_relevance_clip"] = clip
        kwargs["alpha_beta_bias"] = bias_convention
        return kwargs

    def analyze(self, X, *args, **kwargs):
        """innvestigate's ``analyze``; warns when the map is not finite."""
        result = super().analyze(X, *args, **kwargs)
        values = result.values() if isinstance(result, dict) else [result]
        if not all(np.isfinite(np.asarray(v)).all() for v in values):
            warnings.warn(_overflow_message(self), RuntimeWarning, stacklevel=2)
        return result

    # -- model checks -------------------------------------------------------
    def _do_model_checks(self):
        """innvestigate's exception-level checks only (softmax, Lambda, ReLU
        only); its warning-level checks raise on supported layers and are
        covered by :func:`check_model`."""
        self._model_checks = [c for c in self._model_checks if c["check_type"] != "warning"]
        super()._do_model_checks()

    # -- rule choice --------------------------------------------------------
    def _rule_for_residual_layer(self, layer):
        """The rule for an Add, BatchNormalization or average-pooling layer:
        an innvestigate rule (name or class) or a :class:`RuleSpec`.
        Default: Deep Taylor's z+, LRP's rule for a convolution."""
        if isinstance(self, DeepTaylor):
            return Z_PLUS
        return self._conv_rule()

    def _conv_rule(self):
        if not self._rules_use_conditions:
            raise TypeError(
                f"{type(self).__name__}: a rule list without conditions gives no rule for "
                "Add / BatchNormalization layers; give rules as [(condition, rule), ...] "
                "or define _rule_for_residual_layer(layer)")
        probe = self._probe("conv")
        for condition, rule in self._rules:
            if condition(probe):
                return rule
        raise TypeError(f"{type(self).__name__}: none of its rules applies to a Conv2D "
                        "layer; define _rule_for_residual_layer(layer)")

    def _probe(self, kind: str):
        """Small layers to ask rule conditions and rule classes about: a Dense
        layer, and a Conv2D that follows a ReLU (not an input layer)."""
        if kind not in self._residual_probes:
            if kind == "dense":
                layer = klayers.Dense(2)
                layer(keras.Input((2,)))
            else:
                x = keras.Input((3, 3, 2))
                layer = klayers.Conv2D(2, 1)
                layer(klayers.ReLU()(x))
            self._residual_probes[kind] = layer
        return self._residual_probes[kind]

    def _describe(self, rule) -> RuleSpec:
        """:func:`describe_rule`, once per rule of this analyzer, with the
        analyzer's bias convention for an alpha-beta rule that uses the bias."""
        cache = self.__dict__.setdefault("_residual_specs", {})
        key = rule if isinstance(rule, (str, type, RuleSpec)) else id(rule)
        if key not in cache:
            spec = describe_rule(rule, self._probe("dense"))
            convention = getattr(self, "_alpha_beta_bias", "shared")
            if spec.kind == "alpha_beta" and spec.bias and spec.bias_convention != convention:
                spec = dataclasses.replace(spec, bias_convention=convention)
            cache[key] = spec
        return cache[key]

    def _residual_spec(self, layer) -> RuleSpec:
        return self._describe(self._rule_for_residual_layer(layer))

    # -- mappings -------------------------------------------------------------
    def _residual_mapping(self, make_view, clip=None, spec=None):
        """The mapping applying ``spec`` (default: the analyzer's rule for the
        layer) to the layer seen through ``make_view``; clipped if ``clip``."""
        def mapping(layer, _reverse_state):
            rule = ResidualRule(make_view(layer), spec or self._residual_spec(layer),
                                nonnegative=nonnegative_inputs(layer))
            return rule.apply if clip is None else _clipped(rule.apply, *clip)
        return mapping

    def _add_residual_mappings(self, add):
        """Mappings for Add, BatchNormalization and average pooling as
        ``residual_rule`` says; ``add`` registers one."""
        clip = self._add_relevance_clip
        if self._residual_rule in ("analyzer", "paper"):
            add(ichecks.is_add_layer, self._residual_mapping(lambda layer: AddView(), clip),
                PRIORITY, name="residual_add")
            add(ichecks.is_batch_normalization_layer, self._residual_mapping(BatchNormView),
                PRIORITY, name="residual_batch_norm")
            if self._residual_rule == "analyzer":
                pooling = self._residual_mapping(PoolView)
            elif isinstance(self, DeepTaylor):
                pooling = self._gradient_reverse_mapping
            else:
                pooling = self._residual_mapping(PoolView, spec=Z_NO_BIAS)
            add(lambda layer: isinstance(layer, _POOLING), pooling, PRIORITY,
                name="residual_average_pooling")
            return
        if isinstance(self, DeepTaylor):
            # innvestigate's gradient through Add and average pooling, and its
            # W**2 rule on BatchNormalization on the exact affine map (a relevance
            # pass-through per channel; innvestigate's fused layer is wrong)
            gradient = self._gradient_reverse_mapping
            add(ichecks.is_add_layer, gradient if clip is None else _clipped(gradient, *clip),
                PRIORITY, name="residual_add_gradient")
            add(lambda layer: isinstance(layer, _POOLING), gradient, PRIORITY,
                name="residual_average_pooling_gradient")
            add(ichecks.is_batch_normalization_layer,
                self._residual_mapping(BatchNormView, spec=W_SQUARE), PRIORITY,
                name="residual_batch_norm_w_square")
            return
        add(ichecks.is_add_layer,
            self._residual_mapping(lambda layer: AddView(), clip, spec=Z_NO_BIAS),
            PRIORITY, name="residual_add_z")
        add(lambda layer: isinstance(layer, _POOLING),
            self._residual_mapping(PoolView, spec=Z_NO_BIAS), PRIORITY,
            name="residual_average_pooling_z")
        # innvestigate's rule choice for BatchNormalization (its bn_layer_rule,
        # else the z-rule), computed on the exact affine map of the layer
        # (a rule with no RuleSpec, e.g. the presets' AlphaBetaX2m100Rule, keeps
        # innvestigate's own BN mapping)
        bn_rule = getattr(self, "_bn_layer_rule", None)
        try:
            bn_spec = Z if bn_rule is None else self._describe(bn_rule)
        except TypeError:
            return
        add(ichecks.is_batch_normalization_layer,
            self._residual_mapping(BatchNormView, spec=bn_spec),
            PRIORITY, name="residual_batch_norm_exact")

    def _fast_kernel_mapping(self, layer, spec: RuleSpec):
        """The fast alpha-beta rule for a Dense/Conv layer, or None."""
        if spec.kind != "alpha_beta" or not _is_plain_kernel_layer(layer):
            return None
        return ResidualRule(KernelView(layer), spec,
                            nonnegative=nonnegative_inputs(layer)).apply

    def _create_analysis(self, *args, **kwargs):
        add = self._add_conditional_reverse_mapping
        self._add_residual_mappings(add)
        add(lambda layer: isinstance(layer, _ALONG_GRADIENT), self._gradient_reverse_mapping,
            PRIORITY, name="residual_along_gradient")
        if isinstance(self, DeepTaylor):
            add(lambda layer: (_is_plain_kernel_layer(layer)
                               and ichecks.contains_activation(layer)),
                self._deep_taylor_kernel_mapping, PRIORITY, name="residual_dtd_z_plus")
        if isinstance(self, BoundedDeepTaylor):
            add(is_first_kernel_layer, self._bounded_first_layer_mapping, 11,
                name="residual_dtd_first_layer_bounded")
        if isinstance(self, LRP):
            add(lambda layer: isinstance(layer, klayers.ReLU), _pass_on, PRIORITY,
                name="residual_relu_layer")
        add_modern_mappings(self, PRIORITY)
        return super()._create_analysis(*args, **kwargs)

    def _deep_taylor_kernel_mapping(self, layer, _reverse_state):
        return self._fast_kernel_mapping(layer, Z_PLUS)

    def _bounded_first_layer_mapping(self, layer, reverse_state):
        low, high = self._bounds_low, self._bounds_high
        return BoundedRule(layer, reverse_state, low=low, high=high).apply

    def create_rule_mapping(self, layer, reverse_state):
        """LRP's rule choice for a kernel layer, computed with the fast
        alpha-beta rule where it applies."""
        if self._rules_use_conditions:
            rule = next((r for condition, r in self._rules if condition(layer)), None)
        else:
            rule = self._rules.pop()
        if rule is None:
            raise TypeError(f"{type(self).__name__}: no rule applies to layer "
                            f"{layer.name!r} ({type(layer).__name__})")
        try:
            spec = self._describe(rule)
        except TypeError:
            spec = None
        fast = self._fast_kernel_mapping(layer, spec) if spec is not None else None
        if fast is not None:
            return fast
        if (spec is not None and spec.kind == "alpha_beta" and spec.bias
                and spec.bias_convention != "shared" and getattr(layer, "use_bias", False)):
            raise ValueError(
                f"{_method_name(self)}: alpha_beta_bias={spec.bias_convention!r} is computed "
                f"only for Dense / Conv layers (channels last); layer {layer.name!r} "
                f"({type(layer).__name__}) would get innvestigate's shared bias")
        if isinstance(rule, str):
            rule = LRP_RULES[rule]
        return rule(layer, reverse_state).apply


def _deconvnet_relu_layer(Xs, Ys, reversed_Ys, reverse_state):
    """Deconvnet through a separate ReLU layer: rectify the backward signal."""
    return [tf.nn.relu(r) for r in reversed_Ys]


class GradientResidualMixin:
    """Model check for gradient-type analyzers, and Deconvnet's rule on
    separate ``ReLU`` layers (innvestigate's copies the layer without its
    activation, which a ``ReLU`` layer cannot do)."""

    def __init__(self, model, *args, **kwargs):
        if not kwargs.get("disable_model_checks", False):
            check_model(model, _method_name(self), family=family_of(type(self)))
        super().__init__(model, *args, **kwargs)

    def _create_analysis(self, *args, **kwargs):
        if isinstance(self, Deconvnet):
            self._add_conditional_reverse_mapping(
                lambda layer: isinstance(layer, klayers.ReLU), _deconvnet_relu_layer,
                PRIORITY, name="residual_deconvnet_relu_layer")
        return super()._create_analysis(*args, **kwargs)


__all__ = ["ResidualRulesMixin", "GradientResidualMixin", "PRIORITY",
           "check_add_relevance_clip"]
