"""PatternNet / PatternAttribution on VGG-16 with random weights, patterns
from a handful of generated images (module-scoped: one graph, one pass)."""
import time

import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)
from tensorflow import keras

from csc_analyzers import create_analyzer
from csc_analyzers.pattern import estimate_patterns
from csc_analyzers.pattern.storage import pattern_layers

METHODS = ["pattern.net", "pattern.attribution"]
N_IMAGES = 8


def generated_images(n, rng, size=224):
    """Smooth random colour images (upsampled 7x7 noise plus fine noise), uint8."""
    coarse = rng.uniform(0, 255, size=(n, 7, 7, 3))
    smooth = np.repeat(np.repeat(coarse, size // 7, axis=1), size // 7, axis=2)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype("uint8")


@pytest.fixture(scope="module")
def vgg16():
    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    model = keras.applications.VGG16(weights=None)
    images = keras.applications.vgg16.preprocess_input(
        generated_images(N_IMAGES, rng).astype("float32"))
    start = time.perf_counter()
    patterns = estimate_patterns(model, [images[i:i + 4] for i in range(0, N_IMAGES, 4)],
                                 "linear", positions_per_image=256,
                                 rng=np.random.default_rng(1))
    print(f"\nVGG-16 pattern pass ({N_IMAGES} images, batches of 4, 256 positions per "
          f"image): {time.perf_counter() - start:.1f} s")
    return model, patterns, images[:1]


@pytest.fixture
def fresh_graph():
    """The VGG tests share the module's graph (overrides the autouse fixture)."""
    yield


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("method", METHODS)
def test_vgg16_random_weights(vgg16, method):
    model, patterns, x = vgg16
    assert set(patterns.patterns) == {layer.name for layer in pattern_layers(model)}
    # a plain dict (fingerprints are tested on small models; hashing VGG-16 is slow)
    heatmap = create_analyzer(method, model, patterns=patterns.patterns).analyze(x)
    assert heatmap.shape == x.shape
    assert np.isfinite(heatmap).all() and np.abs(heatmap).max() > 0
