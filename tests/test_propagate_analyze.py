"""``propagate`` from the logits with a one-hot start reproduces ``analyze``
at the input, for every method of the registry that has ``propagate``
(SmoothGrad's averaging over noise has its own tests).

The CSC of a method is computed from its ``propagate``; this pins that chain
to the method's published map. The start is what the analyzer's own backward
pass starts from at the explained logit k (its head mapping):

* ``1`` (a one-hot gradient / multiplier / probability): Gradient, RectGrad,
  Integrated Gradients, DeepLIFT, Excitation BP and its contrastive form;
* ``y_k`` (the logit itself, innvestigate's identity head): GuidedBP, Deconv,
  LRP, PatternNet, PatternAttribution and DTD (the project's DTD has no ReLU
  on the output, so a negative logit starts it negative). GuidedBP and
  Deconv rectify the backward signal, so the sign of the start matters: a
  negative logit starts them from a negative one-hot vector.

Contrastive LRP has no class to contrast with once relevance is injected:
its ``propagate`` is the z+ chain, equal to LRP z+'s ``analyze``.
"""
import numpy as np
import pytest

import csc_analyzers
from conftest import small_cnn
from csc_analyzers.registry import ALL_METHODS, available_methods

INPUT_RANGE = (-3.0, 3.0)
START = {
    "gradient": "one", "rectgrad": "one", "integrated_gradients": "one",
    "deep_lift.wrapper": "one", "excitation_backprop": "one",
    "excitation_backprop.contrastive": "one",
    "guided_backprop": "logit", "deconvnet": "logit", "pattern.net": "logit",
    "pattern.attribution": "logit", "lrp.alpha_1_beta_0": "logit",
    "lrp.alpha_2_beta_1": "logit", "lrp.alpha_beta": "logit", "lrp.z": "logit",
    "lrp.z_plus": "logit", "lrp.cmp_alpha_1_beta_0": "logit",
    "lrp.cmp_alpha_2_beta_1": "logit", "lrp.contrastive": "logit",
    "deep_taylor.bounded": "logit",
}
SAME_CHAIN_AS = {"lrp.contrastive": ("lrp.z_plus", {})}
SPECS = [spec for spec in available_methods(ALL_METHODS) if spec.name != "SmoothGrad"]


def random_patterns(model, rng):
    """Any patterns (one per kernel) define a PatternNet / PatternAttribution."""
    return {layer.name: rng.normal(size=layer.kernel.shape).astype("float32")
            for layer in model.layers if hasattr(layer, "kernel")}


def _start(kind, logits, classes):
    rows = np.arange(len(classes))
    value = {"one": np.ones(len(classes)), "logit": logits[rows, classes]}[kind]
    start = np.zeros_like(logits)
    start[rows, classes] = value
    return start


def test_every_method_with_propagate_has_a_start():
    with_propagate = {spec.analyzer for spec in SPECS
                      if hasattr(csc_analyzers.analyzers[spec.analyzer], "propagate")}
    assert with_propagate == set(START)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_one_hot_injection_at_the_logits_equals_analyze(spec):
    rng = np.random.default_rng(31)
    model = small_cnn(seed=33)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    logits = model.predict(x, verbose=0)
    # per image: the largest logit and the smallest (a negative start for GuidedBP / Deconv)
    classes = np.array([np.argmax(logits[0]), np.argmin(logits[1]),
                        np.argmax(logits[2]), np.argmin(logits[3])])
    assert logits[np.arange(4), classes].min() < 0 < logits[np.arange(4), classes].max()
    kwargs = spec.analyzer_kwargs(INPUT_RANGE)
    if spec.needs_patterns:
        kwargs["patterns"] = random_patterns(model, rng)
    analyzer = csc_analyzers.create_analyzer(spec.analyzer, model,
                                             neuron_selection_mode="index", **kwargs)
    start = _start(START[spec.analyzer], logits, classes)
    injected = analyzer.propagate(x, start.astype("float32"), "fc2", "input")["input"]
    if spec.analyzer in SAME_CHAIN_AS:
        name, other_kwargs = SAME_CHAIN_AS[spec.analyzer]
        analyzer = csc_analyzers.create_analyzer(name, model, neuron_selection_mode="index",
                                                 **other_kwargs)
    expected = analyzer.analyze(x, neuron_selection=list(classes))
    scale = np.abs(expected).max()
    assert scale > 0, spec.name
    error = np.abs(injected - expected).max() / scale
    assert error <= 1e-5, f"{spec.name}: max error {error:.2e} of the largest value"
