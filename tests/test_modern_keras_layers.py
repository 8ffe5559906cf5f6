"""The layers of modern Keras networks: each rule on a new layer type against a
numpy reference or an identity, the gate convention of Multiply, nested
models, and one refusal that lists every blocking layer.

References: a linear layer's matrix ``M`` is read by applying the layer
(without bias and activation) to the unit vectors; the rules are then the
textbook formulas on ``M`` (epsilon: ``R_x = x * M^T (R / (z + eps sign z))``;
alpha-beta: activator / inhibitor with ``M+`` and ``M-``).
"""
import numpy as np
import pytest
import tensorflow as tf

import csc_analyzers
from residual_support import layers as rlayers
from residual_support.flatten import flatten_model
from residual_support.linear import separable_kernel
from tensorflow import keras
from tensorflow.keras import layers as klayers

SHAPE = (5, 5, 2)


def _randomize(model, rng, scale=0.5):
    model.set_weights([rng.normal(0, scale, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _linear_matrix(kernel_layer, rng):
    """The model ``x -> kernel_layer(x) (relu) -> Flatten -> Dense(1, no bias)``
    with random weights, and the matrix of the kernel layer's linear part
    (rows: flat inputs, columns: flat outputs)."""
    inp = keras.Input(SHAPE)
    h = kernel_layer(inp)
    out = klayers.Dense(1, use_bias=False, name="head")(klayers.Flatten()(h))
    model = _randomize(keras.Model(inp, out), rng)
    n = int(np.prod(SHAPE))
    basis = np.eye(n, dtype=np.float32).reshape((n,) + SHAPE)
    config = kernel_layer.get_config()
    config.update(activation="linear", use_bias=False, name="linear_copy")
    copy = type(kernel_layer).from_config(config)
    probe = keras.Model(inp, klayers.Flatten()(copy(inp)))
    weights = kernel_layer.get_weights()
    copy.set_weights(weights[:len(copy.get_weights())])
    matrix = probe.predict(basis, verbose=0)
    bias = weights[-1] if kernel_layer.use_bias else None
    return model, matrix, bias


def _epsilon_reference(x, matrix, bias, head, eps):
    """LRP-epsilon of ``head . relu(M x + b)`` for one flat input ``x``."""
    z = x @ matrix + (0.0 if bias is None else np.tile(bias, matrix.shape[1] // bias.size))
    a = np.maximum(z, 0)
    y = a @ head
    stab = lambda v: v + eps * np.where(v >= 0, 1.0, -1.0)  # noqa: E731
    r_a = a * head[:, 0] * (y / stab(y))
    return x * (matrix @ (r_a / stab(z)))


def _alpha_beta_reference(x, matrix, head, alpha, beta):
    """LRP alpha-beta (bias free) of ``head . relu(M x)``; the Dense head gets
    the same rule with its relevance the logit."""
    z = x @ matrix
    a = np.maximum(z, 0)

    def rule(inp, m, r):
        pos, neg = np.maximum(m, 0), np.minimum(m, 0)
        xp, xn = np.maximum(inp, 0), np.minimum(inp, 0)
        div = lambda r_, z_: np.divide(r_, z_, out=np.zeros_like(r_), where=z_ != 0)  # noqa
        act = div(r, xp @ pos + xn @ neg)
        inh = div(r, xp @ neg + xn @ pos)
        return (alpha * (xp * (pos @ act) + xn * (neg @ act))
                - beta * (xp * (neg @ inh) + xn * (pos @ inh)))

    y = a @ head
    r_a = rule(a, head, y)
    return rule(x, matrix, r_a)


KERNEL_LAYERS = {
    "depthwise": lambda: klayers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu",
                                                 name="dw"),
    "depthwise_strided_same": lambda: klayers.DepthwiseConv2D(
        3, strides=2, padding="same", activation="relu", name="dw"),
    "separable": lambda: klayers.SeparableConv2D(3, 3, depth_multiplier=2,
                                                 activation="relu", name="sep"),
    "separable_same": lambda: klayers.SeparableConv2D(4, 3, padding="same",
                                                      activation="relu", name="sep"),
}


@pytest.mark.parametrize("kind", sorted(KERNEL_LAYERS))
def test_epsilon_rule_equals_dense_matrix_computation(kind, rng):
    model, matrix, bias = _linear_matrix(KERNEL_LAYERS[kind](), rng)
    head = model.get_layer("head").get_weights()[0]
    x = rng.normal(size=(3,) + SHAPE).astype(np.float32)
    ours = csc_analyzers.create_analyzer("lrp.epsilon", model, epsilon=0.1).analyze(x)
    for i in range(len(x)):
        want = _epsilon_reference(x[i].ravel(), matrix, bias, head, 0.1)
        np.testing.assert_allclose(ours[i].ravel(), want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["depthwise", "separable"])
@pytest.mark.parametrize("method,alpha,beta", [("lrp.alpha_1_beta_0", 1, 0),
                                               ("lrp.alpha_2_beta_1", 2, 1)])
def test_alpha_beta_on_one_linear_map(kind, method, alpha, beta, rng):
    """alpha-beta on DepthwiseConv2D and on SeparableConv2D as ONE linear map
    (W+ of the product kernel, not of its two factors), bias free."""
    layer = KERNEL_LAYERS[kind]()
    layer_config = layer.get_config()
    layer = type(layer).from_config({**layer_config, "use_bias": False})
    model, matrix, _ = _linear_matrix(layer, rng)
    head = model.get_layer("head").get_weights()[0]
    x = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    ours = csc_analyzers.create_analyzer(method, model).analyze(x)
    for i in range(len(x)):
        want = _alpha_beta_reference(x[i].ravel(), matrix, head, alpha, beta)
        np.testing.assert_allclose(ours[i].ravel(), want, rtol=2e-4, atol=1e-5)


def test_separable_kernel_is_the_layers_map(rng):
    layer = klayers.SeparableConv2D(3, 3, depth_multiplier=2, padding="same", use_bias=False)
    inp = keras.Input(SHAPE)
    model = _randomize(keras.Model(inp, layer(inp)), rng)
    depthwise, pointwise = layer.get_weights()
    kernel = keras.backend.get_value(separable_kernel(tf.constant(depthwise),
                                                      tf.constant(pointwise)))
    x = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    conv = keras.backend.get_value(keras.backend.conv2d(tf.constant(x), tf.constant(kernel),
                                                        padding="same"))
    np.testing.assert_allclose(conv, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_z_rule_conserves_on_bias_free_modern_net(rng):
    """Bias-free ReLU net with depthwise, separable, LeakyReLU, Rescaling(1/255)
    and a squeeze-excite gate: LRP-z sums to the logit (conservation)."""
    inp = keras.Input((6, 6, 3))
    h = klayers.Rescaling(1 / 255)(inp)
    h = klayers.Conv2D(4, 3, padding="same", use_bias=False)(h)
    h = klayers.LeakyReLU(0.2)(h)
    h = klayers.DepthwiseConv2D(3, padding="same", use_bias=False, activation="relu")(h)
    h = klayers.SeparableConv2D(5, 3, padding="same", use_bias=False, activation="relu")(h)
    g = klayers.GlobalAveragePooling2D(keepdims=True)(h)
    g = klayers.Dense(5, activation="sigmoid")(g)
    h = klayers.Multiply()([h, g])
    out = klayers.Dense(3, use_bias=False)(klayers.Flatten()(h))
    model = _randomize(keras.Model(inp, out), rng)
    x = rng.uniform(0, 255, size=(3, 6, 6, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer("lrp.z", model, neuron_selection_mode="index")
    maps = analyzer.analyze(x, neuron_selection=1)
    logits = model.predict(x, verbose=0)[:, 1]
    np.testing.assert_allclose(maps.reshape(3, -1).sum(1), logits, rtol=1e-4, atol=1e-5)


def test_leaky_relu_net_lrp_z_equals_gradient_times_input(rng):
    """Relevance passes LeakyReLU unchanged: on a bias-free net LRP-z is
    gradient x input (a / z is the local slope)."""
    inp = keras.Input((6, 6, 2))
    h = klayers.Conv2D(4, 3, use_bias=False)(inp)
    h = klayers.LeakyReLU(0.1)(h)
    h = klayers.DepthwiseConv2D(2, use_bias=False)(h)
    h = klayers.PReLU()(h)
    out = klayers.Dense(2, use_bias=False)(klayers.Flatten()(h))
    model = _randomize(keras.Model(inp, out), rng)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    z = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)
    gi = csc_analyzers.create_analyzer("input_t_gradient", model).analyze(x)
    np.testing.assert_allclose(z, gi, rtol=1e-4, atol=1e-6)


def test_affine_layers_follow_the_z_rule(rng):
    """Rescaling(k1, b1) -> Normalization(mean, var) -> Dense(1, no bias): the
    z-rule gives ``k1 k2 w x`` (hand computed: each affine unit hands
    k x / (k x + b) of its relevance to x)."""
    inp = keras.Input((4,))
    h = klayers.Rescaling(0.5, offset=0.3)(inp)
    mean, var = np.array([0.1, -0.2, 0.3, 0.0]), np.array([4.0, 0.25, 1.0, 9.0])
    h = klayers.Normalization(mean=mean, variance=var)(h)
    dense = klayers.Dense(1, use_bias=False)
    model = keras.Model(inp, dense(h))
    w = rng.normal(size=(4, 1)).astype(np.float32)
    dense.set_weights([w])
    x = rng.normal(size=(3, 4)).astype(np.float32)
    ours = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)
    want = x * 0.5 / np.sqrt(var) * w[:, 0]
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)
    beta = csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", model).analyze(x)
    assert np.isfinite(beta).all()


def test_gate_gets_no_relevance(rng):
    """Multiply(signal, gate): the signal input receives the product's relevance
    unchanged, the gate nothing (injected at the product, read at both)."""
    inp = keras.Input((4, 4, 3))
    h = klayers.Conv2D(3, 1, activation="relu", name="conv")(inp)
    g = klayers.Dense(3, activation="sigmoid", name="gate")(
        klayers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(h))
    m = klayers.Multiply(name="excite")([h, g])
    model = _randomize(keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(m))), rng)
    x = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer("lrp.epsilon", model)
    v = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    out = analyzer.propagate(x, v, "excite", ["gate", "conv"])
    np.testing.assert_allclose(out["gate"], 0.0)
    assert rlayers.gate_index(model.get_layer("excite")) == 1


def test_nested_models_are_flattened_and_the_user_model_is_unchanged(rng):
    inner = keras.Sequential([klayers.RandomFlip("horizontal"),
                              klayers.Conv2D(3, 3, activation="relu", use_bias=False),
                              klayers.MaxPooling2D()], name="features")
    head = keras.Sequential([klayers.Flatten(), klayers.Dense(3, use_bias=False)],
                            name="head")
    inp = keras.Input((6, 6, 2))
    model = _randomize(keras.Model(inp, head(inner(inp))), rng)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    before = (model.to_json(), model.predict(x, verbose=0), len(model.layers))
    flat = flatten_model(model)
    assert [type(layer).__name__ for layer in flat.layers] == [
        "InputLayer", "RandomFlip", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    np.testing.assert_allclose(flat.predict(x, verbose=0), before[1], rtol=1e-6)
    z = csc_analyzers.create_analyzer("lrp.z", model).analyze(x)
    gi = csc_analyzers.create_analyzer("input_t_gradient", model).analyze(x)
    np.testing.assert_allclose(z, gi, rtol=1e-4, atol=1e-6)
    assert model.to_json() == before[0] and len(model.layers) == before[2]
    np.testing.assert_allclose(model.predict(x, verbose=0), before[1], rtol=1e-6)


def test_one_refusal_lists_every_blocking_layer_before_any_graph(rng):
    inp = keras.Input((6, 4))
    h = klayers.LayerNormalization(name="norm_a")(inp)
    h = klayers.Dense(4)(h)
    h = klayers.Lambda(lambda t: 2 * t, name="double")(h)
    h = klayers.LayerNormalization(name="norm_b")(h)
    model = keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h)))
    graph = tf.compat.v1.get_default_graph()
    n_ops = len(graph.get_operations())
    with pytest.raises(rlayers.UnsupportedLayerError) as info:
        csc_analyzers.create_analyzer("lrp.epsilon", model)
    message = str(info.value)
    assert "'norm_a', 'norm_b' (LayerNormalization)" in message
    assert "'double' (Lambda)" in message and "3 layers" in message
    assert len(graph.get_operations()) == n_ops
    assert np.isfinite(csc_analyzers.create_analyzer("gradient", model, allow_lambda_layers=True)
                       .analyze(rng.normal(size=(1, 6, 4)).astype(np.float32))).all()


def test_checks_list_blocking_layers_per_type_and_method():
    from csc_analyzers import checks
    from csc_analyzers.registry import select_methods

    inp = keras.Input((6, 6, 3))
    h = klayers.Conv2D(2, 3)(inp)
    h = klayers.LayerNormalization(name="ln")(h)
    h = klayers.ReLU(threshold=0.5, name="relu_t")(h)
    model = keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h)))
    with pytest.raises(csc_analyzers.errors.UnsupportedLayerError) as info:
        checks.check_layers(model, select_methods("Gradient,LRP-z,DeepLIFT Resc."))
    message = str(info.value)
    assert "'ln' (LayerNormalization)" in message and "LRP-z" in message
    assert "'relu_t' (ReLU)" in message and "DeepLIFT Resc." in message
    checks.check_layers(model, select_methods("Gradient,SmoothGrad"))


def test_deeplift_sums_to_delta_on_modern_layers(rng):
    inner = keras.Sequential([klayers.SeparableConv2D(4, 3, padding="same"),
                              klayers.BatchNormalization(),
                              klayers.LeakyReLU(0.2)], name="block")
    inp = keras.Input((6, 6, 3))
    h = klayers.Rescaling(1 / 127.5, offset=-1)(inp)
    h = klayers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5])(h)
    a = klayers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    b = inner(h)
    h = klayers.Concatenate()([a, b])
    h = klayers.GlobalAveragePooling2D()(h)
    model = _randomize(keras.Model(inp, klayers.Dense(3, activation="tanh")(h)), rng)
    model.get_layer("block").layers[1].set_weights(
        [np.abs(w) + 0.5 for w in model.get_layer("block").layers[1].get_weights()])
    x = rng.uniform(0, 255, size=(2, 6, 6, 3)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer("deep_lift.wrapper", model,
                                             neuron_selection_mode="index")
    scores = analyzer.analyze(x, neuron_selection=2)
    f = model.predict(np.concatenate([x, np.zeros_like(x[:1])]), verbose=0)[:, 2]
    np.testing.assert_allclose(scores.reshape(2, -1).sum(1), f[:2] - f[2], rtol=1e-4,
                               atol=1e-5)


def test_support_table_covers_every_family_and_layer():
    table = rlayers.support_table_markdown()
    for family in rlayers.FAMILIES:
        assert f"| {family} " in table or f" {family} |" in table
    for cls in list(rlayers.RULE_SUPPORT) + list(rlayers.PATTERN_SUPPORT):
        assert f"| {cls.__name__} |" in table
    for name in rlayers.DEEPLIFT_SUPPORT:
        assert f"| {name} |" in table
    assert "LayerNormalization" not in table  # refused by the rules: not a row


@pytest.mark.parametrize("mode", ["rescale", "reveal_cancel"])
def test_deeplift_monotonic_activations_sum_to_delta(mode, rng):
    """ReLU6, ELU (layer and activation) and softplus: summation-to-delta."""
    inp = keras.Input((6, 6, 2))
    h = klayers.Conv2D(4, 3, padding="same")(inp)
    h = klayers.ReLU(6.0)(h)
    h = klayers.Conv2D(4, 3, padding="same", activation="elu")(h)
    h = klayers.ELU(0.5)(h)
    h = klayers.Dense(3, activation="softplus")(klayers.Flatten()(h))
    model = _randomize(keras.Model(inp, klayers.Dense(2)(h)), rng, scale=1.0)
    x = rng.normal(0, 3, size=(2, 6, 6, 2)).astype(np.float32)
    analyzer = csc_analyzers.create_analyzer("deep_lift.wrapper", model, nonlinear_mode=mode,
                                             neuron_selection_mode="index")
    scores = analyzer.analyze(x, neuron_selection=1)
    f = model.predict(np.concatenate([x, np.zeros_like(x[:1])]), verbose=0)[:, 1]
    np.testing.assert_allclose(scores.reshape(2, -1).sum(1), f[:2] - f[2], rtol=1e-4,
                               atol=1e-5)
    first = keras.Model(inp, model.layers[1].output).predict(x, verbose=0)
    assert (first > 6).any() and (first < 0).any()  # both kinks of ReLU6 are used


def test_deeplift_refusal_lists_every_layer():
    inp = keras.Input((6, 6, 2))
    h = klayers.Conv2D(2, 3, activation="swish", name="c1")(inp)
    h = klayers.Conv2D(2, 3, activation="swish", name="c2")(h)
    h = klayers.LayerNormalization(name="ln")(h)
    model = keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h)))
    with pytest.raises(csc_analyzers.errors.UnsupportedLayerError) as info:
        csc_analyzers.create_analyzer("deep_lift.wrapper", model)
    message = str(info.value)
    assert "'c1', 'c2' (Conv2D)" in message and "'ln' (LayerNormalization)" in message


@pytest.mark.parametrize("method", ["lrp.z", "lrp.epsilon", "gradient"])
def test_equals_innvestigate_on_linear_modern_layers(method, rng):
    """Depthwise, separable, transposed convolutions and upsampling: the z and
    epsilon rules depend only on the linear map, so they equal innvestigate's
    (forced past its model checks); the gradient too."""
    import innvestigate

    inp = keras.Input((6, 6, 2))
    h = klayers.DepthwiseConv2D(3, padding="same", activation="relu")(inp)
    h = klayers.SeparableConv2D(3, 3, activation="relu")(h)
    h = klayers.UpSampling2D()(h)
    h = klayers.Conv2DTranspose(2, 3, strides=2, activation="relu")(h)
    model = _randomize(keras.Model(inp, klayers.Dense(2)(klayers.Flatten()(h))), rng)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    ours = csc_analyzers.create_analyzer(method, model).analyze(x)
    theirs = innvestigate.create_analyzer(method, model, disable_model_checks=True).analyze(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * np.abs(theirs).max())
