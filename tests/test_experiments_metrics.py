"""SSIM, normalisation, Spearman, bootstrap, heatmap post-processing, random
class and class-sensitivity scores."""
import numpy as np
import pytest

from csc_analyzers.experiments.class_sensitivity import class_sensitivity_scores, positive_share
from csc_analyzers.experiments.common import random_class
from csc_analyzers.metrics.bootstrap import bootstrap_median
from csc_analyzers.metrics.heatmaps import normalize_abs, normalize_signed, postprocess
from csc_analyzers.metrics.ssim import normalize_percentile, spearman, ssim


@pytest.fixture
def smooth_map(rng):
    y, x = np.mgrid[0:32, 0:32]
    return np.sin(x / 4.0) * np.cos(y / 5.0) + 0.1 * rng.normal(size=(32, 32))


def test_ssim_identity_and_flip(smooth_map):
    assert ssim(smooth_map, smooth_map) == pytest.approx(1.0, abs=1e-12)
    assert ssim(smooth_map, -smooth_map) == pytest.approx(1.0, abs=1e-12)
    assert ssim(smooth_map, -smooth_map, flip=False) < 0.5
    assert ssim(smooth_map, 3.0 * smooth_map) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_unrelated_maps_is_low(smooth_map, rng):
    assert ssim(smooth_map, rng.normal(size=smooth_map.shape)) < 0.3


def test_ssim_matches_skimage_on_normalised_maps(smooth_map, rng):
    from skimage.metrics import structural_similarity
    other = smooth_map + rng.normal(size=smooth_map.shape)
    a = normalize_percentile(smooth_map, percentile=99.5)
    b = normalize_percentile(other, percentile=99.5)
    expected = structural_similarity(a, b, win_size=5, data_range=1.0)
    assert ssim(smooth_map, other, flip=False) == pytest.approx(expected)


@pytest.mark.parametrize("percentile", [99.5, 100.0])
def test_percentile_normalisation_range(rng, percentile):
    x = rng.standard_cauchy(size=(20, 20))
    n = normalize_percentile(x, percentile=percentile)
    assert n.min() >= 0.0 and n.max() <= 1.0
    assert n.min() == 0.0 and n.max() == 1.0
    order = np.argsort(x, axis=None)
    assert np.all(np.diff(n.ravel()[order]) >= 0)  # monotone
    if percentile == 100.0:
        np.testing.assert_allclose(n, (x - x.min()) / (x.max() - x.min()))
    assert np.all(normalize_percentile(np.ones((5, 5))) == 0)


def test_spearman(rng):
    a = rng.normal(size=(10, 10))
    assert spearman(a, np.exp(a), absolute=False) == pytest.approx(1.0)
    assert spearman(a, -a, absolute=False) == pytest.approx(-1.0)
    assert spearman(a, -a, absolute=True) == pytest.approx(1.0)


def test_shape_checks():
    with pytest.raises(ValueError, match="2-D"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="shapes"):
        spearman(np.zeros((8, 8)), np.zeros((8, 9)), absolute=True)
    with pytest.raises(ValueError, match="post-processing"):
        postprocess(np.zeros((1, 4, 4, 3)), method="max")


def test_bootstrap_interval_contains_median(rng):
    values = rng.beta(2, 5, size=200)
    median, low, high = bootstrap_median(values, rng=np.random.default_rng(0))
    assert median == np.median(values)
    assert low <= median <= high and low < high
    again = bootstrap_median(values, rng=np.random.default_rng(0))
    assert again == (median, low, high)
    narrow = bootstrap_median(values, rng=np.random.default_rng(0), low=25, high=75)
    assert low <= narrow[1] <= narrow[2] <= high


def test_postprocess(rng):
    x = rng.normal(size=(2, 4, 4, 3))
    np.testing.assert_allclose(postprocess(x, method="sum"), x[..., 0] + x[..., 1] + x[..., 2])
    np.testing.assert_allclose(postprocess(x, method="abs.max"),
                               np.maximum(np.maximum(abs(x[..., 0]), abs(x[..., 1])),
                                          abs(x[..., 2])))


def test_signed_normalisation(rng):
    x = rng.normal(size=(16, 16))
    n = normalize_signed(x, percentile=100)
    assert n.max() == pytest.approx(1.0) and n.min() == pytest.approx(-1.0)
    np.testing.assert_array_equal(np.sign(n), np.sign(x))
    assert normalize_abs(x).min() >= 0 and normalize_abs(x).max() <= 1


def test_random_class_never_true():
    for n_classes in (2, 3, 10, 1000):
        for true in {0, 1, n_classes // 2, n_classes - 1}:
            draws = [random_class(true, n_classes, seed=7, image_id=i) for i in range(300)]
            assert true not in draws
            assert all(0 <= d < n_classes for d in draws)
    draws = [random_class(4, 10, seed=0, image_id=i) for i in range(3000)]
    counts = np.bincount(draws, minlength=10)
    assert counts[4] == 0 and counts[[0, 1, 2, 3, 5, 6, 7, 8, 9]].min() > 250
    assert random_class(3, 10, seed=1, image_id=5) == random_class(3, 10, seed=1, image_id=5)


def test_class_sensitivity_scores():
    mask_a = np.zeros((8, 8), bool)
    mask_a[:, :4] = True
    map_a = np.where(mask_a, 1.0, 0.1)
    map_b = np.where(mask_a, 0.1, 1.0)
    assert positive_share(map_a, mask_a) == pytest.approx(32 / 35.2)
    same = class_sensitivity_scores(map_a, map_a, mask_a)
    assert same["l1"] == 0 and same["mask_gap"] == 0
    diff = class_sensitivity_scores(map_a, map_b, mask_a)
    assert diff["mask_gap"] == pytest.approx(32 / 35.2 - 3.2 / 35.2)
    assert diff["l1"] == pytest.approx(64 * 0.9) and diff["l1_mean"] == pytest.approx(0.9)
