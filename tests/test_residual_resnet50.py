"""ResNet-50 (random weights, random BN statistics, one 224x224 image):
BN folding is output-equal and leaves the model untouched; rule-based and
gradient-type methods run. Seconds per image for every method:
scripts/time_methods.py --network resnet50 --batch 1.

The BN fold (an equality) is part of the default run; the methods that only
run (smoke tests) need ``-m heavy``."""
import numpy as np
import pytest
from tensorflow import keras

import csc_analyzers
from residual_support import fold_batchnorm
from residual_nets import randomize_bn

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_graph():
    """This module shares one graph (overrides the per-test clear_session)."""
    yield


@pytest.fixture(scope="module")
def resnet50():
    keras.backend.clear_session()
    model = keras.applications.ResNet50(weights=None)
    randomize_bn(model, np.random.default_rng(0))
    yield model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).uniform(-120, 150, (1, 224, 224, 3)).astype("float32")


def test_fold_batchnorm_resnet50(resnet50, image):
    before = [w.copy() for w in resnet50.get_weights()]
    folded = fold_batchnorm(resnet50)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    # compare the logits: the softmax of random weights saturates
    logits = [keras.Model(m.inputs, m.layers[-1].input) for m in (resnet50, folded)]
    a, b = (m.predict(image, verbose=0) for m in logits)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert all(np.array_equal(u, v) for u, v in zip(before, resnet50.get_weights()))


@pytest.mark.heavy
@pytest.mark.parametrize("name,kwargs", [
    ("lrp.alpha_2_beta_1", {}),
    ("guided_backprop", {}),
])
def test_methods_run_on_resnet50(name, kwargs, resnet50, image):
    result = csc_analyzers.create_analyzer(name, resnet50, **kwargs).analyze(image)
    assert result.shape == image.shape
    assert np.all(np.isfinite(result)) and np.abs(result).sum() > 0
