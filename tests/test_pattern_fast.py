"""The graph statistics give the patterns of the NumPy float64 estimator the
package used before (tests/pattern_reference.py) on the CIFAR net's trained
weights and the built-in training images, to float64 accumulation error."""
import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)
from tensorflow import keras

from csc_analyzers.data import builtin
from csc_analyzers.models import load_network
from csc_analyzers.pattern import estimate_patterns
from csc_analyzers.pattern.training import batches_of

from pattern_reference import ReferenceEstimator


def relative_errors(new, old):
    """Per layer: ||new - old|| / ||old|| and max |new - old| / max |old|."""
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    return (np.linalg.norm(new - old) / np.linalg.norm(old),
            np.abs(new - old).max() / np.abs(old).max())


@pytest.mark.slow
@pytest.mark.parametrize("estimator,n_images,tolerance",
                         [("relu", 128, 1e-6), ("linear", 64, 5e-6)])
def test_cifar_net_patterns_equal_the_numpy_float64_estimator(estimator, n_images, tolerance):
    """relu: the estimator of the default run. linear: conv1's float32 products
    of [0, 1] pixels set its bound (2e-6 measured with 65,536 patches per
    session run; runs now hold 16 images, 16,384 patches)."""
    network = load_network("cifar-net", progress=False)  # trained, cached weights
    images = builtin.load("train", n=n_images, seed=0)[0]
    batches = list(batches_of(iter(images), 64, network.preprocess))
    fast = estimate_patterns(network.model, batches, estimator)
    reference = ReferenceEstimator(network.model, estimator).fit(batches).patterns()
    assert set(fast.patterns) == set(reference) == {"conv1", "conv2", "conv3", "conv4",
                                                    "fc5", "fc6"}
    for name, pattern in reference.items():
        assert np.abs(pattern).max() > 0
        norm_error, max_error = relative_errors(fast.patterns[name], pattern)
        assert norm_error < tolerance and max_error < tolerance, (name, norm_error, max_error)


def offset_model(seed=0):
    """Inputs far from zero (mean 50), a fused-ReLU conv without bias, a strided
    "same" conv, a dense layer with a fused ReLU: cancellation-prone sums."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((10, 10, 2))
    h = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, activation="relu",
                            name="conv_a")(inp)
    h = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="conv_b")(h)
    h = keras.layers.ReLU(name="relu_b")(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(4, activation="relu", name="fc")(h)
    model = keras.Model(inp, out)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("estimator", ["relu", "linear"])
@pytest.mark.parametrize("positions", [None, 7])
def test_offset_inputs_and_sampled_positions_equal_the_reference(rng, estimator, positions):
    model = offset_model()
    x = (50 + rng.normal(size=(30, 10, 10, 2))).astype("float32")
    batches = [x[i:i + 8] for i in range(0, len(x), 8)]
    fast = estimate_patterns(model, batches, estimator, positions_per_image=positions,
                             rng=np.random.default_rng(5))
    reference = ReferenceEstimator(model, estimator, positions_per_image=positions,
                                   rng=np.random.default_rng(5)).fit(batches).patterns()
    for name, pattern in reference.items():
        norm_error, max_error = relative_errors(fast.patterns[name], pattern)
        assert norm_error < 1e-5 and max_error < 1e-5, (name, norm_error, max_error)
    if positions is not None:
        assert fast.n_samples["conv_a"] == 30 * positions
