"""In-place layer randomisation: levels, reuse of one analyzer graph, restore."""
import itertools
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_cnn
from csc_analyzers import create_analyzer
from csc_analyzers.experiments.common import ModelNetwork, analysis_model
from csc_analyzers.experiments.randomization import (Randomizer, layer_seed,
                                                     randomization_levels)
from csc_analyzers.experiments.sanity import run_sanity
from csc_analyzers.registry import select_methods

SCORED = ["conv1", "fc1", "fc2"]


def weights_of(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def assert_bit_identical(before, after):
    assert before.keys() == after.keys()
    for name in before:
        for a, b in zip(before[name], after[name]):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


def test_cascading_level_j_randomises_exactly_the_top_j_layers():
    model = small_cnn()
    original = weights_of(model)
    levels = randomization_levels(model, list(reversed(SCORED)))
    assert [lv.layer for lv in levels] == ["fc2", "fc1", "conv1"]
    with Randomizer(model, seed=3) as rnd:
        for level in levels:
            rnd.set_randomized(level.randomized)
            top = set(SCORED[::-1][:level.index])
            assert set(level.randomized) == top
            for name in SCORED:
                current = model.get_layer(name).get_weights()
                if name in top:
                    for w, r, o in zip(current, rnd.random_weights(name), original[name]):
                        np.testing.assert_array_equal(w, r)
                    assert not np.array_equal(current[0], original[name][0])
                else:
                    for w, o in zip(current, original[name]):
                        np.testing.assert_array_equal(w, o)
    independent = randomization_levels(model, SCORED, mode="independent")
    assert [lv.randomized for lv in independent] == [("fc2",), ("fc1",), ("conv1",)]
    partial = randomization_levels(model, ["conv1", "fc2"])
    assert [lv.randomized for lv in partial] == [("fc2",), ("conv1", "fc1", "fc2")]
    with pytest.raises(KeyError, match="nope"):
        randomization_levels(model, ["nope"])


def test_random_weights_are_fresh_keras_initialisations():
    model = small_cnn()
    with Randomizer(model, seed=0) as a, Randomizer(model, seed=0) as b, \
            Randomizer(model, seed=1) as c:
        kernel, bias = a.random_weights("fc1")
        np.testing.assert_array_equal(kernel, b.random_weights("fc1")[0])
        assert not np.array_equal(kernel, c.random_weights("fc1")[0])
        assert not np.array_equal(kernel[:6, :6], a.random_weights("fc2")[0][:6, :6])
        limit = np.sqrt(6.0 / (36 + 6))  # glorot_uniform, Keras's default kernel init
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
        np.testing.assert_array_equal(bias, 0.0)  # zeros, Keras's default bias init
    assert layer_seed(0, 1) != layer_seed(0, 2) != layer_seed(1, 1)


@pytest.mark.parametrize("method", ["gradient", "lrp.alpha_2_beta_1"])
def test_in_place_randomisation_equals_fresh_analyzer(images, method):
    network = ModelNetwork("tiny", small_cnn(softmax=True))
    model = analysis_model(network)
    analyzer = create_analyzer(method, model, neuron_selection_mode="index")
    targets = [0, 2]
    before = analyzer.analyze(images, neuron_selection=targets)
    graph = tf.compat.v1.get_default_graph()
    n_ops = len(graph.get_operations())
    levels = randomization_levels(model, SCORED)
    with Randomizer(model, seed=5) as rnd:
        rnd.set_randomized(levels[1].randomized)  # fc2 and fc1
        randomized = analyzer.analyze(images, neuron_selection=targets)
        random_values = {name: rnd.random_weights(name) for name in levels[1].randomized}
        rnd.set_randomized(())
        again = analyzer.analyze(images, neuron_selection=targets)
    assert len(graph.get_operations()) == n_ops  # the analyzer graph was reused
    np.testing.assert_array_equal(again, before)
    assert not np.allclose(randomized, before)

    fresh = small_cnn(softmax=True, seed=0)
    for name, values in random_values.items():
        fresh.get_layer(name).set_weights(values)
    fresh_analyzer = create_analyzer(method, fresh, neuron_selection_mode="index")
    expected = fresh_analyzer.analyze(images, neuron_selection=targets)
    np.testing.assert_allclose(randomized, expected, rtol=1e-5, atol=1e-6)


class Boom(Exception):
    """An error raised in the middle of a run."""


def tiny_run_inputs(rng):
    user_model = small_cnn(softmax=True)
    network = ModelNetwork("tiny", user_model, input_range=(-3.0, 3.0))
    images = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    return user_model, network, images, [0, 1, 2], select_methods("Gradient,LRP a1b0")


def test_weights_restored_after_run(tmp_path, rng):
    user_model, network, images, labels, specs = tiny_run_inputs(rng)
    original = weights_of(user_model)
    store = run_sanity(network, images, labels, [0, 1, 2], specs, tmp_path, seed=1, chunk=2)
    assert_bit_identical(original, weights_of(user_model))
    table = store.table()
    assert len(table) == 2 * 3 * 3 * 4  # methods x images x levels x metrics
    assert set(table.metric) == {"ssim_paper", "ssim_standard", "spearman_abs", "spearman"}
    assert set(table.level) == {1, 2, 3} and table.value.dropna().between(-1, 1).all()
    # a constant map (here: LRP a1b0 once the top layers are random) has no
    # SSIM in either recipe (nor a Spearman correlation); such rows are NaN and flagged
    keyed = table.set_index(["method", "image_id", "level", "metric"])
    paper_nan = keyed.xs("ssim_paper", level="metric").value.isna()
    assert paper_nan.any() and paper_nan.equals(keyed.xs("spearman", level="metric").value.isna())
    assert paper_nan.equals(keyed.xs("ssim_standard", level="metric").value.isna())
    assert table[table.value.isna()].nonfinite.all()


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_weights_restored_after_exception_mid_run(tmp_path, rng, error):
    user_model, network, images, labels, specs = tiny_run_inputs(rng)
    original = weights_of(user_model)

    def interrupt(_n):
        raise error()

    with pytest.raises(error):
        run_sanity(network, images, labels, [0, 1, 2], specs, tmp_path, seed=1,
                   chunk=1, progress=interrupt)
    assert_bit_identical(original, weights_of(user_model))
    assert len(list((tmp_path / "sanity_cascading" / "units").glob("*.csv"))) == 1


def test_weight_sync_refuses_an_analyzer_on_copied_weights(images):
    from tensorflow import keras
    from csc_analyzers.experiments.sanity import weight_sync
    model = small_cnn()
    own = create_analyzer("lrp.z", model, neuron_selection_mode="index")
    own.analyze(images, neuron_selection=[0, 1])
    weight_sync(own, "LRP-z", model)()  # reads the model's variables: accepted
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    other = create_analyzer("lrp.z", copy, neuron_selection_mode="index")
    other.analyze(images, neuron_selection=[0, 1])
    with pytest.raises(ValueError, match="LRP-z.*conv1"):
        weight_sync(other, "LRP-z", model)


def test_stored_ssims_are_the_recipes_on_the_saved_maps(tmp_path, rng):
    """Both experiments score with the method's own percentile (RectGrad: 100)
    and in the paper's order (sanity: randomised map first; random logit:
    true-class map first)."""
    from csc_analyzers.experiments.random_logit import run_random_logit
    from csc_analyzers.experiments.sanity import maps_path
    from csc_analyzers.metrics.ssim import ssim

    _user_model, network, images, labels, _specs = tiny_run_inputs(rng)
    specs = select_methods("RectGrad,Gradient")
    assert [s.ssim_percentile for s in specs] == [100.0, 99.5]
    sanity = run_sanity(network, images, labels, [0, 1, 2], specs, tmp_path, seed=1,
                        save_maps_for=[0, 1]).table()
    logit = run_random_logit(network, images, labels, [0, 1, 2], specs, tmp_path, seed=1,
                             save_maps_for=[0, 1]).table()
    checked, percentile_matters = 0, 0
    for spec, image in itertools.product(specs, (0, 1)):
        key = ("tiny", spec.name, image)
        maps = np.load(maps_path(tmp_path, "sanity_cascading", key))["maps"]
        pairs = [(level, maps[level], maps[0]) for level in range(1, len(maps))]
        true_map, other_map = np.load(maps_path(tmp_path, "random_logit", key))["maps"]
        pairs.append((0, true_map, other_map))
        for level, a, b in pairs:
            table = sanity if level else logit
            rows = table[(table.method == spec.name) & (table.image_id == image)
                         & (table.level == level)].set_index("metric").value
            for recipe in ("paper", "standard"):
                expected = ssim(a, b, recipe=recipe, percentile=spec.ssim_percentile)
                if np.isnan(expected):  # a constant map: NaN in both recipes
                    assert np.isnan(rows[f"ssim_{recipe}"])
                    continue
                assert rows[f"ssim_{recipe}"] == pytest.approx(expected, rel=1e-8, abs=1e-9)
                checked += 1
            other_percentile = 99.5 if spec.ssim_percentile == 100 else 100.0
            percentile_matters += abs(ssim(a, b, percentile=other_percentile)
                                      - rows["ssim_paper"]) > 1e-6
    assert checked >= 28  # of methods x images x (3 levels + random logit) x recipes = 32
    assert percentile_matters >= 8


def test_resuming_a_store_with_the_old_ssim_metric_fails(tmp_path, rng):
    from csc_analyzers.errors import ArgumentError
    from csc_analyzers.experiments.store import ResultStore

    _user_model, network, images, labels, specs = tiny_run_inputs(rng)
    old = ResultStore(tmp_path, "sanity_cascading")
    old.write(("tiny", "Gradient", 0), [{"network": "tiny", "method": "Gradient",
                                         "metric": "ssim", "value": 0.9}])
    with pytest.raises(ArgumentError, match=r"sanity_cascading.*'ssim'.*new --out"):
        run_sanity(network, images, labels, [0, 1, 2], specs, tmp_path, seed=1)
    assert len(list(old.units_dir.glob("*.csv"))) == 1  # nothing was added


def test_randomizer_reads_all_weights_in_one_session_run(monkeypatch):
    """Entering and restoring read every weight layer in one session run each
    (a run per layer made the sanity check cost ~20 s per analyzer graph on
    MobileNetV2), and a weight changed by someone else is still put back."""
    from csc_analyzers.experiments import randomization

    model = small_cnn()
    original = weights_of(model)
    calls = []
    read_values = randomization.read_values
    monkeypatch.setattr(randomization, "read_values",
                        lambda tensors: calls.append(len(tensors)) or read_values(tensors))
    with Randomizer(model, seed=1) as rnd:
        assert calls == [sum(len(layer.weights) for layer in model.layers)]
        rnd.set_randomized(["fc2"])
        model.get_layer("conv1").set_weights(
            [w + 1 for w in model.get_layer("conv1").get_weights()])
        calls.clear()
    assert calls[0] == sum(len(layer.weights) for layer in model.layers)
    monkeypatch.undo()
    assert_bit_identical(original, weights_of(model))
