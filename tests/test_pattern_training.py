"""Pattern training runs: resumption after an interruption, image sources, CLI."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)

from csc_analyzers.pattern import load_patterns
from csc_analyzers.pattern.training import (batches_of, directory_images, statistics_path,
                                            train_patterns)


def preprocess(images):
    return images.astype("float32") / 127.5 - 1.0


def test_interrupted_run_resumes_to_the_same_patterns(tmp_path, rng, cnn):
    images = rng.integers(0, 256, size=(22, 8, 8, 3), dtype=np.uint8)
    full = train_patterns(cnn, batches_of(images, 4, preprocess), out=tmp_path / "full.npz",
                          estimator="relu", progress=False)

    def interrupted():
        for i, batch in enumerate(batches_of(images, 4, preprocess)):
            if i == 3:
                raise KeyboardInterrupt
            yield batch

    out = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        train_patterns(cnn, interrupted(), out=out, estimator="relu", checkpoint_every=1,
                       progress=False)
    assert statistics_path(out).is_file() and not out.exists()
    resumed = train_patterns(cnn, batches_of(images, 4, preprocess), out=out,
                             estimator="relu", progress=False)
    assert not statistics_path(out).exists()
    assert resumed.n_samples == full.n_samples
    loaded = load_patterns(out, cnn)
    for name, pattern in full.patterns.items():
        np.testing.assert_allclose(loaded.patterns[name], pattern, rtol=1e-6)


def test_directory_images_crop_and_order(tmp_path, rng):
    from skimage.io import imsave
    for i, shape in enumerate([(20, 30, 3), (31, 17), (16, 16, 4)]):
        sub = tmp_path / ("b" if i else "a")
        sub.mkdir(exist_ok=True)
        imsave(sub / f"{i}.png", rng.integers(0, 256, size=shape, dtype=np.uint8),
               check_contrast=False)
    images = list(directory_images(tmp_path, 3, (8, 8)))
    assert [im.shape for im in images] == [(8, 8, 3)] * 3
    assert all(im.dtype == np.uint8 for im in images)
    with pytest.raises(ValueError, match="3 images, 5 requested"):
        list(directory_images(tmp_path, 5, (8, 8)))
    batches = list(batches_of(images, 2, preprocess))
    assert [b.shape[0] for b in batches] == [2, 1]


def test_cli_arguments():
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_patterns.py"
    spec = importlib.util.spec_from_file_location("train_patterns_cli", path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.parse_args(["--network", "vgg16", "--data", "imagenet", "/tmp/x",
                           "--n-images", "64", "--batch-size", "8", "--out", "p.npz"])
    assert args.data == ["imagenet", "/tmp/x"] and args.estimator == "relu"
    for bad in (["--data", "imagenet"], ["--data", "builtin", "/tmp"], ["--data", "mnist"]):
        with pytest.raises(SystemExit):
            cli.parse_args(["--network", "vgg16", "--n-images", "4", "--out", "p.npz"] + bad)
