"""Training: a short run lifts accuracy above chance; the cache is reused."""
import json

import numpy as np
import pytest

from csc_analyzers.models import load_network, training
from csc_analyzers.models.training import TrainConfig, cache_paths, cached_weights


@pytest.mark.slow
def test_short_training_beats_chance_and_cache_is_reused(tmp_path, monkeypatch):
    config = TrainConfig(network="small-resnet", epochs=2, n_train=3200, n_test=300,
                         batch_size=32, max_steps=200)
    path, record = cached_weights(config, tmp_path, progress=False)
    assert path.is_file() and path.parent == tmp_path
    assert record["steps"] == 200
    assert record["test_accuracy"] >= 0.25, record  # chance is 0.10
    assert json.loads(cache_paths(config, tmp_path)[1].read_text()) == record

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the weights were cached")

    monkeypatch.setattr(training, "train", no_training)
    again_path, again_record = cached_weights(config, tmp_path, progress=False)
    assert again_path == path and again_record == record

    # the cached weights load into the network and reproduce the recorded accuracy
    net = load_network("small-resnet", weights=str(path))
    x, y = training.load_dataset("builtin", "test", 300, 0, tmp_path)  # cached by the run
    accuracy = training.evaluate(net.model, x, y, net.preprocess)
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-6)


def test_cache_dir_comes_from_argument_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path / "env"))
    assert training.default_cache_dir() == tmp_path / "env"
    assert training.default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(training.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert training.default_cache_dir() == tmp_path / ".cache" / "csc_analyzers"


def test_builtin_data_cache_returns_the_generated_arrays(tmp_path):
    from csc_analyzers.data import builtin

    first = training.load_dataset("builtin", "test", 30, 4, tmp_path)
    stored = list((tmp_path / "data").glob("*.npz"))
    assert len(stored) == 1
    second = training.load_dataset("builtin", "test", 30, 4, tmp_path)
    direct = builtin.load("test", n=30, seed=4)
    for a, b, c in zip(first, second, direct[:2]):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_config_keys_differ_and_bad_settings_are_named():
    assert TrainConfig(seed=0).key() != TrainConfig(seed=1).key()
    assert TrainConfig(network="small-resnet").key() != TrainConfig().key()
    with pytest.raises(ValueError, match="network"):
        TrainConfig(network="vgg16")
    with pytest.raises(ValueError, match="dataset"):
        TrainConfig(dataset="mnist")


def test_linear_schedule_lowers_the_rate_to_zero_and_names_the_cache(tmp_path):
    from tensorflow import keras

    config = TrainConfig(network="cifar-net", epochs=1, n_train=64, n_test=32, batch_size=16,
                         learning_rate=1e-3, schedule="linear")
    assert config.key().endswith("_linear_n64_t32")
    assert "linear" not in TrainConfig(schedule="constant").key()
    model, record = training.train(config, progress=False, cache_dir=tmp_path)
    assert record["steps"] == 4
    # the last of 4 steps ran at 1e-3 * (1 - 3/4)
    assert keras.backend.get_value(model.optimizer.lr) == pytest.approx(2.5e-4, rel=1e-5)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
