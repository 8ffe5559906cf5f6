"""DeepLIFT on keras.applications ResNet-50 and VGG-16 (random weights), one image.

One analyzer per network (building the deeplift graph of an ImageNet network
takes most of the time); the other configurations run through the same code.
ResNet-50 (RevealCancel: summation-to-delta, logits equal to Keras', the
injected multipliers read back) is part of the default run; VGG-16 (the
ablation) runs with ``-m heavy``.
"""
import time

import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.logits import logit_model
from tensorflow import keras

pytestmark = pytest.mark.slow

CASES = {
    "ResNet50": ({"nonlinear_mode": "reveal_cancel"}, "conv4_block2_out"),
    "VGG16": ({"nonlinear_mode": "rescale", "cross_mxts": False}, "block4_conv3"),
}
NETWORKS = [pytest.param(name, marks=() if name == "ResNet50" else pytest.mark.heavy)
            for name in sorted(CASES)]


def _run(name, rng):
    """Logits delta, DeepLIFT scores, an injection and timings of one network,
    computed in a fresh graph."""
    kwargs, layer = CASES[name]
    keras.backend.clear_session()
    model = getattr(keras.applications, name)(weights=None)
    x = rng.uniform(-50, 50, size=(1, 224, 224, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer(
        "deep_lift.wrapper", model, neuron_selection_mode="index", **kwargs)
    start = time.perf_counter()
    scores = analyzer.analyze(x, neuron_selection=7)
    first = time.perf_counter() - start
    start = time.perf_counter()
    scores = analyzer.analyze(x, neuron_selection=7)
    again = time.perf_counter() - start
    vectors = rng.normal(size=(2,) + analyzer.relevance_shape(layer)).astype(np.float32)
    injected = analyzer.propagate(x, vectors, layer, ["input", layer])
    logits = logit_model(model).predict(np.concatenate([x, np.zeros_like(x)]), verbose=0)
    result = dict(x=x, scores=scores, delta=logits[0, 7] - logits[1, 7], logits=logits[0],
                  predicted=analyzer.predict(x)[0], injected=injected, vectors=vectors,
                  seconds_first=first, seconds_per_image=again)
    print(f"\n{name} {kwargs}: first analyze (graph build + run) {first:.1f} s, "
          f"then {again:.2f} s per image")
    keras.backend.clear_session()
    return result


@pytest.fixture(scope="module")
def results():
    """Network name -> its results, each computed on first use (one graph
    per network; the per-test graph reset does not touch the numpy results)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _run(name, np.random.default_rng(sorted(CASES).index(name)))
        return cache[name]
    return get


@pytest.mark.parametrize("name", NETWORKS)
def test_runs_and_matches_keras(results, name):
    r = results(name)
    assert r["scores"].shape == r["x"].shape
    assert np.abs(r["predicted"] - r["logits"]).max() <= 1e-4 * np.abs(r["logits"]).max()
    injected = r["injected"]
    assert injected["input"].shape == (2,) + r["x"].shape[1:]
    assert np.all(np.isfinite(injected["input"]))


def test_resnet50_reveal_cancel_sums_to_delta(results):
    r = results("ResNet50")
    total = r["scores"].sum()
    assert abs(total - r["delta"]) <= 1e-3 * abs(r["delta"]) + 1e-5, (total, r["delta"])


@pytest.mark.parametrize("name", NETWORKS)
def test_injection_reads_back_the_injected_multipliers_times_delta(results, name):
    """At the injection layer the contributions are v * delta, so for two
    vectors a * v_b = b * v_a element-wise."""
    layer = CASES[name][1]
    r = results(name)
    a, b = r["injected"][layer]
    va, vb = r["vectors"]
    scale = np.abs(a * vb).max()
    assert scale > 0
    np.testing.assert_allclose(a * vb, b * va, rtol=1e-4, atol=1e-6 * scale)
