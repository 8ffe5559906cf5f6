"""SmoothGrad's per-image noise (csc_analyzers.methods.smoothgrad.SeededSmoothGrad):
drawn from np.random.default_rng([seed, image key]), the same in any process,
different for different images, and shared by analyze and propagate."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.experiments.common import ModelNetwork, explain
from csc_analyzers.injection import INPUT
from csc_analyzers.registry import get_method
from csc_analyzers.methods.smoothgrad import image_key

from conftest import small_cnn

ROOT = Path(__file__).resolve().parents[1]
SEED, N, SCALE = 7, 40, 0.4


def smoothgrad(model, **kwargs):
    options = {"augment_by_n": N, "noise_scale": SCALE, "seed": SEED,
               "neuron_selection_mode": "index", **kwargs}
    return csc_analyzers.create_analyzer("smoothgrad.seeded", model, **options)


def reference_noise(seed, key, shape):
    """The draw the SeededSmoothGrad docstring states."""
    return np.random.default_rng([seed, key]).normal(
        0.0, SCALE, size=(N,) + shape).astype(np.float32)


def test_equals_the_mean_of_gradients_at_the_documented_noisy_inputs(cnn, images):
    analyzer = smoothgrad(cnn)
    gradient = csc_analyzers.create_analyzer("gradient", cnn, neuron_selection_mode="index")
    ids = [3, 11]
    maps = analyzer.analyze(images, neuron_selection=[0, 2], image_ids=ids)
    for x, key, k, smooth in zip(images, ids, [0, 2], maps):
        noise = reference_noise(SEED, key, x.shape)
        assert abs(noise.std(ddof=1) - SCALE) < 0.02 * SCALE  # absolute noise_scale
        np.testing.assert_array_equal(analyzer.noise(key), noise)
        grads = gradient.analyze(x[None] + noise, neuron_selection=np.full(N, k))
        np.testing.assert_allclose(smooth, grads.astype(np.float64).mean(axis=0),
                                   rtol=1e-5, atol=1e-6 * np.abs(smooth).max())


def test_two_images_get_different_noise(cnn, images):
    analyzer = smoothgrad(cnn)
    first, second = analyzer.noise(0), analyzer.noise(1)
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.05
    # the same image under two ids: different maps; the map depends on the id only
    x = np.repeat(images[:1], 2, axis=0)
    maps = analyzer.analyze(x, neuron_selection=[1, 1], image_ids=[0, 1])
    assert not np.allclose(maps[0], maps[1])
    again = analyzer.analyze(images[::-1], neuron_selection=[1, 1], image_ids=[1, 0])
    np.testing.assert_allclose(again[1], maps[0], rtol=1e-6, atol=1e-7)
    # without ids, two images get the noise of their content keys
    keys = [image_key(x) for x in images]
    assert keys[0] != keys[1]
    by_content = analyzer.analyze(images, neuron_selection=[1, 1])
    np.testing.assert_array_equal(by_content,
                                  analyzer.analyze(images, neuron_selection=[1, 1],
                                                   image_ids=keys))


def test_the_map_of_an_image_does_not_depend_on_its_batch(cnn, images):
    analyzer = smoothgrad(cnn)
    both = analyzer.analyze(images, neuron_selection=[0, 0], image_ids=[5, 6])
    alone = analyzer.analyze(images[1:], neuron_selection=[0], image_ids=[6])
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-6, atol=1e-7)


CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import small_cnn
import csc_analyzers
model = small_cnn()
x = np.random.default_rng(1234).normal(size=(2, 8, 8, 3)).astype("float32")
a = csc_analyzers.create_analyzer("smoothgrad.seeded", model, augment_by_n={n},
                                  noise_scale={scale}, seed={seed}, neuron_selection_mode="index")
print(json.dumps([a.analyze(x, neuron_selection=[0, 1], image_ids=[4, 9]).tolist(),
                  a.analyze(x, neuron_selection=[0, 1]).tolist()]))
"""


@pytest.mark.slow
def test_the_same_seed_and_image_give_the_same_maps_in_two_processes(cnn, images):
    code = CHILD.format(tests=str(ROOT / "tests"), n=N, scale=SCALE, seed=SEED)
    outputs = []
    for _ in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, check=True, env=env)
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_array_equal(np.array(outputs[0]), np.array(outputs[1]))
    here = smoothgrad(cnn)  # this process too (same small_cnn weights and images)
    np.testing.assert_array_equal(np.array(outputs[0][0]),
                                  here.analyze(images, neuron_selection=[0, 1], image_ids=[4, 9]))
    np.testing.assert_array_equal(np.array(outputs[0][1]),
                                  here.analyze(images, neuron_selection=[0, 1]))


def test_propagate_of_the_one_hot_start_equals_analyze(cnn, images, rng):
    analyzer = smoothgrad(cnn, augment_by_n=6)
    targets = [2, 0]
    one_hot = np.eye(3, dtype=np.float32)[targets]
    for ids in ([8, 21], None):
        expected = analyzer.analyze(images, neuron_selection=targets, image_ids=ids)
        got = analyzer.propagate(images, one_hot, "fc2", INPUT, image_ids=ids)[INPUT]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # one image for several vectors (CSC): the image's own noise, from its id
    vectors = rng.normal(size=(3, 3)).astype(np.float32)
    once = analyzer.propagate(images[1:], vectors, "fc2", INPUT, image_ids=[21])[INPUT]
    expected = sum(vectors[:, k, None, None, None]
                   * analyzer.analyze(images[1:], neuron_selection=[k], image_ids=[21])
                   for k in range(3))
    np.testing.assert_allclose(once, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_bad_image_ids_are_named(cnn, images):
    analyzer = smoothgrad(cnn, augment_by_n=2)
    with pytest.raises(ValueError, match="3 image_ids for 2 images"):
        analyzer.analyze(images, neuron_selection=[0, 0], image_ids=[1, 2, 3])
    with pytest.raises(ValueError, match="image id must be a non-negative integer, got -1"):
        analyzer.analyze(images, neuron_selection=[0, 0], image_ids=[1, -1])
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        smoothgrad(cnn, seed=-2)
    with pytest.raises(TypeError, match="takes no image_ids"):
        csc_analyzers.create_analyzer("integrated_gradients", cnn, steps=2).analyze(
            images, image_ids=[0, 1])


def test_explain_passes_the_image_id_to_smoothgrad_only(images):
    network = ModelNetwork(name="tiny", model=small_cnn(), input_range=(-3.0, 3.0))
    spec = get_method("SmoothGrad")
    analyzer = smoothgrad(network.model, augment_by_n=3)
    a = explain(analyzer, images[0], 1, spec, image_id=12)
    b = explain(analyzer, images[0], 1, spec, image_id=13)
    assert not np.allclose(a, b)
    direct = analyzer.analyze(images[:1], neuron_selection=[1], image_ids=[12])
    np.testing.assert_array_equal(a, np.abs(direct[0]).max(axis=-1))
    gradient = csc_analyzers.create_analyzer("gradient", network.model,
                                             neuron_selection_mode="index")
    np.testing.assert_array_equal(explain(gradient, images[0], 1, get_method("Gradient"),
                                          image_id=12),
                                  explain(gradient, images[0], 1, get_method("Gradient")))


def test_experiments_draw_smoothgrad_noise_from_the_image_id(images, tmp_path):
    """The random-logit and sanity-check maps of an image are SmoothGrad's
    maps for that image's id: the same image under ids 4 and 9 gets two
    different maps, each equal to analyze(..., image_ids=[id])."""
    from csc_analyzers.experiments.common import build_analyzer
    from csc_analyzers.experiments.random_logit import run_random_logit
    from csc_analyzers.experiments.sanity import maps_path, run_sanity
    network = ModelNetwork(name="tiny", model=small_cnn(softmax=True), input_range=(-3.0, 3.0),
                           sanity_layers=("fc2",))
    spec = get_method("SmoothGrad")
    same = np.repeat(images[:1], 2, axis=0)
    ids, labels = [4, 9], np.array([1, 1])
    run_random_logit(network, same, labels, ids, [spec], tmp_path, save_maps_for=ids)
    run_sanity(network, same, labels, ids, [spec], tmp_path, save_maps_for=ids)
    analyzer = network.analyzer_cache[spec.name]
    assert analyzer is build_analyzer(spec, None, network)
    found = {}
    for experiment in ("random_logit", "sanity_cascading"):
        for image_id in ids:
            path = maps_path(tmp_path, experiment, ("tiny", spec.name, image_id))
            found[experiment, image_id] = np.load(path)["maps"][0]  # the true-class map
    for image_id in ids:
        direct = analyzer.analyze(same[:1], neuron_selection=[1], image_ids=[image_id])
        for experiment in ("random_logit", "sanity_cascading"):
            np.testing.assert_allclose(found[experiment, image_id],
                                       np.abs(direct[0]).max(axis=-1), rtol=1e-5, atol=1e-7)
    assert not np.allclose(found["random_logit", 4], found["random_logit", 9])
