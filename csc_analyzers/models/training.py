"""Training the two small networks, with a weights cache.

``train`` fits a network deterministically for a seed (Python, NumPy and
TensorFlow seeds set, shuffling from ``np.random.default_rng(seed)``, data
from the seeded generators) and reports the test accuracy. ``cached_weights``
returns the weights file for a (network, dataset, epochs, seed) setting,
training and saving it (weights + a JSON record) only when it is not in the
cache yet. The cache directory is ``cache_dir``, else the environment
variable ``CSC_CACHE_DIR``, else ``~/.cache/csc_analyzers``.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow import keras

from ..integrity import seeded_initialization
from . import cifar_net, small_resnet

CACHE_ENV = "CSC_CACHE_DIR"
BUILDERS = {"cifar-net": cifar_net, "small-resnet": small_resnet}
DATASETS = ("builtin", "cifar10")


# Per network: epochs, batch size, Adam learning rate of the trained weights.
SCHEDULES = ("constant", "linear")
DEFAULTS = {
    "cifar-net": {"epochs": 5, "batch_size": 32, "learning_rate": 1e-3, "schedule": "linear"},
    "small-resnet": {"epochs": 4, "batch_size": 32, "learning_rate": 1e-3,
                     "schedule": "constant"},
}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. ``epochs``, ``batch_size``,
    ``learning_rate`` and ``schedule`` left at None take the network's
    ``DEFAULTS``, the settings of the project's trained networks. Schedule
    ``"constant"`` keeps the learning rate; ``"linear"`` lowers it linearly
    from ``learning_rate`` at the first step to zero after the last."""
    network: str = "cifar-net"
    dataset: str = "builtin"
    epochs: int | None = None
    seed: int = 0
    n_train: int | None = None       # None: the dataset's default size
    n_test: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str | None = None
    max_steps: int | None = None     # stop early after this many batches (tests)

    def __post_init__(self):
        if self.network not in BUILDERS:
            raise ValueError(f"network must be one of {sorted(BUILDERS)}, got {self.network!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name, value in DEFAULTS[self.network].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def key(self) -> str:
        """File stem that identifies these settings in the cache."""
        parts = [self.network, self.dataset, f"e{self.epochs}", f"b{self.batch_size}",
                 f"lr{self.learning_rate:g}", f"s{self.seed}"]
        if self.schedule != "constant":
            parts.append(self.schedule)
        if self.n_train is not None:
            parts.append(f"n{self.n_train}")
        if self.n_test is not None:
            parts.append(f"t{self.n_test}")
        if self.max_steps is not None:
            parts.append(f"steps{self.max_steps}")
        return "_".join(parts)


def default_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$CSC_CACHE_DIR``, else ``~/.cache/csc_analyzers``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(os.path.expanduser("~")) / ".cache" / "csc_analyzers"


def load_dataset(dataset: str, split: str, n=None, seed: int = 0, cache_dir=None) -> tuple:
    """(images uint8, labels int64) of ``dataset`` ("builtin" or "cifar10").

    Built-in images are generated once per (split, n, seed, generator version)
    and kept as ``.npz`` under ``<cache>/data``, because generating them is
    slower than reading them back."""
    if dataset == "cifar10":
        from ..data import cifar10

        return cifar10.load(split, n=n)
    from ..data import builtin

    size = builtin.DEFAULT_SIZES[split] if n is None else int(n)
    path = (default_cache_dir(cache_dir) / "data"
            / f"builtin_v{builtin.VERSION}_{split}_n{size}_s{seed}.npz")
    if path.is_file():
        with np.load(path) as stored:
            return stored["images"], stored["labels"]
    images, labels, _ = builtin.load(split, n=size, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)
    return images, labels


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.compat.v1.set_random_seed(seed)


def evaluate(model, images, labels, preprocess, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images``."""
    probs = model.predict(preprocess(images), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def train(config: TrainConfig, *, progress: bool = True, cache_dir=None,
          on_step: Optional[Callable] = None) -> tuple:
    """Build and fit ``config.network``; returns (model, record) where the
    record holds the test accuracy, the wall and CPU times and the settings.

    ``on_step(model, step, steps_per_epoch)``, if given, is called once
    before the first optimizer step (``step == 0``, the seeded
    initialisation) and after every step; it must not change the model."""
    from ..experiments.progress import progress_bar

    module = BUILDERS[config.network]
    t0, c0 = time.perf_counter(), time.process_time()
    x_train, y_train = load_dataset(config.dataset, "train", config.n_train, 0, cache_dir)
    x_test, y_test = load_dataset(config.dataset, "test", config.n_test, 0, cache_dir)
    x_train = module.preprocess(x_train)
    t_data = time.perf_counter() - t0

    keras.backend.clear_session()
    _seed_everything(config.seed)
    with seeded_initialization(config.seed):  # the weights of load_network(seed=...)
        model = module.build(input_shape=x_train.shape[1:], n_classes=int(y_train.max()) + 1)
    model.compile(keras.optimizers.legacy.Adam(config.learning_rate),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(config.seed)
    n, bs = len(x_train), config.batch_size
    steps_per_epoch = int(np.ceil(n / bs))
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    t1, c1 = time.perf_counter(), time.process_time()
    step, history = 0, []
    if on_step is not None:
        on_step(model, 0, steps_per_epoch)
    with progress_bar(total, f"train {config.network}", disable=not progress,
                      unit="batch") as bar:
        while step < total:
            order = rng.permutation(n)
            for start in range(0, n, bs):
                if step >= total:
                    break
                idx = order[start:start + bs]
                if config.schedule == "linear":
                    keras.backend.set_value(model.optimizer.lr,
                                            config.learning_rate * (1 - step / total))
                loss, acc = model.train_on_batch(x_train[idx], y_train[idx])
                step += 1
                if on_step is not None:
                    on_step(model, step, steps_per_epoch)
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            if step < total:
                history.append(evaluate(model, x_test, y_test, module.preprocess))
                bar.write(f"epoch {len(history)}: test accuracy {history[-1]:.4f}")
    train_wall = time.perf_counter() - t1
    train_cpu = time.process_time() - c1
    accuracy = evaluate(model, x_test, y_test, module.preprocess)
    record = {
        "network": config.network,
        "dataset": config.dataset,
        "test_accuracy": accuracy,
        "test_accuracy_per_epoch": history + [accuracy],
        "n_train": int(n),
        "n_test": int(len(x_test)),
        "steps": int(step),
        "data_seconds": round(t_data, 2),
        "train_wall_seconds": round(train_wall, 2),
        "train_cpu_seconds": round(train_cpu, 2),
        "total_wall_seconds": round(time.perf_counter() - t0, 2),
        "total_cpu_seconds": round(time.process_time() - c0, 2),
        "config": asdict(config),
        "tensorflow": tf.__version__,
    }
    return model, record


def cache_paths(config: TrainConfig, cache_dir=None) -> tuple:
    """(weights .h5 path, record .json path) of ``config`` in the cache."""
    root = default_cache_dir(cache_dir)
    # not "*.weights.h5": Keras reads that suffix as its newer weights format
    return root / f"{config.key()}_weights.h5", root / f"{config.key()}.json"


def cached_weights(config: TrainConfig, cache_dir=None, *, progress: bool = True,
                   train_if_missing: bool = True) -> tuple:
    """(weights path, record) for ``config``: from the cache when present,
    otherwise trained now and saved (the JSON is written last, so a file pair
    counts as cached only when complete)."""
    weights_path, record_path = cache_paths(config, cache_dir)
    if weights_path.is_file() and record_path.is_file():
        return weights_path, json.loads(record_path.read_text())
    if not train_if_missing:
        raise FileNotFoundError(
            f"no cached weights for {config.key()} at {weights_path}; train them with "
            f"scripts/train_model.py --network {config.network} --dataset {config.dataset} "
            f"--epochs {config.epochs} --seed {config.seed}")
    model, record = train(config, progress=progress, cache_dir=cache_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights_path.with_name(weights_path.stem + ".tmp.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, weights_path)
    record["weights"] = str(weights_path)
    tmp_json = record_path.with_name(record_path.name + ".tmp")
    tmp_json.write_text(json.dumps(record, indent=2))
    os.replace(tmp_json, record_path)
    return weights_path, record
