"""ImageNet directory reader, bundled photos, class names, CIFAR-10 loader."""
import pickle

import numpy as np
import pytest
from PIL import Image

from csc_analyzers.data import cifar10, imagenet

SYNSETS = ["n02", "n01", "n03"]  # sorted: n01 -> 0, n02 -> 1, n03 -> 2


@pytest.fixture
def fake_val_dir(tmp_path):
    root = tmp_path / "val"
    for k, synset in enumerate(SYNSETS):
        (root / synset).mkdir(parents=True)
        for j in range(k + 2):
            colour = (10 * k + j, 100, 200)
            Image.new("RGB", (40 + j, 30), colour).save(root / synset / f"img_{k}{j}.JPEG",
                                                        quality=100)
        (root / synset / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file, not a synset")
    return root


def test_labels_follow_sorted_synsets(fake_val_dir):
    items = imagenet.list_validation_dir(fake_val_dir)
    assert len(items) == 2 + 3 + 4
    for path, label in items:
        assert label == sorted(SYNSETS).index(path.parent.name)
        assert path.suffix == ".JPEG"


def test_seeded_sample_is_reproducible(fake_val_dir):
    a_img, a_lab, a_paths = imagenet.sample_validation_dir(fake_val_dir, n=5, seed=0, size=16)
    b_img, b_lab, b_paths = imagenet.sample_validation_dir(fake_val_dir, n=5, seed=0, size=16)
    assert a_paths == b_paths and np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert len(set(a_paths)) == 5
    assert a_img.shape == (5, 16, 16, 3) and a_img.dtype == np.uint8
    items = dict(imagenet.list_validation_dir(fake_val_dir))
    for img, label, path in zip(a_img, a_lab, a_paths):
        assert items[path] == label
        assert abs(int(img[..., 1].mean()) - 100) <= 2  # the colour written to the file
    draws = {tuple(imagenet.sample_validation_dir(fake_val_dir, n=5, seed=s, size=8)[2])
             for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="holds 9"):
        imagenet.sample_validation_dir(fake_val_dir, n=10)


def test_missing_validation_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        imagenet.list_validation_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="synset"):
        imagenet.list_validation_dir(tmp_path)


def test_bundled_photos_and_class_names():
    images, labels, names = imagenet.sample_photos(size=64, names=["chelsea", "camera"])
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    assert np.array_equal(images[1, ..., 0], images[1, ..., 2])  # grey photo -> RGB
    classes = imagenet.class_names()
    assert len(classes) == 1000 and classes[0] == "tench"
    assert classes[labels[0]] == "tabby cat"
    assert set(imagenet.PHOTOS) >= {"chelsea", "coffee", "astronaut", "rocket"}


def _write_cifar_batch(path, images, labels):
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    with open(path, "wb") as fh:
        pickle.dump({b"data": data, b"labels": list(labels)}, fh)


def test_cifar10_batches_dir_is_read_in_hwc_order(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train = rng.integers(0, 256, size=(5, 4, 32, 32, 3), dtype=np.uint8)
    for i in range(5):
        _write_cifar_batch(folder / f"data_batch_{i + 1}", train[i], [i] * 4)
    test = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    _write_cifar_batch(folder / "test_batch", test, [7, 8, 9])
    x, y = cifar10.load("train", path=folder)
    assert np.array_equal(x, train.reshape(20, 32, 32, 3))
    assert np.array_equal(y, np.repeat(np.arange(5), 4))
    xt, yt = cifar10.load("test", n=2, path=folder)
    assert np.array_equal(xt, test[:2]) and yt.tolist() == [7, 8]


def test_cifar10_offline_error_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py") as info:
        cifar10.load("test", download=False)
    assert str(tmp_path / ".keras" / "datasets") in str(info.value)
    with pytest.raises(FileNotFoundError, match="test_batch"):
        cifar10.load("test", path=tmp_path)
