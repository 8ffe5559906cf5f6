"""DeepLIFT after in-place weight changes: sync_weights() re-loads every
kernel, bias and BatchNormalization parameter into the existing graph."""
import numpy as np
import pytest

from csc_analyzers.methods.deeplift_wrapper import DeepLiftAnalyzer
from csc_analyzers.experiments.randomization import Randomizer, weight_layers
from csc_analyzers.injection import session
from conftest import small_cnn
from deeplift_nets import _randomize as randomize_weights
from deeplift_nets import cifar_like_net, small_resnet
from residual_support.deeplift_layers import GraphWeight

NETS = {"cifar": cifar_like_net, "resnet": small_resnet}
MODES = {"rescale": dict(nonlinear_mode="rescale"),
         "ablation": dict(nonlinear_mode="rescale", cross_mxts=False)}


def _inputs(model, n, seed):
    shape = (n,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _op_count():
    return len(session().graph.get_operations())


def _assert_summation_to_delta(model, x, target, contributions):
    """Contributions sum to the Keras logit difference f_k(x) - f_k(0)."""
    rows = np.arange(len(x))
    delta = (model.predict(x, verbose=0) - model.predict(np.zeros_like(x), verbose=0))
    delta = delta[rows, target]
    np.testing.assert_allclose(contributions.reshape(len(x), -1).sum(axis=1), delta,
                               rtol=1e-4, atol=1e-4 * np.abs(delta).max())


@pytest.mark.parametrize("net", ["cifar", pytest.param("resnet", marks=pytest.mark.slow)])
def test_sync_follows_in_place_changes_without_new_ops(net):
    model = NETS[net](seed=1, softmax=False)
    x = _inputs(model, 3, seed=2)
    target = np.array([1, 4, 7])
    analyzers = {mode: DeepLiftAnalyzer(model, neuron_selection_mode="index", **kwargs)
                 for mode, kwargs in MODES.items()}
    original = {mode: analyzer.analyze(x, target) for mode, analyzer in analyzers.items()}
    converted = analyzers["rescale"]._converted
    assert converted.source_layers() == [layer.name for layer in weight_layers(model)]
    names = [layer.name for layer in weight_layers(model)]
    with Randomizer(model, seed=3) as randomizer:
        # every layer new (BN: negative gammas, non-trivial statistics), then
        # the top half from Keras's initialisers
        randomize_weights(model, np.random.default_rng(9))
        randomizer.set_randomized(names[len(names) // 2:])
        for mode, analyzer in analyzers.items():
            before = _op_count()
            analyzer.sync_weights()
            changed = analyzer.analyze(x, target)
            assert _op_count() == before, mode
            fresh = DeepLiftAnalyzer(model, neuron_selection_mode="index", **MODES[mode])
            expected = fresh.analyze(x, target)
            np.testing.assert_allclose(changed, expected, rtol=1e-5,
                                       atol=1e-6 * np.abs(expected).max(), err_msg=mode)
            assert not np.allclose(changed, original[mode], rtol=1e-2), mode
            if mode == "rescale":  # the ablation drops terms: no summation-to-delta
                _assert_summation_to_delta(model, x, target, changed)
    for mode, analyzer in analyzers.items():  # the Randomizer restored the weights
        analyzer.sync_weights()
        np.testing.assert_allclose(analyzer.analyze(x, target), original[mode], rtol=1e-5,
                                   atol=1e-6 * np.abs(original[mode]).max(), err_msg=mode)
    if net == "resnet":  # each BN parameter is synchronised: only the moving variance
        analyzer = analyzers["rescale"]
        unchanged = analyzer.predict(x)
        bn = model.get_layer("block2_proj_bn")
        saved = bn.get_weights()
        bn.set_weights(saved[:3] + [saved[3] * 4.0])
        try:
            analyzer.sync_weights()
            changed, expected = analyzer.predict(x), model.predict(x, verbose=0)
        finally:
            bn.set_weights(saved)
        assert not np.allclose(changed, unchanged, rtol=1e-2)
        np.testing.assert_allclose(changed, expected, rtol=1e-4, atol=1e-5)


def test_sync_before_first_use_is_a_no_op_and_graph_uses_current_weights():
    model = small_cnn(seed=7)
    analyzer = DeepLiftAnalyzer(model)
    before = _op_count()
    analyzer.sync_weights()
    assert _op_count() == before
    model.set_weights(small_cnn(seed=8).get_weights())
    x = _inputs(model, 2, seed=9)
    np.testing.assert_allclose(analyzer.predict(x), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_graph_weight_rejects_arrays_of_the_wrong_shape():
    model = small_cnn(seed=1)
    analyzer = DeepLiftAnalyzer(model)
    analyzer.predict(_inputs(model, 1, seed=0))
    weight = analyzer._converted.graph_weights[0]
    with pytest.raises(ValueError, match="from layer 'conv1'"):
        GraphWeight.load_all([(weight, np.zeros((2, 2), np.float32))], session())


@pytest.mark.slow
def test_sanity_run_with_the_deeplift_methods(tmp_path):
    from csc_analyzers.experiments.common import analysis_model, build_analyzer, explain
    from csc_analyzers.experiments.randomization import randomization_levels
    from csc_analyzers.experiments.sanity import maps_path, run_sanity
    from csc_analyzers.models import load_network
    from csc_analyzers.registry import PAPER_METHODS

    network = load_network("cifar-net", weights=None)
    specs = [s for s in PAPER_METHODS if s.analyzer == "deep_lift.wrapper"]
    rng = np.random.default_rng(0)
    images = network.preprocess(rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8))
    labels = np.array([3, 5])
    original = [w.copy() for w in network.model.get_weights()]
    store = run_sanity(network, images, labels, [0, 1], specs, tmp_path, seed=2,
                       save_maps_for=[1])
    for a, b in zip(original, network.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    table = store.table()
    n_levels = len(network.sanity_layers)
    assert set(table["method"]) == {s.name for s in specs}
    assert len(table) == len(specs) * 2 * n_levels * 4
    assert table["value"].notna().all()
    # the maps of the run equal a freshly converted model at the same level
    model = analysis_model(network)
    levels = randomization_levels(model, network.sanity_layers, aliases=network.aliases)
    spec = specs[-1]
    stored = np.load(maps_path(tmp_path, "sanity_cascading", (network.name, spec.name, 1)))
    stored = stored["maps"]
    assert stored.shape == (n_levels + 1, 32, 32)
    with Randomizer(model, seed=2) as randomizer:
        level = levels[-1]
        randomizer.set_randomized(level.randomized)
        network.analyzer_cache.pop(spec.name, None)  # a freshly built analyzer, not the run's
        fresh = build_analyzer(spec, model, network)
        np.testing.assert_allclose(explain(fresh, images[1], labels[1], spec),
                                   stored[level.index], rtol=1e-4,
                                   atol=1e-5 * np.abs(stored[level.index]).max())


def test_sync_of_batchnorm_without_scale_or_center():
    from tensorflow import keras
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inp)
    h = keras.layers.BatchNormalization(scale=False, name="bn_no_scale")(h)
    h = keras.layers.BatchNormalization(center=False, name="bn_no_center")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(h)))
    rng = np.random.default_rng(3)
    x = _inputs(model, 2, seed=4)

    def new_weights():
        model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                           for w in model.get_weights()])

    new_weights()
    analyzer = DeepLiftAnalyzer(model)
    first = analyzer.predict(x)
    np.testing.assert_allclose(first, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    new_weights()
    analyzer.sync_weights()
    second = analyzer.predict(x)
    assert not np.allclose(first, second, rtol=1e-2)
    np.testing.assert_allclose(second, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_sync_of_named_layers_reloads_only_those_layers():
    """A cascading level re-loads only the layers the randomisation changed:
    after ``sync_weights([name])`` that layer's graph weights follow Keras,
    the other changed layer's keep their old values, and syncing it too
    gives the fresh analyzer's maps."""
    model = cifar_like_net(seed=4, softmax=False)
    x = _inputs(model, 2, seed=5)
    target = np.array([3, 6])
    analyzer = DeepLiftAnalyzer(model, neuron_selection_mode="index")
    original = analyzer.analyze(x, target)
    names = [layer.name for layer in weight_layers(model)]
    top, below = names[-1], names[-2]

    def graph_values(layer):
        weights = [w for w in analyzer._converted.graph_weights if w.source.layer == layer]
        return session().run([w.variable for w in weights])

    stale_below = graph_values(below)
    with Randomizer(model, seed=6) as randomizer:
        changed = randomizer.set_randomized([top, below])
        assert changed == [below, top]
        analyzer.sync_weights([top])
        for got, keras_value in zip(graph_values(top), model.get_layer(top).get_weights()):
            np.testing.assert_array_equal(got, keras_value)
        for got, old in zip(graph_values(below), stale_below):
            np.testing.assert_array_equal(got, old)
        analyzer.sync_weights([below])
        fresh = DeepLiftAnalyzer(model, neuron_selection_mode="index").analyze(x, target)
        np.testing.assert_allclose(analyzer.analyze(x, target), fresh, rtol=1e-5,
                                   atol=1e-6 * np.abs(fresh).max())
        restored = randomizer.set_randomized([top])
        assert restored == [below]
        analyzer.sync_weights(restored)
        assert randomizer.set_randomized([top]) == []
        analyzer.sync_weights(randomizer.set_randomized(()))
    np.testing.assert_allclose(analyzer.analyze(x, target), original, rtol=1e-5,
                               atol=1e-6 * np.abs(original).max())
