"""Pattern estimators: signal recovery, streaming vs one-shot numpy, Conv2D vs
Dense on unfolded patches, files, fingerprints and resumable statistics."""
import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)
import tensorflow as tf
from tensorflow import keras

from csc_analyzers.injection import session
from csc_analyzers.pattern import PatternEstimator, estimate_patterns, load_patterns, save_patterns
from csc_analyzers.pattern.estimators import linear_pattern


def cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def batched(x, size):
    return [x[i:i + size] for i in range(0, len(x), size)]


def test_signal_plus_distractor_recovers_signal_direction(rng):
    dim, n = 8, 20000
    a_s, a_d = rng.normal(size=dim), rng.normal(size=dim)
    w = rng.normal(size=dim)
    w -= (w @ a_d) / (a_d @ a_d) * a_d  # w orthogonal to the distractor
    x = (rng.normal(size=(n, 1)) * a_s + rng.normal(size=(n, 1)) * a_d).astype("float32")
    inp = keras.Input((dim,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, name="out")(inp))
    model.layers[-1].set_weights([w[:, None].astype("float32")])
    pattern = estimate_patterns(model, batched(x, 1000)).patterns["out"][:, 0]
    assert abs(cosine(pattern, a_s)) > 0.999  # sign fixed by w^T a = 1
    assert abs(cosine(w, a_s)) < 0.9  # the weights do not show the signal
    assert np.isclose(pattern @ w, 1.0, atol=1e-5)  # eq. 9 normalisation w^T a = 1


def conv_model(seed=0, activation="relu", padding="same", strides=2, bn=False):
    rng = np.random.default_rng(seed)
    inp = keras.Input((9, 9, 3), name="image")
    h = keras.layers.Conv2D(5, 3, strides=strides, padding=padding,
                            activation=None if bn else activation, name="conv")(inp)
    if bn:
        h = keras.layers.BatchNormalization(name="bn")(h)
        h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    out = keras.layers.Dense(4, activation="relu", name="fc")(h)
    model = keras.Model(inp, out, name="conv_model")
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    if bn:  # non-default BN statistics; variance positive
        bn_layer = model.get_layer("bn")
        gamma, beta, mean, var = bn_layer.get_weights()
        bn_layer.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
    return model


def extract_patches(x, layer):
    """Independent unfold: tf.image.extract_patches on the layer's input."""
    tensor = tf.image.extract_patches(
        tf.constant(x), sizes=[1, *layer.kernel_size, 1], strides=[1, *layer.strides, 1],
        rates=[1, *layer.dilation_rate, 1], padding=layer.padding.upper())
    patches = session().run(tensor)
    return patches.reshape(-1, patches.shape[-1]).astype(np.float64), patches.shape[1:3]


def numpy_patterns(x, y, positive=None):
    """One-shot reference of the matrix that eq. 9 normalises: cov(x, y) from
    np.cov, or E+[xy] - E+[x] E[y] of the two-component estimator."""
    if positive is None:
        return np.cov(x.T, y.T, bias=True)[:x.shape[1], x.shape[1]:]
    pos = positive.astype(np.float64)
    n_pos = np.maximum(pos.sum(axis=0), 1)  # never-active neurons: zero pattern
    mean_x_pos = (x.T @ pos) / n_pos
    mean_xy_pos = (x.T @ (y * pos)) / n_pos
    return mean_xy_pos - mean_x_pos * y.mean(axis=0)


@pytest.mark.parametrize("estimator", ["linear", "relu"])
def test_streaming_equals_one_shot_numpy_and_conv_equals_dense_on_patches(rng, estimator):
    model = conv_model()
    x = rng.normal(size=(21, 9, 9, 3)).astype("float32")
    streamed = estimate_patterns(model, batched(x, 4), estimator)
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    k2 = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    patches, (oh, ow) = extract_patches(x, conv)
    y = patches @ k2
    positive = (y + bias > 0) if estimator == "relu" else None
    reference = linear_pattern(numpy_patterns(patches, y, positive), k2).reshape(kernel.shape)
    np.testing.assert_allclose(streamed.patterns["conv"], reference, rtol=1e-6, atol=1e-6)
    assert streamed.n_samples["conv"] == 21 * oh * ow

    # the same patterns from a Dense layer fed with the unfolded patches
    inp = keras.Input((patches.shape[1],))
    dense_model = keras.Model(inp, keras.layers.Dense(
        k2.shape[1], activation="relu", name="conv")(inp))
    dense_model.layers[-1].set_weights([k2.astype("float32"), bias])
    dense = estimate_patterns(dense_model, batched(patches.astype("float32"), 50), estimator)
    np.testing.assert_allclose(dense.patterns["conv"].reshape(kernel.shape),
                               streamed.patterns["conv"], rtol=1e-6, atol=1e-6)

    fc = model.get_layer("fc")
    h = np.maximum(y + bias, 0).reshape(len(x), -1)
    y_fc = h @ fc.get_weights()[0].astype(np.float64)
    positive = (y_fc + fc.get_weights()[1] > 0) if estimator == "relu" else None
    reference = linear_pattern(numpy_patterns(h, y_fc, positive), fc.get_weights()[0])
    np.testing.assert_allclose(streamed.patterns["fc"], reference, rtol=1e-5, atol=1e-6)


def test_relu_estimator_follows_batchnorm_to_the_relu(rng):
    model = conv_model(bn=True, padding="valid", strides=1)
    x = rng.normal(size=(12, 9, 9, 3)).astype("float32")
    result = estimate_patterns(model, batched(x, 5), "relu")
    assert result.layer_estimators == {"conv": "relu", "fc": "relu"}
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    kernel, bias = conv.get_weights()
    gamma, beta, mean, var = bn.get_weights()
    k2 = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    patches, _ = extract_patches(x, conv)
    y = patches @ k2
    after_bn = gamma * (y + bias - mean) / np.sqrt(var + bn.epsilon) + beta
    reference = linear_pattern(numpy_patterns(patches, y, after_bn > 0), k2)
    np.testing.assert_allclose(result.patterns["conv"], reference.reshape(kernel.shape),
                               rtol=1e-5, atol=1e-6)


def test_layer_without_relu_gets_linear_estimator(rng, cnn):
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    result = estimate_patterns(cnn, [x], "relu")
    assert result.layer_estimators == {"conv1": "relu", "fc1": "relu", "fc2": "linear"}
    linear = estimate_patterns(cnn, [x], "linear")
    np.testing.assert_allclose(result.patterns["fc2"], linear.patterns["fc2"], rtol=1e-6)


def test_all_sampled_positions_equal_full_pass(rng):
    model = conv_model(padding="valid", strides=1)
    x = rng.normal(size=(5, 9, 9, 3)).astype("float32")
    full = estimate_patterns(model, batched(x, 2), "relu")
    sampled = estimate_patterns(model, batched(x, 2), "relu", positions_per_image=49,
                                rng=np.random.default_rng(3))
    np.testing.assert_allclose(sampled.patterns["conv"], full.patterns["conv"], rtol=1e-6)
    few = estimate_patterns(model, batched(x, 2), "relu", positions_per_image=10)
    assert few.n_samples["conv"] == 5 * 10
    assert np.isfinite(few.patterns["conv"]).all()


def test_save_load_and_fingerprint_error(tmp_path, rng, cnn):
    from conftest import small_cnn
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    result = estimate_patterns(cnn, batched(x, 3), "relu")
    path = save_patterns(tmp_path / "p.npz", result)
    loaded = load_patterns(path, cnn)
    assert loaded.estimator == "relu" and loaded.n_samples == result.n_samples
    for name, pattern in result.patterns.items():
        np.testing.assert_array_equal(loaded.patterns[name], pattern)
    other = small_cnn(seed=1)
    with pytest.raises(ValueError, match=r"p\.npz.*layer 'conv1'.*other weights"):
        load_patterns(path, other)
    with pytest.raises(ValueError, match="conv1"):
        csc_analyzers.create_analyzer("pattern.net", other, patterns=str(path))


def test_resumed_statistics_equal_one_pass(tmp_path, rng, cnn):
    from conftest import small_cnn
    batches = batched(rng.normal(size=(20, 8, 8, 3)).astype("float32"), 4)
    full = PatternEstimator(cnn, "relu").fit(batches).patterns()
    partial = PatternEstimator(cnn, "relu")
    partial.fit(batches[:2], checkpoint=tmp_path / "stats.npz", checkpoint_every=1)
    resumed = PatternEstimator(cnn, "relu")
    assert resumed.load_statistics(tmp_path / "stats.npz") == 2
    resumed.fit(batches, skip=2)
    for name, pattern in full.patterns.items():
        np.testing.assert_allclose(resumed.patterns().patterns[name], pattern, rtol=1e-6)
    with pytest.raises(ValueError, match="linear"):
        PatternEstimator(cnn, "linear").load_statistics(tmp_path / "stats.npz")
    with pytest.raises(ValueError, match=r"stats\.npz.*layer 'conv1'"):
        PatternEstimator(small_cnn(seed=2), "relu").load_statistics(tmp_path / "stats.npz")
