"""Relevance injection as CSC uses it: agreement with analyze(), linearity in
the injected relevance, the gradient as a vector-Jacobian product, and the
exact derivation-matrix check on a deep dense ReLU network."""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.injection import session
from csc_analyzers.convergence import derivation_matrices, singular_value_ratio
from csc_analyzers.metrics.csc import csc_summary, pairwise_cosine
from csc_analyzers.registry import ALL_METHODS, available_methods

import tensorflow as tf
from tensorflow import keras

INPUT_RANGE = (-3.0, 3.0)

ANALYZE_EQUIVALENCE = {  # analyzer key -> kwargs; gradient starts from the one-hot vector
    "lrp.z": {}, "lrp.alpha_1_beta_0": {},
    "deep_taylor.bounded": {"low": INPUT_RANGE[0], "high": INPUT_RANGE[1]},
    "gradient": {},
}

# Rules that are linear in the injected relevance once x is fixed (section 2).
# Each is tested as soon as its analyzer is registered in the factory.
LINEAR_METHODS = ("Gradient", "LRP-z", "LRP a1b0", "LRP a2b1", "LRP a5b4", "LRP z+",
                  "PatternNet", "PatternAttr.", "DeepLIFT Resc.")


def linear_specs():
    return [spec for spec in available_methods(ALL_METHODS) if spec.name in LINEAR_METHODS]


def random_patterns(model, rng):
    """Any patterns (one array per Conv2D/Dense kernel) keep PatternNet and
    PatternAttribution linear in the injected relevance."""
    return {layer.name: rng.normal(size=layer.kernel.shape).astype("float32")
            for layer in model.layers if isinstance(layer, (keras.layers.Conv2D,
                                                            keras.layers.Dense))}


def build(spec, model, rng):
    kwargs = spec.analyzer_kwargs(INPUT_RANGE)
    if spec.needs_patterns:
        kwargs["patterns"] = random_patterns(model, rng)
    return csc_analyzers.create_analyzer(spec.analyzer, model, **kwargs)


@pytest.mark.parametrize("name", sorted(ANALYZE_EQUIVALENCE))
def test_injecting_one_hot_logit_reproduces_analyze(name, cnn, images):
    analyzer = csc_analyzers.create_analyzer(name, cnn, neuron_selection_mode="index",
                                             **ANALYZE_EQUIVALENCE[name])
    scales = []
    for index in range(3):
        reference = analyzer.analyze(images, neuron_selection=index)
        logits = analyzer.forward(images, ["fc2"])["fc2"]
        start = np.zeros_like(logits)
        if name == "gradient":
            start[:, index] = 1.0
        else:  # LRP and DTD start from the logit (DTD also from a negative one)
            start[:, index] = logits[:, index]
        injected = analyzer.propagate(images, start, "fc2", ["input"])["input"]
        scale = np.abs(reference).max()
        scales.append(scale)
        np.testing.assert_allclose(injected, reference, rtol=0, atol=1e-5 * max(scale, 1e-30))
    assert max(scales) > 0


@pytest.mark.parametrize("spec", linear_specs(), ids=lambda s: s.name)
def test_propagate_is_linear_in_the_relevance(spec, cnn, images, rng):
    analyzer = build(spec, cnn, rng)
    x = images[:1]
    for layer in ("fc2", "fc1"):
        shape = analyzer.relevance_shape(layer)
        v1, v2 = rng.normal(size=(2, 1) + shape).astype("float32")
        a, b = 1.7, -0.6
        batch = np.concatenate([v1, v2, a * v1 + b * v2])
        out = analyzer.propagate(x, batch, layer, ["input", "conv1"])
        for name, r in out.items():
            combined = a * r[0] + b * r[1]
            scale = np.abs(r).max()
            assert scale > 0, f"{spec.name}: zero relevance at {name}"
            np.testing.assert_allclose(r[2], combined, rtol=0, atol=2e-5 * scale)


def test_guided_backprop_is_not_linear_in_the_relevance(cnn, images, rng):
    analyzer = csc_analyzers.create_analyzer("guided_backprop", cnn)
    v = rng.normal(size=(1,) + analyzer.relevance_shape("fc2")).astype("float32")
    out = analyzer.propagate(images[:1], np.concatenate([v, -v]), "fc2", ["input"])["input"]
    # a linear map would give r(-v) = -r(v); the ReLU on the backward signal does not
    assert np.abs(out[0] + out[1]).max() > 1e-3 * np.abs(out).max()


def test_gradient_injection_is_a_vector_jacobian_product(cnn, images, rng):
    analyzer = csc_analyzers.create_analyzer("gradient", cnn)
    analyzer.create_analyzer_model()
    fc1_out = analyzer._injection_points["fc1"][0]
    conv1_out = analyzer._injection_points["conv1"][0]
    x_in = analyzer._injection_input
    v = rng.normal(size=(2,) + analyzer.relevance_shape("fc1")).astype("float32")
    grad_ys = tf.compat.v1.placeholder(tf.float32, fc1_out.shape)
    vjp = tf.gradients(fc1_out, [x_in, conv1_out], grad_ys=grad_ys)
    expected = session().run(vjp, {x_in: images, grad_ys: v})
    injected = analyzer.propagate(images, v, "fc1", ["input", "conv1"])
    np.testing.assert_allclose(injected["input"], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(injected["conv1"], expected[1], rtol=1e-5, atol=1e-6)



def test_integrated_gradients_of_one_image_average_vector_jacobian_products(cnn, rng):
    """Integrated Gradients' propagate for one image and n vectors (one
    forward pass per chunk of path points, one backward pass per vector)
    equals the mean over the path points of the plain gradient's VJPs, times
    x - x0 at the input; the chunking does not change it, and a second image
    reuses the graph."""
    steps, x0 = 6, 0.5
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    v = rng.normal(size=(3,) + tuple(cnn.output_shape[1:])).astype("float32")
    layers = ["input", "conv1", "fc1"]
    gradient = csc_analyzers.create_analyzer("gradient", cnn)
    t = (np.arange(steps, dtype="float32") / steps).reshape(-1, 1, 1, 1)
    points = x0 + t * (x - x0)
    expected = {name: 0.0 for name in layers}
    for point in points:
        vjp = gradient.propagate(point[None], v, "fc2", layers)
        for name in layers:
            expected[name] = expected[name] + vjp[name] / steps
    expected["input"] = (x - x0) * expected["input"]
    for batch_size in (4, 256):  # one path point per session run; all in one run
        ig = csc_analyzers.create_analyzer("integrated_gradients", cnn, steps=steps,
                                           reference_inputs=x0, batch_size=batch_size)
        got = ig.propagate(x, v, "fc2", layers)
        for name in layers:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5,
                                       atol=1e-6 * np.abs(expected[name]).max(), err_msg=name)
    n_ops = len(session().graph.get_operations())
    other = ig.propagate(x + 1.0, v, "fc2", layers)
    assert len(session().graph.get_operations()) == n_ops
    assert not np.allclose(other["input"], got["input"])

def dense_relu_net(seed=0, width=128, depth=6, n_in=32, n_out=10):
    rng = np.random.default_rng(seed)
    inp = keras.Input((n_in,), name="x")
    h = inp
    for i in range(depth - 1):
        h = keras.layers.Dense(width, activation="relu", name=f"fc{i + 1}")(h)
    out = keras.layers.Dense(n_out, name=f"fc{depth}")(h)
    model = keras.Model(inp, out)
    model.set_weights([rng.normal(0, np.sqrt(2.0 / w.shape[0]), w.shape).astype("float32")
                       if w.ndim == 2 else np.full(w.shape, 0.1, "float32")
                       for w in model.get_weights()])
    return model, rng.normal(size=(1, n_in)).astype("float32")


def test_z_plus_converges_to_rank_one_and_the_gradient_does_not():
    model, x = dense_relu_net()
    results = {}
    for name in ("lrp.z_plus", "gradient"):
        analyzer = csc_analyzers.create_analyzer(name, model)
        v = np.random.default_rng(1).normal(size=(5, 10)).astype("float32")
        r = analyzer.propagate(x, v, "fc6", ["input"])["input"]
        csc = csc_summary(pairwise_cosine(r))["median"]
        ratio = singular_value_ratio(derivation_matrices(analyzer, x, "fc6", ["input"])["input"])
        results[name] = (csc, ratio)
    csc, ratio = results["lrp.z_plus"]
    assert csc > 0.999 and ratio > 1e3, results
    csc, ratio = results["gradient"]
    assert csc < 0.999 and ratio < 1e3, results


def test_derivation_matrix_reproduces_propagate(cnn, images, rng):
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_1_beta_0", cnn)
    matrices = derivation_matrices(analyzer, images[:1], "fc1", ["input", "pool1"],
                                   batch_size=4)
    v = rng.normal(size=(3, 6)).astype("float32")
    out = analyzer.propagate(images[:1], v, "fc1", ["input", "pool1"])
    for name, matrix in matrices.items():
        assert matrix.shape == (out[name][0].size, 6)
        np.testing.assert_allclose((matrix @ v.T).T, out[name].reshape(3, -1),
                                   rtol=1e-4, atol=1e-5 * np.abs(out[name]).max())


def injection_specs():
    """Registry methods whose analyzer uses :class:`InjectionMixin` directly
    or averages gradients (SmoothGrad, Integrated Gradients) through it."""
    from csc_analyzers.injection import InjectionMixin
    from csc_analyzers.methods.smoothgrad import GradientAverage
    return [spec for spec in available_methods(ALL_METHODS)
            if isinstance(csc_analyzers.analyzers.get(spec.analyzer), type)
            and issubclass(csc_analyzers.analyzers[spec.analyzer],
                           (InjectionMixin, GradientAverage))]


# on the ResNet one method per rule family by default, every method with -m heavy
RESNET_FAMILIES = {"Gradient", "GuidedBP", "LRP-z", "LRP a2b1", "DTD", "Integrated Gradients"}


@pytest.mark.parametrize("network,methods", [
    ("cnn", "all"), ("resnet", "families"),
    pytest.param("resnet", "all", marks=pytest.mark.heavy)])
def test_one_image_forward_once_equals_repeated_image(network, methods, rng):
    """propagate with a batch-1 image (forward pass once, fed to every layer;
    once per averaged input for SmoothGrad / Integrated Gradients) gives the
    relevances of the image repeated once per vector, for every rule, on a
    plain CNN and on a ResNet with BatchNorm, Add and dropout."""
    from conftest import small_cnn
    from residual_nets import small_resnet
    model, top, below = ((small_cnn(), "fc2", ["input", "conv1", "fc1"]) if network == "cnn"
                         else (small_resnet(seed=2), "logits", ["input", "stem_conv", "gap"]))
    x = rng.normal(size=(1,) + tuple(model.input_shape[1:])).astype("float32")
    vectors = rng.normal(size=(4,) + tuple(model.output_shape[1:])).astype("float32")
    specs = injection_specs()
    assert RESNET_FAMILIES <= {spec.name for spec in specs}
    if methods == "families":
        specs = [spec for spec in specs if spec.name in RESNET_FAMILIES]
    for spec in specs:
        analyzer = build(spec, model, rng)
        once = analyzer.propagate(x, vectors, top, below)
        repeated = analyzer.propagate(np.repeat(x, 4, axis=0), vectors, top, below)
        for layer in below:
            scale = max(np.abs(repeated[layer]).max(), 1e-30)
            np.testing.assert_allclose(once[layer], repeated[layer], rtol=0, atol=1e-5 * scale,
                                       err_msg=f"{spec.name} at {layer}")


def test_propagate_names_a_batch_that_does_not_divide_the_vectors(cnn, rng):
    analyzer = build(next(s for s in injection_specs() if s.name == "LRP-z"), cnn, rng)
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    with pytest.raises(ValueError, match="batch size 3, relevance has 4 vectors"):
        analyzer.propagate(x, np.ones((4, 3), np.float32), "fc2", "input")
