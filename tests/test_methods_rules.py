"""The project's methods against numpy references and the paper's identities."""
import numpy as np
import pytest
from tensorflow import keras

import csc_analyzers
from conftest import small_cnn
from csc_analyzers.injection import INPUT


def random_weights(model, rng, scale=0.5, zero_bias=False):
    weights = []
    for w in model.get_weights():
        if w.ndim == 1 and zero_bias:
            weights.append(np.zeros_like(w))
        else:
            weights.append(rng.normal(0, scale, w.shape).astype("float32"))
    model.set_weights(weights)
    return model


def dense_relu_net(seed=0):
    """Dense -> separate ReLU -> Dense(fused ReLU) -> Dense logits."""
    inp = keras.Input((10,), name="x")
    h = keras.layers.Dense(24, name="d1")(inp)
    h = keras.layers.Activation("relu", name="r1")(h)
    h = keras.layers.Dense(16, activation="relu", name="d2")(h)
    out = keras.layers.Dense(4, name="d3")(h)
    return random_weights(keras.Model(inp, out), np.random.default_rng(seed))


def wide_cnn(seed=0, zero_bias=False):
    """Conv-ReLU-MaxPool-Conv-ReLU-Flatten-Dense-ReLU-Dense on 8x8x3."""
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(32, activation="relu", name="fc1")(h)
    out = keras.layers.Dense(5, name="fc2")(h)
    return random_weights(keras.Model(inp, out), np.random.default_rng(seed),
                          scale=0.3, zero_bias=zero_bias)


def rectgrad_reference(weights, x, q):
    """RectGrad of the max logit for the network of :func:`dense_relu_net`."""
    w1, b1, w2, b2, w3, b3 = [w.astype(np.float64) for w in weights]
    maps = []
    for xi in x.astype(np.float64):
        a1 = np.maximum(xi @ w1 + b1, 0)
        a2 = np.maximum(a1 @ w2 + b2, 0)
        k = np.argmax(a2 @ w3 + b3)
        g = w3[:, k]
        score = a2 * g
        g = np.where(score > np.percentile(score, q), g, 0.0)
        g = w2 @ g
        score = a1 * g
        g = np.where(score > np.percentile(score, q), g, 0.0)
        maps.append(w1 @ g)
    return np.stack(maps)


def one_hot_logits(logits, scale_by_logit=True):
    k = np.argmax(logits, axis=1)
    vectors = np.zeros_like(logits)
    vectors[np.arange(len(k)), k] = logits[np.arange(len(k)), k] if scale_by_logit else 1.0
    return vectors, k


def rel_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("q", [0, 50, 98])
def test_rectgrad_equals_numpy_reference(q, rng):
    model = dense_relu_net()
    x = rng.normal(size=(5, 10)).astype("float32")
    result = csc_analyzers.create_analyzer("rectgrad", model, percentile=q).analyze(x)
    expected = rectgrad_reference(model.get_weights(), x, q)
    assert np.abs(expected).sum() > 0
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_rectgrad_rejects_bad_percentile(cnn):
    with pytest.raises(ValueError, match="percentile"):
        csc_analyzers.create_analyzer("rectgrad", cnn, percentile=120)


def test_rectgrad_q98_is_sparser_than_q0(cnn, images):
    dense = csc_analyzers.create_analyzer("rectgrad", cnn, percentile=0).analyze(images)
    keras.backend.clear_session()
    sparse = csc_analyzers.create_analyzer("rectgrad", small_cnn(), percentile=98).analyze(images)
    assert np.count_nonzero(sparse) < np.count_nonzero(dense)


def test_lrp_z_equals_gradient_times_input(images):
    model = wide_cnn()
    lrp_z = csc_analyzers.create_analyzer("lrp.z", model).analyze(images)
    gradient = csc_analyzers.create_analyzer("gradient", model).analyze(images)
    assert rel_l2(lrp_z, gradient * images) < 1e-4


@pytest.mark.parametrize("name", ["lrp.alpha_1_beta_0", "excitation_backprop"])
def test_z_plus_relevances_non_negative(name, rng):
    model = wide_cnn()
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    logits = model.predict_on_batch(x)
    assert (logits.max(axis=1) > 0).all()
    analyzer = csc_analyzers.create_analyzer(name, model)
    assert analyzer.analyze(x).min() >= 0
    vectors, _ = one_hot_logits(logits)
    layers = ["fc1", "conv2", "pool1", "conv1", INPUT]
    for layer, relevance in analyzer.propagate(x, vectors, "fc2", layers).items():
        assert relevance.min() >= -1e-7, layer
        assert relevance.max() > 0, layer


@pytest.mark.parametrize("name,kwargs", [
    ("lrp.alpha_1_beta_0", {}),
    ("lrp.alpha_2_beta_1", {}),
    ("lrp.alpha_beta", {"alpha": 5, "beta": 4}),
])
def test_alpha_beta_conserves_relevance_layer_by_layer(name, kwargs, rng):
    model = wide_cnn(zero_bias=True)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    vectors, k = one_hot_logits(model.predict_on_batch(x))
    analyzer = csc_analyzers.create_analyzer(name, model, **kwargs)
    layers = ["fc1", "flatten", "conv2", "pool1", "conv1", INPUT]
    relevances = analyzer.propagate(x, vectors, "fc2", layers)
    total = vectors.sum(axis=1)
    for layer in layers:
        sums = relevances[layer].reshape(len(x), -1).sum(axis=1)
        np.testing.assert_allclose(sums, total, rtol=1e-3, err_msg=layer)


def test_excitation_backprop_is_z_plus_from_a_one_hot_start(rng):
    model = wide_cnn(zero_bias=True)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    result = csc_analyzers.create_analyzer("excitation_backprop", model).analyze(x)
    np.testing.assert_allclose(result.reshape(2, -1).sum(axis=1), 1.0, rtol=1e-4)
    z_plus = csc_analyzers.create_analyzer("lrp.z_plus", model).analyze(x)
    logit = model.predict_on_batch(x).max(axis=1).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(result, z_plus / logit, rtol=1e-4, atol=1e-7)


def sum_normalised(r):
    return r / r.reshape(len(r), -1).sum(axis=1).reshape((-1,) + (1,) * (r.ndim - 1))


def test_contrastive_lrp_equals_eq15(rng):
    model = wide_cnn()
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    logits = model.predict_on_batch(x)
    target, _ = one_hot_logits(logits)
    others = logits - target
    z_plus = csc_analyzers.create_analyzer("lrp.z_plus", model)
    r_target = z_plus.propagate(x, target, "fc2", INPUT)[INPUT]
    r_others = z_plus.propagate(x, others, "fc2", INPUT)[INPUT]
    difference = sum_normalised(r_target) - sum_normalised(r_others)
    for use_max, expected in [(True, np.maximum(difference, 0)), (False, difference)]:
        contrastive = csc_analyzers.create_analyzer("lrp.contrastive", model, use_max=use_max)
        result = contrastive.analyze(x)
        np.testing.assert_allclose(result, expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(expected).max())
        if use_max:
            assert result.min() >= 0
        else:
            assert result.min() < 0
            np.testing.assert_allclose(result.reshape(3, -1).sum(axis=1), 0.0, atol=1e-5)
    chain = contrastive.propagate(x, target, "fc2", INPUT)[INPUT]
    np.testing.assert_allclose(chain, r_target, rtol=1e-5, atol=1e-7)


def test_contrastive_lrp_index_mode_explains_given_class(rng):
    model = wide_cnn()
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    a = csc_analyzers.create_analyzer("lrp.contrastive", model, neuron_selection_mode="index")
    maps = [a.analyze(x, neuron_selection=k) for k in (0, 1)]
    assert not np.allclose(maps[0], maps[1])
    with pytest.raises(ValueError, match="neuron_selection_mode"):
        csc_analyzers.create_analyzer("lrp.contrastive", model, neuron_selection_mode="all")


def test_contrastive_excitation_backprop_equals_eq16(rng):
    model = wide_cnn()
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    logits = model.predict_on_batch(x)
    k = np.argmax(logits, axis=1)
    kernel = model.get_layer("fc2").get_weights()[0].astype(np.float64)
    excitation = csc_analyzers.create_analyzer("excitation_backprop", model)
    h = excitation.forward(x, ["fc1"])["fc1"].astype(np.float64)
    rows = []
    for hi, ki in zip(h, k):
        positive = np.maximum(kernel[:, ki] * hi, 0)
        negative = np.maximum(-kernel[:, ki] * hi, 0)
        rows.append(positive / positive.sum() - negative / negative.sum())
    r_fc1 = np.stack(rows).astype("float32")
    expected = excitation.propagate(x, r_fc1, "fc1", INPUT)[INPUT]
    result = csc_analyzers.create_analyzer(
        "excitation_backprop.contrastive", model).analyze(x)
    assert (result < 0).any() and (result > 0).any()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_contrastive_excitation_needs_dense_output():
    inp = keras.Input((8, 8, 3))
    out = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(3, 3, name="head")(inp))
    with pytest.raises(ValueError, match="Dense output layer"):
        csc_analyzers.create_analyzer("excitation_backprop.contrastive", keras.Model(inp, out))


@pytest.mark.parametrize("name,rule", [("lrp.cmp_alpha_1_beta_0", "Alpha1Beta0Rule"),
                                       ("lrp.cmp_alpha_2_beta_1", "Alpha2Beta1Rule")])
def test_cmp_uses_epsilon_on_dense_and_alpha_beta_on_conv(name, rule, rng):
    model = wide_cnn()
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    cmp_analyzer = csc_analyzers.create_analyzer(name, model)
    assert cmp_analyzer._rule_for_residual_layer(model.get_layer("conv1")).__name__ == rule
    vectors, _ = one_hot_logits(model.predict_on_batch(x))
    beta = "lrp.alpha_1_beta_0" if "1_beta_0" in name else "lrp.alpha_2_beta_1"
    conv_only = csc_analyzers.create_analyzer(beta, model)
    z_rule = csc_analyzers.create_analyzer("lrp.z", model)
    # dense layers: LRP-z (epsilon 1e-10); below them the convolution rule
    top = cmp_analyzer.propagate(x, vectors, "fc2", ["flatten"])["flatten"]
    np.testing.assert_allclose(top, z_rule.propagate(x, vectors, "fc2", "flatten")["flatten"],
                               rtol=1e-4, atol=1e-6)
    below = cmp_analyzer.propagate(x, top, "flatten", INPUT)[INPUT]
    np.testing.assert_allclose(below, conv_only.propagate(x, top, "flatten", INPUT)[INPUT],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cmp_analyzer.analyze(x), below, rtol=1e-4, atol=1e-6)


def test_smoothgrad_seeded_is_reproducible(cnn, images):
    kwargs = {"augment_by_n": 4, "noise_scale": 0.5}
    first = csc_analyzers.create_analyzer("smoothgrad.seeded", cnn, seed=3, **kwargs)
    second = csc_analyzers.create_analyzer("smoothgrad.seeded", cnn, seed=3, **kwargs)
    other = csc_analyzers.create_analyzer("smoothgrad.seeded", cnn, seed=4, **kwargs)
    a = first.analyze(images)
    np.testing.assert_array_equal(a, second.analyze(images))
    np.testing.assert_array_equal(a, first.analyze(images))
    assert not np.allclose(a, other.analyze(images))


def test_smoothgrad_without_noise_is_the_gradient(cnn, images):
    smooth = csc_analyzers.create_analyzer("smoothgrad.seeded", cnn, augment_by_n=3,
                                           noise_scale=0.0, seed=0).analyze(images)
    gradient = csc_analyzers.create_analyzer("gradient", cnn).analyze(images)
    np.testing.assert_allclose(smooth, gradient, rtol=1e-5, atol=1e-7)


def test_smoothgrad_propagate_averages_over_the_same_noise(cnn, images):
    analyzer = csc_analyzers.create_analyzer("smoothgrad.seeded", cnn, augment_by_n=5,
                                             noise_scale=0.3, seed=1)
    vectors, _ = one_hot_logits(cnn.predict_on_batch(images), scale_by_logit=False)
    injected = analyzer.propagate(images, vectors, "fc2", INPUT)[INPUT]
    np.testing.assert_allclose(injected, analyzer.analyze(images), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_equals_innvestigate(cnn, images):
    import innvestigate.analyzer as ianalyzer
    ours = csc_analyzers.create_analyzer("integrated_gradients", cnn, steps=8, batch_size=3)
    theirs = ianalyzer.IntegratedGradients(cnn, steps=8)
    np.testing.assert_allclose(ours.analyze(images), theirs.analyze(images),
                               rtol=1e-4, atol=1e-6)
