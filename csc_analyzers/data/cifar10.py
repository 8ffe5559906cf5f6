"""Real CIFAR-10: a local ``cifar-10-batches-py`` directory or ``keras.datasets``.

Returns arrays like the built-in dataset: uint8 images N x 32 x 32 x 3 and
int64 labels. Search order: the ``path`` argument; the Keras dataset cache
(``~/.keras/datasets/cifar-10-batches-py``); a download through
``keras.datasets.cifar10`` unless downloads are off (``download=False`` or the
environment variable ``CSC_OFFLINE=1``).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
DIR_NAME = "cifar-10-batches-py"
OFFLINE_ENV = "CSC_OFFLINE"


def keras_cache_dir() -> Path:
    """Where ``keras.datasets.cifar10`` unpacks the dataset."""
    return Path(os.path.expanduser("~")) / ".keras" / "datasets" / DIR_NAME


def _read_batch(path: Path) -> tuple:
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"], dtype=np.int64)


def read_batches_dir(path, split: str) -> tuple:
    """Read ``split`` ("train"/"test") from a ``cifar-10-batches-py`` directory."""
    if split not in BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(path)
    missing = [name for name in BATCHES[split] if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 directory {path} lacks {missing}; expected the unpacked "
            f"'{DIR_NAME}' folder of https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    parts = [_read_batch(path / name) for name in BATCHES[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load(split: str = "test", n: int | None = None, path=None, *,
         download: bool = True) -> tuple:
    """The first ``n`` images of a CIFAR-10 split: (images uint8, labels int64)."""
    if split not in BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if path is not None:
        images, labels = read_batches_dir(path, split)
    elif keras_cache_dir().is_dir():
        images, labels = read_batches_dir(keras_cache_dir(), split)
    else:
        offline = os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
        where = (f"CIFAR-10 is not on disk: put the unpacked '{DIR_NAME}' folder at "
                 f"{keras_cache_dir()} or pass path=<that folder> "
                 f"(source: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)")
        if not download or offline:
            raise FileNotFoundError(f"{where}; downloads are off")
        from residual_support import _tf  # noqa: F401  (graph mode first)
        from tensorflow import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as err:  # network errors come in many types
            raise FileNotFoundError(f"{where}; the download failed: {err}") from err
        images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
        labels = labels.reshape(-1).astype(np.int64)
    if n is not None:
        images, labels = images[:n], labels[:n]
    return images, labels
