"""DeepLIFT on keras.applications ResNet-50 and VGG-16 (random weights), one image.

One analyzer per network (building the deeplift graph of an ImageNet network
takes most of the time); the other configurations run through the same code.
"""
import time

import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.logits import logit_model
from tensorflow import keras

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

CASES = {
    "ResNet50": ({"nonlinear_mode": "reveal_cancel"}, "conv4_block2_out"),
    "VGG16": ({"nonlinear_mode": "rescale", "cross_mxts": False}, "block4_conv3"),
}


@pytest.fixture(scope="module")
def results():
    """Per network: logits delta, DeepLIFT scores, an injection and timings,
    computed in one graph (the per-test graph reset comes after this)."""
    out = {}
    rng = np.random.default_rng(0)
    for name, (kwargs, layer) in CASES.items():
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
        out[name] = dict(x=x, scores=scores, delta=logits[0, 7] - logits[1, 7],
                         logits=logits[0], predicted=analyzer.predict(x)[0], injected=injected,
                         vectors=vectors, seconds_first=first, seconds_per_image=again)
        print(f"\n{name} {kwargs}: first analyze (graph build + run) {first:.1f} s, "
              f"then {again:.2f} s per image")
    keras.backend.clear_session()
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_and_matches_keras(results, name):
    r = results[name]
    assert r["scores"].shape == r["x"].shape
    assert np.abs(r["predicted"] - r["logits"]).max() <= 1e-4 * np.abs(r["logits"]).max()
    injected = r["injected"]
    assert injected["input"].shape == (2,) + r["x"].shape[1:]
    assert np.all(np.isfinite(injected["input"]))


def test_resnet50_reveal_cancel_sums_to_delta(results):
    r = results["ResNet50"]
    total = r["scores"].sum()
    assert abs(total - r["delta"]) <= 1e-3 * abs(r["delta"]) + 1e-5, (total, r["delta"])


def test_injection_reads_back_the_injected_multipliers_times_delta(results):
    """At the injection layer the contributions are v * delta, so for two
    vectors a * v_b = b * v_a element-wise."""
    for name, (_, layer) in CASES.items():
        r = results[name]
        a, b = r["injected"][layer]
        va, vb = r["vectors"]
        scale = np.abs(a * vb).max()
        assert scale > 0
        np.testing.assert_allclose(a * vb, b * va, rtol=1e-4, atol=1e-6 * scale)
