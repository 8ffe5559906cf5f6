"""Where ``csc_analyzers.create_analyzer`` deliberately differs from innvestigate 2.1.2.

Under every name of innvestigate 2.1.2's analyzer table the project's
analyzer gives innvestigate's numbers, except in the cases listed in
:data:`DEVIATIONS` (each tested in ``tests/test_innvestigate_compat.py``).
:func:`deviations_markdown` renders the list as the README table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deviation:
    """One deliberate difference from innvestigate 2.1.2."""

    topic: str
    names: str  #: the analyzer names it concerns
    project: str  #: what the project does
    innvestigate: str  #: what innvestigate 2.1.2 does
    reason: str  #: why (one line)
    how_to_get_innvestigate: str  #: how to get innvestigate's behaviour


DEVIATIONS: tuple = (
    Deviation(
        "BatchNormalization under LRP",
        "lrp.z, lrp.epsilon, lrp.alpha_beta, lrp.alpha_1_beta_0, lrp.alpha_2_beta_1 "
        "(lrp: innvestigate fails on BN after Dense; the other LRP names' BN rules do not "
        "see the error and agree)",
        "the analyzer's BN rule (innvestigate's bn_layer_rule, else z) on the exact affine "
        "map k x + b, k = gamma / sqrt(var + eps), b = beta - mean k",
        "the same rule on a wrongly fused layer: k = gamma / sqrt(var**2 + eps), "
        "b = beta - mean / sqrt(var**2 + eps); LRP-z on Input -> BN -> Dense(1, no bias) "
        "gives [1.374, 0.103, -1.027] where w k x = [1.999, -1.996, -0.750] "
        "(tests/test_innvestigate_compat.py)",
        "innvestigate's numbers are wrong whenever var != 1, or mean != 0 with "
        "gamma != 1 (a bug, not a choice)",
        "not offered (innvestigate itself); create_analyzer(..., canonize=True) folds BN "
        "into the layer before it instead"),
    Deviation(
        "softmax output",
        "every name",
        "a model ending in a softmax is analysed on its logits (the softmax is stripped "
        "from a copy of the model)",
        "refuses the model (model check: softmax output)",
        "attributions explain a logit (the paper, section 2); refusing is less useful",
        "innvestigate.model_wo_softmax(model) gives the same logits model; there is no "
        "way to analyse through the softmax in either"),
    Deviation(
        "SmoothGrad noise",
        "smoothgrad",
        "noise N(0, noise_scale**2), drawn in numpy from default_rng(seed); averaged in "
        "chunks of chunk_size inputs",
        "ignores noise_scale: its Gaussian noise layer always has standard deviation 1",
        "noise_scale is the method's parameter (the paper: 0.15 x input range)",
        "noise_scale=1 (the default) gives innvestigate's noise distribution; the noise "
        "itself is random in both, so maps agree only in expectation"),
    Deviation(
        "Deep Taylor output ReLU",
        "deep_taylor, deep_taylor.bounded",
        "the backward pass starts at the logit f_k(x): a negative logit gives the map "
        "of |f_k(x)| with a minus sign",
        "starts at relu(f_k(x)): a negative logit gives an all-zero map",
        "the paper's code removed the ReLU so that DTD explains every logit",
        "relu_output=True"),
    Deviation(
        "Deep Taylor bounded first layer behind padding",
        "deep_taylor.bounded",
        "the z^B rule on the first kernel layer also when ZeroPadding / Cropping / "
        "Flatten / Reshape / Dropout sit between it and the input (ResNet-50's conv1)",
        "z^B only on a kernel layer fed by the input directly; behind padding it uses z+",
        "the input-domain rule belongs to the layer that sees the input values",
        "not offered; a model without padding before its first kernel layer gives "
        "innvestigate's numbers"),
    Deviation(
        "separate ReLU layers",
        "lrp.*, deep_taylor*, deconvnet",
        "keras.layers.ReLU layers are handled like Activation('relu'): LRP / DTD pass the "
        "relevance on unchanged, Deconvnet rectifies the backward signal",
        "LRP and DTD refuse the model (ReLU is not in their layer list); Deconvnet passes "
        "the plain gradient through a ReLU layer",
        "the same network written with ReLU layers should give the same map",
        "write the model with Activation('relu') (both then agree)"),
    Deviation(
        "SeparableConv2D under sign-splitting rules",
        "lrp.alpha_*, lrp.z_plus*, lrp.sequential_preset_*, deep_taylor*",
        "the rule on the layer's one linear map: the Conv2D whose kernel is depthwise "
        "x pointwise, split by sign as a whole (z, epsilon and the gradient are the same "
        "either way)",
        "splits the depthwise and the pointwise kernel by sign on their own, which is "
        "not the rule's positive / negative part of the layer's weights (alpha2-beta1: "
        "up to 10x different)",
        "z+ and alpha-beta are defined on a layer's weights w_ij; the separable layer's "
        "weights are the products",
        "write the layer as DepthwiseConv2D + 1x1 Conv2D (both then agree)"),
    Deviation(
        "layers innvestigate's LRP checks refuse",
        "lrp.*, deep_taylor* (forced with disable_model_checks in innvestigate)",
        "LeakyReLU / ELU / PReLU pass relevance on unchanged, as Activation layers do; "
        "Rescaling and Normalization are per-channel affine maps k x + b under the "
        "analyzer's rule (as BN); Subtract is the linear map [I, -I]; Multiply is a gate "
        "(all relevance to the signal input, none to the gate)",
        "LeakyReLU and similar: the gradient (relevance times the local slope); "
        "Rescaling / Normalization: the gradient (relevance times k, 254x smaller after "
        "Rescaling(1/255)); Subtract: +R and -R",
        "the rules are defined on the layer's linear or affine map; innvestigate has no "
        "rule for these layers and falls back to the gradient",
        "not offered"),
)


def deviations_markdown(deviations=DEVIATIONS) -> str:
    """The deviations as a markdown table (one row each)."""
    header = ("| topic | names | csc_analyzers | innvestigate 2.1.2 | why | "
              "innvestigate's behaviour |\n|---|---|---|---|---|---|")
    rows = [f"| {d.topic} | {d.names} | {d.project} | {d.innvestigate} | {d.reason} | "
            f"{d.how_to_get_innvestigate} |" for d in deviations]
    return "\n".join([header] + rows) + "\n"


__all__ = ["Deviation", "DEVIATIONS", "deviations_markdown"]
