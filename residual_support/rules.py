"""LRP / Deep Taylor rules for any layer seen as ``z = W x + b``.

One function, :func:`redistribute`, implements every rule of the
``x * W^T (R / Z)`` form (Bach et al. 2015; Montavon et al. 2017):

    Z = sum_t c_t W_t x_t (+ b),   R_x_t = c_t x_t * W_t^T (R / Z)

with the terms ``t`` (a weight part, the inputs it multiplies, a sign c_t)
chosen by the rule:

- z (epsilon): one term, W and x (innvestigate's ZRule / EpsilonRule);
- alpha-beta: activator terms W+ x+ and W- x-, inhibitor terms W- x+ and
  W+ x-, combined as alpha*act - beta*inh. Where the layer's bias goes is
  the rule's *bias convention* (:data:`BIAS_CONVENTIONS`): ``"shared"``
  (default) puts the full bias b in both the activator's and the
  inhibitor's Z, as innvestigate's AlphaBetaRule does and the paper's code
  used; ``"split"`` gives b+ = max(b, 0) to the activator and
  b- = min(b, 0) to the inhibitor (Bach et al. 2015's rule with the bias as
  an extra input; Zennit's AlphaBeta), so the activator's Z is >= 0 and the
  inhibitor's <= 0 and neither crosses zero. A Z that is exactly 0 gives
  relevance 0 in both. When the inputs are non-negative by construction
  (after a ReLU) the x- terms are zero and are not built; with beta = 0 the
  inhibitor pass is not built;
- z+ (= alpha 1, beta 0, no bias) and innvestigate's ZPlusFast (W+ x);
- bounded (DTD's z^B): W x - W+ low - W- high;
- W**2 and flat: ``R_x = W_sq^T (R / (W_sq 1))`` (:func:`square_rule`).

The numbers equal innvestigate 2.1.2's rules on Dense/Conv layers (tested);
:class:`ResidualRule` applies them to any :class:`~residual_support.linear.LinearView`.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _tf  # noqa: F401  (graph mode first)

import innvestigate.analyzer.relevance_based.relevance_rule as rrule
import innvestigate.backend as ibackend
import innvestigate.backend.graph as igraph
import tensorflow as tf

KINDS = ("z", "epsilon", "alpha_beta", "zplus_fast", "bounded", "w_square", "flat")
#: Where the alpha-beta rule puts the bias: "shared" (full b in the activator's
#: and the inhibitor's Z; innvestigate, the paper) or "split" (b+ / b-).
BIAS_CONVENTIONS = ("shared", "split")

#: The ``residual_rule`` choices: which rule passes relevance through ``Add``,
#: ``BatchNormalization`` and (global) average pooling.
RESIDUAL_RULES = {
    "innvestigate": "innvestigate 2.1.2's handling: LRP takes the z-rule (no bias) through "
                    "Add and average pooling, whatever its rule on kernel layers, and its "
                    "bn_layer_rule (else the z-rule) through BatchNormalization, computed "
                    "on the layer's exact affine map; "
                    "Deep Taylor takes the gradient through Add and average pooling and "
                    "the W**2 rule on BatchNormalization (exact affine map)",
    "analyzer": "the analyzer's own rule (its rule for a convolution; Deep Taylor: z+) "
                "through Add, BatchNormalization and average pooling, each seen as a "
                "linear layer",
    "paper": "the paper's code (monkey_patch_lrp_resnet.py): the analyzer's own rule "
             "through Add and BatchNormalization, and innvestigate's rule through "
             "average pooling (LRP: the z-rule; Deep Taylor: the gradient)",
}


def check_residual_rule(value, method: str = "analyzer") -> str:
    """``value`` if it is a key of :data:`RESIDUAL_RULES`; a ValueError naming
    ``method``, the value and the choices otherwise."""
    if not isinstance(value, str) or value not in RESIDUAL_RULES:
        raise ValueError(
            f"{method}: residual_rule={value!r} is not valid; choose one of "
            f"{list(RESIDUAL_RULES)} ('innvestigate': innvestigate 2.1.2's rules through "
            "Add / BatchNormalization / average pooling; 'analyzer': the analyzer's own "
            "rule there; 'paper': the analyzer's own rule through Add and BN, "
            "innvestigate's through average pooling, as the paper's code)")
    return value


def check_bias_convention(value, method: str = "alpha-beta rule") -> str:
    """``value`` if it is one of :data:`BIAS_CONVENTIONS`; a ValueError naming
    ``method`` and the value otherwise."""
    if not isinstance(value, str) or value not in BIAS_CONVENTIONS:
        raise ValueError(
            f"{method}: alpha_beta_bias={value!r} is not a bias convention; valid: "
            "'shared' (full bias in the activator's and the inhibitor's denominator, "
            "innvestigate / the paper) or 'split' (positive part of the bias to the "
            "activator, negative part to the inhibitor, as Zennit)")
    return value


@dataclass(frozen=True)
class RuleSpec:
    """A rule and its parameters; ``bias`` puts the layer's bias into Z,
    ``bias_convention`` (alpha-beta only) says how: see :data:`BIAS_CONVENTIONS`."""

    kind: str
    epsilon: float = 1e-7
    alpha: float = 1.0
    beta: float = 0.0
    bias: bool = True
    low: float = -1.0
    high: float = 1.0
    bias_convention: str = "shared"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; valid: {KINDS}")
        check_bias_convention(self.bias_convention)


Z = RuleSpec("z")
#: innvestigate's z-rule through Add and average pooling (no bias).
Z_NO_BIAS = RuleSpec("z", bias=False)
#: innvestigate Deep Taylor's rule on BatchNormalization.
W_SQUARE = RuleSpec("w_square", bias=False)
Z_PLUS = RuleSpec("alpha_beta", alpha=1.0, beta=0.0, bias=False)


def _safe_divide(r, z):
    return ibackend.safe_divide(r, z)


def _same_sign_divide(r, z):
    """``r / z``, 0 where ``z`` is 0, in one op (``safe_divide`` takes five).
    For alpha-beta's Z+ and Z- (terms of one sign) ``z = 0`` without bias
    means every term is 0, and both give the same relevances; with a bias,
    they differ only where the terms cancel the bias exactly, where
    ``safe_divide`` would multiply the relevance by 1e7."""
    return tf.math.divide_no_nan(r, z)


def _epsilon_divide(epsilon):
    def divide(r, z):
        sign = tf.cast(z >= 0, z.dtype) * 2 - 1
        return r / (z + sign * epsilon)
    return divide


def redistribute(view, terms, relevance, *, bias: bool, divide=_safe_divide,
                 bias_part: str = "all"):
    """Relevance of the inputs for ``terms`` = [(part, xs, sign), ...]:
    ``R_x = sum_t sign_t x_t * W_t^T (R / Z)``, ``Z = sum_t sign_t W_t x_t (+ b)``;
    ``bias_part`` "pos" / "neg" puts only max(b, 0) / min(b, 0) into Z.
    Returns one tensor per input (summed over the terms)."""
    outputs = []
    for part, xs, sign in terms:
        z = view(xs, part)
        if z is not None:
            outputs.append((xs, sign, z))
    n_inputs = len(terms[0][1])
    b = view.bias() if bias else None
    if b is not None and bias_part != "all":
        b = tf.nn.relu(b) if bias_part == "pos" else -tf.nn.relu(-b)
    if not outputs:
        return [tf.zeros_like(x) for x in terms[0][1]][:n_inputs]
    total = None
    for _xs, sign, z in outputs:
        signed = z if sign > 0 else -z
        total = signed if total is None else total + signed
    if b is not None:
        total = total + b
    s = divide(relevance, total)
    result = [None] * n_inputs
    for xs, sign, z in outputs:
        grads = tf.gradients(z, xs, grad_ys=s, stop_gradients=xs)
        for i, (x, g) in enumerate(zip(xs, grads)):
            term = x * g if sign > 0 else -(x * g)
            result[i] = term if result[i] is None else result[i] + term
    return result


def square_rule(view, xs, relevance, part: str):
    """W**2 ("square") or flat rule: ``R_x = W_p^T (R / (W_p 1))``."""
    y = view(xs, part)
    ones = [tf.ones_like(x) for x in xs]
    s = ibackend.safe_divide(relevance, view(ones, part))
    return tf.gradients(y, xs, grad_ys=s, stop_gradients=xs)


def apply_rule(spec: RuleSpec, view, xs: list, relevance, *, nonnegative: bool = False):
    """Relevance of the inputs ``xs`` of the layer ``view`` under ``spec``."""
    if spec.kind == "z":
        return redistribute(view, [("all", xs, 1)], relevance, bias=spec.bias)
    if spec.kind == "epsilon":
        return redistribute(view, [("all", xs, 1)], relevance, bias=spec.bias,
                            divide=_epsilon_divide(spec.epsilon))
    if spec.kind == "zplus_fast":
        return redistribute(view, [("pos", xs, 1)], relevance, bias=False)
    if spec.kind == "bounded":
        lows = [tf.ones_like(x) * spec.low for x in xs]
        highs = [tf.ones_like(x) * spec.high for x in xs]
        terms = [("all", xs, 1), ("pos", lows, -1), ("neg", highs, -1)]
        return redistribute(view, terms, relevance, bias=False)
    if spec.kind in ("w_square", "flat"):
        return square_rule(view, xs, relevance, "square" if spec.kind == "w_square" else "flat")
    return alpha_beta(view, xs, relevance, alpha=spec.alpha, beta=spec.beta,
                      bias=spec.bias, nonnegative=nonnegative,
                      bias_convention=spec.bias_convention)


def alpha_beta(view, xs, relevance, *, alpha, beta, bias, nonnegative=False,
               bias_convention="shared"):
    """alpha * R(W+ x+, W- x-) - beta * R(W- x+, W+ x-); the x- terms are left
    out when ``nonnegative`` (they are zero), the beta pass when beta == 0.
    ``bias_convention`` "shared": b in both Z; "split": b+ in the activator's
    Z, b- in the inhibitor's."""
    split = check_bias_convention(bias_convention) == "split"
    if nonnegative:
        positive, negative = list(xs), None
    else:
        positive = [tf.nn.relu(x) for x in xs]
        negative = [-tf.nn.relu(-x) for x in xs]

    def terms(part_for_positive, part_for_negative):
        found = [(part_for_positive, positive, 1)]
        if negative is not None:
            found.append((part_for_negative, negative, 1))
        return found

    activator = redistribute(view, terms("pos", "neg"), relevance, bias=bias,
                             divide=_same_sign_divide, bias_part="pos" if split else "all")
    if not beta:
        return activator if alpha == 1 else [alpha * a for a in activator]
    inhibitor = redistribute(view, terms("neg", "pos"), relevance, bias=bias,
                             divide=_same_sign_divide, bias_part="neg" if split else "all")
    return [alpha * a - beta * b for a, b in zip(activator, inhibitor)]


class ResidualRule(igraph.ReverseMappingBase):
    """Reverse mapping applying ``spec`` to a layer seen through ``view``."""

    def __init__(self, view, spec: RuleSpec, *, nonnegative: bool = False):
        self._view = view
        self._spec = spec
        self._nonnegative = nonnegative

    def apply(self, Xs, Ys, Rs, reverse_state):
        if len(Rs) != 1:
            raise ValueError(
                f"layer {reverse_state['layer'].name!r}: expected one output, got {len(Rs)}")
        return apply_rule(self._spec, self._view, list(Xs), Rs[0],
                          nonnegative=self._nonnegative)


def _overrides(rule_class, base, name="apply") -> bool:
    return getattr(rule_class, name) is not getattr(base, name)


def describe_rule(rule, probe) -> RuleSpec:
    """The :class:`RuleSpec` of an innvestigate rule (a name of
    ``LRP_RULES``, a rule class, possibly a parameter-binding subclass) or
    of a class with a ``residual_rule_spec`` attribute. Parameters bound by
    a subclass are read by building the rule on ``probe`` (a small built
    Dense layer). Raises TypeError for a rule with no such description."""
    from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP_RULES

    if isinstance(rule, RuleSpec):
        return rule
    if isinstance(rule, str):
        if rule not in LRP_RULES:
            raise TypeError(f"unknown LRP rule name {rule!r}; valid: {sorted(LRP_RULES)}")
        rule = LRP_RULES[rule]
    spec = getattr(rule, "residual_rule_spec", None)
    if isinstance(spec, RuleSpec):
        return spec
    if not isinstance(rule, type) or not issubclass(rule, igraph.ReverseMappingBase):
        raise TypeError(f"rule {rule!r} is not an innvestigate rule class")
    if issubclass(rule, rrule.BoundedRule) and not _overrides(rule, rrule.BoundedRule):
        made = rule(probe, {})
        return RuleSpec("bounded", low=made._low, high=made._high)
    if issubclass(rule, rrule.ZPlusFastRule) and not _overrides(rule, rrule.ZPlusFastRule):
        return RuleSpec("zplus_fast", bias=False)
    if issubclass(rule, rrule.AlphaBetaRule) and not _overrides(rule, rrule.AlphaBetaRule):
        made = rule(probe, {})
        return RuleSpec("alpha_beta", alpha=float(made._alpha), beta=float(made._beta),
                        bias=bool(made._layer_wo_act_positive.use_bias))
    if issubclass(rule, rrule.EpsilonRule) and not _overrides(rule, rrule.EpsilonRule):
        made = rule(probe, {})
        return RuleSpec("epsilon", epsilon=float(made._epsilon),
                        bias=bool(made._layer_wo_act.use_bias))
    if issubclass(rule, rrule.FlatRule) and not _overrides(rule, rrule.WSquareRule):
        return RuleSpec("flat", bias=False)
    if issubclass(rule, rrule.WSquareRule) and not _overrides(rule, rrule.WSquareRule):
        return RuleSpec("w_square", bias=False)
    if issubclass(rule, rrule.ZRule) and not _overrides(rule, rrule.ZRule):
        made = rule(probe, {})
        return RuleSpec("z", bias=bool(made._layer_wo_act.use_bias))
    raise TypeError(
        f"rule {rule.__name__} has no description for Add / BatchNormalization / "
        "pooling layers; give the analyzer a _rule_for_residual_layer(layer) that "
        "returns an innvestigate rule or a residual_support.rules.RuleSpec")


__all__ = ["RuleSpec", "Z", "Z_NO_BIAS", "W_SQUARE", "Z_PLUS", "KINDS", "BIAS_CONVENTIONS",
           "check_bias_convention", "RESIDUAL_RULES", "check_residual_rule",
           "redistribute", "square_rule", "apply_rule",
           "alpha_beta", "ResidualRule", "describe_rule"]
