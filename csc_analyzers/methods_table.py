"""The README's methods table, generated from the registry and the rule
conventions below: for every method of :data:`~csc_analyzers.registry.ALL_METHODS`,
its analyzer key, the paper's section (and equation), and the conventions
that change its numbers: where the backward pass starts, how a layer's bias
enters the rule, the max-pooling rule, how relevance passes ``Add`` /
``BatchNormalization`` / average pooling, and what the map sums to.

``tests/test_readme_tables.py`` regenerates the table and compares it with the
README, so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import ALL_METHODS, MethodSpec


@dataclass(frozen=True)
class Conventions:
    """The conventions of one analyzer family (see the module docstring)."""

    section: str
    start: str
    bias: str
    maxpool: str
    residual: str
    conserved: str


_GRADIENT_RESIDUAL = "gradient"
_RULE_RESIDUAL = ("the method's own rule through Add (a linear layer), BN (k x + b) and "
                  "average pooling (residual_rule='analyzer'); --recipe paper on residual "
                  "networks: the z-rule through average pooling ('paper')")
_LOGIT = "logit value"
_ONE = "1 at the logit"

#: analyzer key -> conventions
CONVENTIONS = {
    "guided_backprop": Conventions(
        "2.2", _LOGIT, "ignored", "gradient", _GRADIENT_RESIDUAL,
        "no conservation (a ReLU on the backward signal)"),
    "deconvnet": Conventions(
        "2.2", _LOGIT, "ignored", "gradient", _GRADIENT_RESIDUAL,
        "no conservation (a ReLU on the backward signal, no forward mask)"),
    "rectgrad": Conventions(
        "2.2", _ONE, "ignored", "gradient", _GRADIENT_RESIDUAL,
        "no conservation (gradient kept above the 98th percentile of a x g per layer)"),
    "gradient": Conventions(
        "2, eq. 1", _ONE, "ignored", "gradient", _GRADIENT_RESIDUAL, "no conservation"),
    "smoothgrad.seeded": Conventions(
        "3", _ONE, "ignored", "gradient", _GRADIENT_RESIDUAL,
        "no conservation (mean gradient over 50 noisy copies, noise 0.15 x input range)"),
    "deep_taylor.bounded": Conventions(
        "2.2", "logit value (signed: no ReLU on the output)", "ignored (z+, z^B)",
        "gradient", "z+ through Add, BN and average pooling", "the logit, where every "
        "unit has a positive contribution"),
    "pattern.attribution": Conventions(
        "2.2, eq. 11", _LOGIT, "ignored", "gradient", "gradient (linear backward pass)",
        "no conservation"),
    "pattern.net": Conventions(
        "2.2, eq. 10", _LOGIT, "ignored", "gradient", "gradient (linear backward pass)",
        "no conservation (a signal estimate, not an attribution)"),
    "lrp.alpha_1_beta_0": Conventions(
        "2.1, 2.2 eq. 8", _LOGIT, "full bias in the denominator (shared; "
        "alpha_beta_bias='split' for b+ / b-)", "gradient", _RULE_RESIDUAL,
        "the logit minus the bias share"),
    "lrp.alpha_2_beta_1": Conventions(
        "2.2, eq. 8", _LOGIT, "full bias in both denominators (shared; "
        "alpha_beta_bias='split' for b+ / b-)", "gradient", _RULE_RESIDUAL,
        "not conserved: units with contributions of one sign get alpha or -beta times "
        "their relevance"),
    "lrp.alpha_beta": Conventions(
        "2.2, eq. 8", _LOGIT, "full bias in both denominators (shared; "
        "alpha_beta_bias='split' for b+ / b-)", "gradient", _RULE_RESIDUAL,
        "not conserved: units with contributions of one sign get alpha or -beta times "
        "their relevance"),
    "lrp.z": Conventions(
        "2.2, eq. 7", _LOGIT, "in the denominator", "gradient",
        "the z-rule through Add, BN (k x + b) and average pooling",
        "the logit minus the bias share (= gradient x input on bias-free ReLU nets)"),
    "lrp.cmp_alpha_1_beta_0": Conventions(
        "5", _LOGIT, "as its rules (epsilon at the top, alpha1-beta0 below)", "gradient",
        _RULE_RESIDUAL, "the logit minus bias and epsilon shares"),
    "lrp.cmp_alpha_2_beta_1": Conventions(
        "5", _LOGIT, "as its rules (epsilon at the top, alpha2-beta1 below)", "gradient",
        _RULE_RESIDUAL, "not conserved (alpha2-beta1 layers)"),
    "deep_lift.wrapper": Conventions(
        "2.2, eq. 12", "1 at the logit (difference from the reference x0 = 0)",
        "part of the reference output", "paper recipe: deeplift's (all to the "
        "maximum at x); plain: interpolating", "linear (Add) and affine (BN) "
        "conversions", "f(x) - f(x0) exactly with the interpolating max-pool rule"),
    "excitation_backprop": Conventions(
        "2.1, eq. 5", "1 at the logit (a probability)", "ignored", "gradient",
        "z+ through Add, BN and average pooling", "1, where every positive unit has a positive "
        "contribution; less through BN unless canonize=True"),
    "excitation_backprop.contrastive": Conventions(
        "5, eq. 16", "1 at the logit minus the dual", "ignored", "gradient",
        "z+ through Add, BN and average pooling", "0 (a difference of two maps)"),
    "lrp.contrastive": Conventions(
        "5, eq. 15", _LOGIT, "ignored (z+)", "gradient", "z+ through Add, BN and average pooling",
        "no conservation (max(0, difference of two normalised maps))"),
    "lrp.z_plus": Conventions(
        "2.1", _LOGIT, "ignored", "gradient", "z+ through Add, BN and average pooling",
        "the logit, where every unit has a positive contribution; less through BN "
        "unless canonize=True"),
    "integrated_gradients": Conventions(
        "5", _ONE, "ignored", "gradient", _GRADIENT_RESIDUAL,
        "about f(x) - f(x0) (64 steps)"),
}

HEADER = ("| method | analyzer key | paper section | start of the backward pass | "
          "bias in the backward rule | "
          "max pooling | Add / BN / average pooling | what the map sums to |")


def _key(spec: MethodSpec) -> str:
    if spec.analyzer not in CONVENTIONS:
        raise KeyError(f"methods_table: no conventions for {spec.name!r} "
                       f"(analyzer {spec.analyzer!r}); add them to CONVENTIONS")
    return spec.analyzer


def _arguments(spec: MethodSpec) -> str:
    shown = {k: v for k, v in spec.kwargs.items() if k not in ("seed",)}
    if not shown:
        return ""
    values = ", ".join(f"{k}={v!r}" if not hasattr(v, "kind") else f"{k}=input {v.kind}"
                       for k, v in shown.items())
    return f" ({values})"


def methods_markdown(specs=ALL_METHODS) -> str:
    """The methods table as markdown, one row per method of ``specs``."""
    lines = [HEADER, "|" + "---|" * 8]
    for spec in specs:
        c = CONVENTIONS[_key(spec)]
        cells = [spec.name, f"`{spec.analyzer}`{_arguments(spec)}", c.section, c.start,
                 c.bias, c.maxpool, c.residual, c.conserved]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["Conventions", "CONVENTIONS", "methods_markdown"]
