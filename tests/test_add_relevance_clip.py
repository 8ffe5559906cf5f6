"""``add_relevance_clip``: the paper's clip of the relevance leaving every
``Add`` layer, on the small ResNet (analyze and propagate), its validation,
and maps unchanged without it."""
import numpy as np
import pytest
from tensorflow.keras import layers as klayers

import csc_analyzers
from csc_analyzers.injection import ReversalStep, session
from residual_support import ResidualRulesMixin
from residual_nets import small_resnet

CLIP = (0.0, 1000.0)
ADDS = ("stage1_add", "stage2_add", "stage3_add")
# inputs of an Add that feed nothing else: their relevance is what the Add hands them
ADD_ONLY_INPUTS = ("stage1_bn2", "stage2_bn2", "stage2_proj_bn", "stage3_bn2", "stage3_proj_bn")
METHODS = ("lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.cmp_alpha_2_beta_1")


@pytest.fixture
def resnet():
    """The small ResNet with its logits scaled by 1e4, so that the relevance
    at the Add layers exceeds 1000."""
    model = small_resnet(seed=0)
    dense = model.get_layer("logits")
    dense.set_weights([1e4 * w for w in dense.get_weights()])
    return model


@pytest.fixture
def x():
    return np.random.default_rng(5).normal(size=(2, 12, 12, 3)).astype("float32")


def add_outgoing(analyzer, x) -> dict:
    """Per Add layer, the relevance its reverse mapping hands to each of its
    inputs in ``analyzer.analyze(x)`` (read from the analyzer graph)."""
    analyzer.analyze(x)
    model = analyzer._analyzer_model
    steps = [layer for layer in model.layers if isinstance(layer, ReversalStep)
             and isinstance(layer._reverse_state["layer"], klayers.Add)]
    fetches = {step._reverse_state["layer"].name: step.output for step in steps}
    return session().run(fetches, feed_dict={model.inputs[0]: x})


@pytest.mark.parametrize("name", METHODS)
def test_clip_bounds_every_relevance_leaving_an_add(name, resnet, x):
    plain = add_outgoing(csc_analyzers.create_analyzer(name, resnet), x)
    clipped = add_outgoing(csc_analyzers.create_analyzer(name, resnet, add_relevance_clip=CLIP),
                           x)
    assert sorted(plain) == sorted(clipped) == sorted(ADDS)
    unclipped = np.concatenate([r.ravel() for rs in plain.values() for r in rs])
    # the clip is active: without it, relevance leaves the Adds above the upper bound
    # (and, with beta > 0, below the lower one)
    assert unclipped.max() > CLIP[1]
    assert unclipped.min() < CLIP[0] or "beta_0" in name
    for add in ADDS:
        for after in clipped[add]:
            assert after.min() >= CLIP[0] and after.max() <= CLIP[1], add
    values = np.concatenate([r.ravel() for rs in clipped.values() for r in rs])
    assert (values == CLIP[1]).any()
    # at the top Add (nothing clipped above it) the clip is exactly np.clip of the plain values
    for before, after in zip(plain["stage3_add"], clipped["stage3_add"]):
        np.testing.assert_array_equal(after, np.clip(before, *CLIP))


@pytest.mark.parametrize("name", METHODS)
def test_propagate_goes_through_the_clipped_add(name, resnet, x):
    analyzer = csc_analyzers.create_analyzer(name, resnet, add_relevance_clip=CLIP)
    plain = csc_analyzers.create_analyzer(name, resnet)
    v = 1e4 * np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    found = analyzer.propagate(x[:1], v, "logits", list(ADD_ONLY_INPUTS) + ["input"])
    before = plain.propagate(x[:1], v, "logits", list(ADD_ONLY_INPUTS))
    assert max(before[layer].max() for layer in ADD_ONLY_INPUTS) > CLIP[1]
    assert min(before[layer].min() for layer in ADD_ONLY_INPUTS) < CLIP[0]
    for layer in ADD_ONLY_INPUTS:
        assert found[layer].min() >= CLIP[0] and found[layer].max() <= CLIP[1], layer
    assert np.isfinite(found["input"]).all()


def test_propagate_from_the_logit_equals_analyze_with_the_clip(resnet, x):
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", resnet,
                                             add_relevance_clip=CLIP)
    logits = resnet.predict(x, verbose=0)
    top = logits.argmax(axis=1)
    v = np.zeros_like(logits)
    v[np.arange(len(x)), top] = logits[np.arange(len(x)), top]
    injected = analyzer.propagate(x, v, "logits", "input")["input"]
    np.testing.assert_allclose(injected, analyzer.analyze(x), rtol=1e-5,
                               atol=1e-6 * np.abs(injected).max())


@pytest.mark.parametrize("name", ("lrp.alpha_2_beta_1", "lrp.z", "lrp.cmp_alpha_1_beta_0",
                                  "excitation_backprop"))
def test_without_the_option_maps_are_unchanged(name, resnet, x):
    default = csc_analyzers.create_analyzer(name, resnet)
    explicit = csc_analyzers.create_analyzer(name, resnet, add_relevance_clip=None)
    never_active = csc_analyzers.create_analyzer(name, resnet, add_relevance_clip=(-1e38, 1e38))
    reference = default.analyze(x)
    assert np.abs(reference).max() > 0
    np.testing.assert_array_equal(explicit.analyze(x), reference)
    np.testing.assert_array_equal(never_active.analyze(x), reference)
    v = np.random.default_rng(1).normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(explicit.propagate(x[:1], v, "logits", "input")["input"],
                                  default.propagate(x[:1], v, "logits", "input")["input"])


def test_clip_breaks_conservation_only_when_active():
    """With zero shifts and positive BN scales alpha1-beta0 conserves the
    logit; a clip above every Add relevance keeps that, a low one drops relevance."""
    model = small_resnet(seed=1, zero_shifts=True, positive_scales=True)
    x = np.random.default_rng(5).normal(size=(2, 12, 12, 3)).astype("float32")
    logits = model.predict(x, verbose=0).max(axis=1)
    wide = csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", model, residual_rule="analyzer",
                                         add_relevance_clip=(0.0, 1e6)).analyze(x)
    np.testing.assert_allclose(wide.reshape(2, -1).sum(axis=1), logits, rtol=1e-3)
    low = csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", model, residual_rule="analyzer",
                                        add_relevance_clip=(0.0, 1e-3)).analyze(x)
    assert (low.reshape(2, -1).sum(axis=1) < 0.5 * logits).all()


@pytest.mark.parametrize("name, kwargs", [
    ("lrp.z", {}), ("lrp.epsilon", {}), ("lrp.alpha_beta", {"alpha": 5, "beta": 4}),
    ("lrp.z_plus", {}), ("lrp.sequential_preset_a", {}), ("lrp.cmp_alpha_1_beta_0", {}),
    ("lrp.cmp_alpha_2_beta_1", {}), ("excitation_backprop", {}),
    ("excitation_backprop.contrastive", {}), ("lrp.contrastive", {}), ("deep_taylor", {}),
    ("deep_taylor.bounded", {"low": -3.0, "high": 3.0}),
])
def test_every_residual_rules_analyzer_takes_the_option(name, kwargs, resnet, x):
    analyzer = csc_analyzers.create_analyzer(name, resnet, add_relevance_clip=(0, 1),
                                             **kwargs)
    assert isinstance(analyzer, ResidualRulesMixin)
    assert analyzer._add_relevance_clip == (0.0, 1.0)
    assert np.isfinite(analyzer.analyze(x[:1])).all()


def test_option_survives_save_and_load(resnet):
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", resnet,
                                             add_relevance_clip=CLIP)
    state = analyzer._get_state()
    assert state["add_relevance_clip"] == CLIP
    assert type(analyzer)._state_to_kwargs(dict(state))["add_relevance_clip"] == CLIP


@pytest.mark.parametrize("bad, message", [
    ((1000, 0), "low must be smaller than high"), ((5, 5), "low must be smaller than high"),
    ("0,1000", "expected None or a pair"), ((0,), "expected None or a pair"),
    ((0, 1, 2), "expected None or a pair"), (1000, "expected None or a pair"),
    ((0, "1000"), "must be numbers"), ((False, True), "must be numbers"),
    ((0, float("inf")), "must be finite"), ((float("nan"), 1), "must be finite"),
])
def test_bad_clip_is_rejected_naming_method_and_value(bad, message, resnet):
    with pytest.raises(ValueError, match=message) as error:
        csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", resnet, add_relevance_clip=bad)
    assert "add_relevance_clip=" in str(error.value)
    assert "lrp.alpha_1_beta_0" in str(error.value)
