"""load_network(weights=None, seed=s) gives the same weights whatever ran
before in the process, also after keras.utils.set_random_seed (which installs
a per-thread seed generator Keras prefers to Python's ``random``)."""
import numpy as np
from tensorflow import keras

from csc_analyzers.integrity import _keras_seed_generator
from csc_analyzers.models import load_network


def _weights(seed):
    keras.backend.clear_session()
    return [w.copy() for w in load_network("cifar-net", weights=None, seed=seed).model
            .get_weights()]


def test_same_seed_same_weights_after_set_random_seed():
    holder = _keras_seed_generator()
    saved = getattr(holder, "generator", None)
    try:
        before = _weights(0)
        keras.utils.set_random_seed(123)
        generator = holder.generator
        after = [_weights(0), _weights(0)]
        assert holder.generator is generator  # put back after the block
    finally:
        holder.generator = saved
    for weights in after:
        assert len(weights) == len(before)
        for a, b in zip(weights, before):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_weights(1)[0], before[0])
