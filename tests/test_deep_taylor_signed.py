"""Deep Taylor on negative logits (csc_analyzers.methods.deep_taylor): the backward
pass starts at the logit itself, not at innvestigate's relu(logit).

Every Deep Taylor rule is linear in the incoming relevance once x is fixed, so
the map of a negative logit is minus the map started from |logit|: every
entry has the logit's sign (inputs inside the z^B bounds), and relevance
injection of the one-hot logit reproduces analyze. Positive logits give
innvestigate's own maps."""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.logits import logit_model
from csc_analyzers.models import cifar_net
from innvestigate.analyzer.deeptaylor import BoundedDeepTaylor, DeepTaylor

from conftest import small_cnn
from residual_nets import randomize, small_resnet

LOW, HIGH = -1.0, 1.0
METHODS = {"deep_taylor": {}, "deep_taylor.bounded": {"low": LOW, "high": HIGH}}
REFERENCE = {"deep_taylor": DeepTaylor, "deep_taylor.bounded": BoundedDeepTaylor}


def _small_cnn(seed=5):
    """With seed 5 every smallest logit of the test inputs has a positive
    contribution w_ij x_i at fc2 (see the last test for seed 3)."""
    return small_cnn(seed=seed), "fc2", (8, 8, 3)


def _cifar_net():
    """The paper's CIFAR net (logits) with random He-scaled weights."""
    model = logit_model(cifar_net.build())
    randomize(model, np.random.default_rng(5))
    return model, "fc6", (32, 32, 3)


def _small_resnet():
    return small_resnet(seed=2), "logits", (12, 12, 3)


NETS = {"small_cnn": _small_cnn, "cifar_net": _cifar_net, "small_resnet": _small_resnet}


def _setup(net, method, **extra):
    model, logits_layer, shape = NETS[net]()
    x = np.random.default_rng(17).uniform(LOW, HIGH, (3,) + shape).astype("float32")
    analyzer = csc_analyzers.create_analyzer(method, model, neuron_selection_mode="index",
                                             **METHODS[method], **extra)
    logits = analyzer.forward(x, [logits_layer])[logits_layer]
    return model, analyzer, x, logits, logits_layer


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("net", sorted(NETS))
def test_negative_logit_gives_a_map_of_its_sign(net, method):
    _model, analyzer, x, logits, _layer = _setup(net, method)
    target = np.argmin(logits, axis=1)
    value = logits[np.arange(len(x)), target]
    assert (value < 0).all(), f"test setup: the smallest logits {value} must be negative"
    maps = analyzer.analyze(x, neuron_selection=target)
    flat = maps.reshape(len(x), -1)
    assert np.isfinite(flat).all()
    scale = np.abs(flat).max(axis=1)
    assert (scale > 0).all(), "a negative logit gave an all-zero map"
    assert (flat.sum(axis=1) < 0).all()
    # z+ and z^B send a negative relevance to every input with a non-negative share
    assert (flat <= 1e-6 * scale[:, None]).all()


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("net", sorted(NETS))
def test_propagate_from_the_negative_logit_equals_analyze(net, method):
    """Injecting the one-hot logit reproduces analyze; injecting |logit|
    gives minus the map (linearity: the same map, the logit's sign)."""
    _model, analyzer, x, logits, layer = _setup(net, method)
    target = np.argmin(logits, axis=1)
    rows = np.arange(len(x))
    maps = analyzer.analyze(x, neuron_selection=target)
    start = np.zeros_like(logits)
    start[rows, target] = logits[rows, target]
    injected = analyzer.propagate(x, start, layer, ["input"])["input"]
    flipped = analyzer.propagate(x, -start, layer, ["input"])["input"]
    atol = 1e-5 * np.abs(maps).max()
    np.testing.assert_allclose(injected, maps, rtol=0, atol=atol)
    np.testing.assert_allclose(flipped, -maps, rtol=0, atol=atol)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("net", ["small_cnn", "cifar_net"])
def test_positive_logit_maps_equal_innvestigate(net, method):
    model, analyzer, x, logits, _layer = _setup(net, method)
    reference = REFERENCE[method](model, neuron_selection_mode="index", **METHODS[method])
    rows, classes = np.nonzero(logits > 0)  # every positive (image, class) pair
    assert len(rows) >= 2
    ours = analyzer.analyze(x[rows], neuron_selection=classes)
    theirs = reference.analyze(x[rows], neuron_selection=classes)
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_relu_output_option_gives_innvestigates_zero_map(method):
    """``relu_output=True``: innvestigate's behaviour, relevance relu(logit)."""
    model, analyzer, x, logits, _layer = _setup("small_cnn", method, relu_output=True)
    reference = REFERENCE[method](model, neuron_selection_mode="index", **METHODS[method])
    for target in (np.argmin(logits, axis=1), np.argmax(logits, axis=1)):
        ours = analyzer.analyze(x, neuron_selection=target)
        theirs = reference.analyze(x, neuron_selection=target)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * max(np.abs(theirs).max(), 1))
    assert np.abs(analyzer.analyze(x, neuron_selection=np.argmin(logits, axis=1))).max() == 0


def test_negative_logit_without_positive_contributions_gives_a_zero_map():
    """z+ distributes the relevance over the positive contributions
    x_i w_ij+ of the top layer; a logit with none (seed 3: few live fc1 units,
    each with a negative weight to the smallest logit) keeps a zero map."""
    model = small_cnn(seed=3)
    x = np.random.default_rng(17).uniform(LOW, HIGH, (3, 8, 8, 3)).astype("float32")
    analyzer = csc_analyzers.create_analyzer("deep_taylor.bounded", model,
                                             neuron_selection_mode="index", low=LOW, high=HIGH)
    hidden, logits = (analyzer.forward(x, ["fc1", "fc2"])[k] for k in ("fc1", "fc2"))
    target = np.argmin(logits, axis=1)
    kernel = model.get_layer("fc2").get_weights()[0]
    contributions = hidden * kernel[:, target].T
    assert (logits[np.arange(3), target] < 0).all() and (contributions <= 0).all()
    assert np.abs(analyzer.analyze(x, neuron_selection=target)).max() == 0
