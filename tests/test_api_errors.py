"""Bad input through the API: each case raises its named error (an
InputError subclass naming the culprit) before any session run, and
exploding relevance gives a RelevanceExplosionWarning naming the layer."""
import warnings

import numpy as np
import pytest
from tensorflow import keras

import csc_analyzers
from csc_analyzers import errors, factory
from csc_analyzers.model_input import (EXPLOSION_BOUND, check_batch, check_neuron_selection,
                                       relevance_growth)

from conftest import small_cnn


def deep_net(seed=0):
    """3 convolutions and 7 dense layers, ReLU, random weights: alpha5-beta4
    multiplies |R|_1 by about 3 per layer here, LRP-z keeps it within ~10."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((8, 8, 3), name="image")
    h = inp
    for k in range(3):
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"conv{k}")(h)
    h = keras.layers.Flatten(name="flat")(h)
    for k in range(6):
        h = keras.layers.Dense(32, activation="relu", name=f"fc{k}")(h)
    out = keras.layers.Dense(4, name="logits")(h)
    model = keras.Model(inp, out, name="deep")
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("method", ["gradient", "lrp.z", "deep_lift.wrapper",
                                    "integrated_gradients"])
def test_empty_batch(method):
    analyzer = csc_analyzers.create_analyzer(method, small_cnn())
    with pytest.raises(errors.EmptyBatchError, match=r"X: empty batch \(shape \(0, 8, 8, 3\)\)"):
        analyzer.analyze(np.zeros((0, 8, 8, 3), np.float32))


@pytest.mark.parametrize("method", ["gradient", "lrp.z", "deep_lift.wrapper", "smoothgrad"])
def test_nan_and_inf_inputs_are_refused_with_counts(method, images):
    analyzer = csc_analyzers.create_analyzer(method, small_cnn())
    bad = images.copy()
    bad[1, 2, 3, 0] = np.nan
    bad[1, 0, 0, 1] = np.nan
    bad[0, 4, 4, 2] = -np.inf
    with pytest.raises(errors.NonFiniteInputError) as info:
        analyzer.analyze(bad)
    text = str(info.value)
    assert text.startswith("X: 2 NaN (at (1, 0, 0, 1), (1, 2, 3, 0)) and 1 Inf (at (0, 4, 4, 2))")
    assert f"of {bad.size} positions, in image(s) [0, 1]" in text


def test_propagate_refuses_nan_input(images):
    analyzer = csc_analyzers.create_analyzer("lrp.z", small_cnn())
    bad = images[:1].copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(errors.NonFiniteInputError, match="x: 1 Inf"):
        analyzer.propagate(bad, np.ones((2, 3), np.float32), "fc2")


@pytest.mark.parametrize("method", ["gradient", "lrp.z", "deep_lift.wrapper"])
@pytest.mark.parametrize("selection, match", [
    (3, r"neuron_selection \[3\]: out of range; the model has 3 outputs \(indices 0 to 2\)"),
    ([0, -1], r"neuron_selection \[-1\]: out of range"),
    ([0, 1, 2], "3 indices for a batch of 2 images"),
])
def test_neuron_selection_out_of_range(method, selection, match, images):
    analyzer = csc_analyzers.create_analyzer(method, small_cnn(),
                                             neuron_selection_mode="index")
    with pytest.raises(errors.NeuronSelectionError, match=match):
        analyzer.analyze(images, neuron_selection=selection)
    maps = analyzer.analyze(images, neuron_selection=[2, 0])  # in range: runs
    assert maps.shape == images.shape


def test_neuron_selection_needs_index_mode(images):
    analyzer = csc_analyzers.create_analyzer("gradient", small_cnn())
    with pytest.raises(errors.NeuronSelectionError, match="neuron_selection_mode is "
                                                          "'max_activation'"):
        analyzer.analyze(images, neuron_selection=1)


def test_wrong_shape_names_the_axis(images):
    analyzer = csc_analyzers.create_analyzer("gradient", small_cnn())
    with pytest.raises(errors.InputShapeError, match=r"axis 1: 9 instead of 8"):
        analyzer.analyze(np.zeros((2, 9, 8, 3), np.float32))
    with pytest.raises(errors.InputShapeError, match="for one image use x\\[None\\]"):
        analyzer.analyze(images[0])


def test_errors_are_input_errors():
    for cls in (errors.EmptyBatchError, errors.NonFiniteInputError,
                errors.NeuronSelectionError, errors.EagerModelError):
        assert issubclass(cls, errors.InputError) and issubclass(cls, ValueError)


def test_check_functions_directly():
    model = small_cnn()
    assert check_batch(model, np.zeros((1, 8, 8, 3), np.float64)).dtype == np.float32
    check_neuron_selection(np.array([1.0, 2.0]), n_outputs=3, batch=2, mode="index")
    with pytest.raises(errors.NeuronSelectionError, match="not integer"):
        check_neuron_selection(1.5, n_outputs=3, batch=1, mode="index")
    with pytest.raises(errors.NeuronSelectionError, match="needs neuron_selection"):
        check_neuron_selection(None, n_outputs=3, batch=1, mode="index")


def test_check_inputs_false_keeps_innvestigates_behaviour(images):
    """Experiments score undefined maps themselves: with check_inputs=False a
    NaN input gives a map (NaN), no error."""
    analyzer = csc_analyzers.create_analyzer("lrp.z", small_cnn(), check_inputs=False)
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    assert np.isnan(analyzer.analyze(bad)[0]).any()


def test_canonize_checks_layers_before_folding(monkeypatch):
    """A layer the method cannot pass is refused before BatchNormalization is
    folded (which took minutes on large models)."""
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Reshape((6, 24))(h)
    h = keras.layers.LSTM(3)(h)
    model = keras.Model(inp, keras.layers.Dense(3)(h))

    def folding(*args, **kwargs):
        raise AssertionError("fold_batchnorm ran before the layer check")

    monkeypatch.setattr(factory, "fold_batchnorm", folding)
    with pytest.raises(errors.UnsupportedLayerError, match=r"'lstm' \(LSTM\)"):
        csc_analyzers.create_analyzer("lrp.z", model, canonize=True)


def test_canonize_still_folds_supported_models(images):
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    analyzer = csc_analyzers.create_analyzer("lrp.z", model, canonize=True)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in analyzer._model.layers)


def _explosion_warnings(analyzer, x):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = analyzer.analyze(x)
    return maps, [w for w in caught if issubclass(w.category, errors.RelevanceExplosionWarning)]


def test_explosion_warning_names_the_layer(rng):
    model = deep_net()
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    bound = 1e3
    exploding = csc_analyzers.create_analyzer("lrp.alpha_beta", model, alpha=5, beta=4)
    exploding.explosion_bound = bound
    maps, caught = _explosion_warnings(exploding, x)
    assert len(caught) == 1
    # the ratio the warning quotes is the map's |R|_1 over the image's max |logit|
    logits = model.predict(x, verbose=0)
    ratio = np.abs(maps).reshape(2, -1).sum(axis=1) / np.abs(logits).max(axis=1)
    worst = int(np.argmax(ratio))
    assert ratio[worst] > bound
    text = str(caught[0].message)
    assert f"image {worst}'s map has |R|_1 = {ratio[worst]:.3g} x" in text
    # the named layer: the highest one whose relevance passes the bound
    ratios, first = relevance_growth(exploding, x[worst:worst + 1],
                                     target=int(np.argmax(logits[worst])), bound=bound)
    assert f"first exceeds the bound at layer {first!r}" in text
    order = ["input", "conv0", "conv1", "conv2", "flat"] + [f"fc{k}" for k in range(6)]
    above = order[order.index(first) + 1:]
    assert ratios[first] > bound and all(ratios[name] <= bound for name in above)
    np.testing.assert_allclose(ratios["input"], ratio[worst], rtol=1e-4)
    # LRP-z conserves relevance: no warning at the same bound, nor at the default
    for bound_z in (bound, EXPLOSION_BOUND):
        conserving = csc_analyzers.create_analyzer("lrp.z", model)
        conserving.explosion_bound = bound_z
        assert not _explosion_warnings(conserving, x)[1]


def test_gradient_maps_are_not_checked_for_explosion(rng):
    analyzer = csc_analyzers.create_analyzer("gradient", deep_net())
    analyzer.explosion_bound = 1e-9
    assert not _explosion_warnings(analyzer, rng.normal(size=(1, 8, 8, 3)).astype("f"))[1]


@pytest.mark.parametrize("name", ["integrated_gradients", "input_t_gradient"])
def test_growth_of_gradient_attributions_is_measured_on_the_map(name, rng):
    """Integrated Gradients and input x gradient pass gradients through the
    hidden layers: their relevance growth has the input only, and its ratio
    is the map's |R|_1 over the largest |logit|."""
    from csc_analyzers.model_input import gradients_inside

    model = deep_net()
    x = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer(name, model, neuron_selection_mode="index")
    assert gradients_inside(analyzer)
    logits = model.predict(x, verbose=0)[0]
    target = int(np.argmax(logits))
    ratios, first = relevance_growth(analyzer, x, target=target, bound=1e-9)
    assert sorted(ratios) == sorted(["input", "logits"]) and first == "input"
    map_ = analyzer.analyze(x, neuron_selection=[target])
    np.testing.assert_allclose(ratios["input"], np.abs(map_).sum() / np.abs(logits).max(),
                               rtol=1e-4)
    lrp = csc_analyzers.create_analyzer("lrp.z", model)
    assert not gradients_inside(lrp)
    assert len(relevance_growth(lrp, x, target=target)[0]) > 2
