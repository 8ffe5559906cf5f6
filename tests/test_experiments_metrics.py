"""SSIM, normalisation, Spearman, bootstrap, heatmap post-processing, random
class and class-sensitivity scores."""
import numpy as np
import pytest

from csc_analyzers.experiments.class_sensitivity import class_sensitivity_scores, positive_share
from csc_analyzers.experiments.common import random_class
from csc_analyzers.metrics.bootstrap import bootstrap_median
from csc_analyzers.metrics.heatmaps import normalize_abs, normalize_signed, postprocess
from csc_analyzers.metrics.ssim import (RECIPES, normalize_percentile, similarity_scores,
                                        spearman, ssim, ssim_label)


@pytest.fixture
def smooth_map(rng):
    y, x = np.mgrid[0:32, 0:32]
    return np.sin(x / 4.0) * np.cos(y / 5.0) + 0.1 * rng.normal(size=(32, 32))


@pytest.mark.parametrize("recipe", ["paper", "standard"])
def test_ssim_identity_and_flip(smooth_map, recipe):
    assert ssim(smooth_map, smooth_map, recipe=recipe) == pytest.approx(1.0, abs=1e-12)
    assert ssim(smooth_map, -smooth_map, recipe=recipe) == pytest.approx(1.0, abs=1e-12)
    assert ssim(smooth_map, -smooth_map, recipe=recipe, flip=False) < 0.5
    assert ssim(smooth_map, 3.0 * smooth_map, recipe=recipe) == pytest.approx(1.0, abs=1e-12)
    assert ssim(np.abs(smooth_map), np.abs(smooth_map), recipe=recipe, percentile=100) == \
        pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("recipe", ["paper", "standard"])
def test_ssim_of_unrelated_maps_is_low(smooth_map, rng, recipe):
    assert ssim(smooth_map, rng.normal(size=smooth_map.shape), recipe=recipe) < 0.3


def paper_formula(x, y, percentile):
    """The paper's code (normalize_sanity, ssim_flipped) written out; old
    compare_ssim without data_range took 2 (the float range -1..1)."""
    from skimage.metrics import structural_similarity

    def normalise(m):
        vmin = np.percentile(m, percentile)
        vmax = np.percentile(m, 100 - percentile)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.clip((m - vmin) / (vmax - vmin), 0, 1)

    nx = normalise(x)
    plain = structural_similarity(nx, normalise(y), win_size=5, data_range=2)
    flipped = structural_similarity(nx, normalise(-y), win_size=5, data_range=2)
    return plain, flipped


def standard_formula(x, y, percentile):
    from skimage.metrics import structural_similarity

    def normalise(m):
        low, high = np.percentile(m, 100 - percentile), np.percentile(m, percentile)
        return np.clip((m - low) / (high - low), 0, 1)

    nx = normalise(x)
    return (structural_similarity(nx, normalise(y), win_size=5, data_range=1),
            structural_similarity(nx, normalise(-y), win_size=5, data_range=1))


def fixed_pairs():
    """Fixed maps: a smooth signed field, a perturbed copy, its negation, a
    non-negative (abs.max-like) pair and a heavy-tailed pair (the 0.5
    percentile far from the minimum)."""
    rng = np.random.default_rng(20200712)
    y, x = np.mgrid[0:24, 0:28]
    base = np.sin(x / 3.0) * np.cos(y / 4.0) + 0.3 * np.cos((x + y) / 5.0)
    perturbed = base + 0.4 * rng.normal(size=base.shape)
    cauchy = rng.standard_cauchy(size=base.shape)
    return {"signed": (base, perturbed), "flipped": (base, -perturbed),
            "non-negative": (np.abs(base), np.abs(perturbed) + 0.2 * np.abs(cauchy)),
            "heavy tails": (cauchy, cauchy + rng.standard_cauchy(size=base.shape))}


@pytest.mark.parametrize("percentile", [99.5, 100.0])
@pytest.mark.parametrize("pair", ["signed", "flipped", "non-negative", "heavy tails"])
def test_paper_recipe_equals_the_papers_formula(pair, percentile):
    a, b = fixed_pairs()[pair]
    plain, flipped = paper_formula(a, b, percentile)
    assert ssim(a, b, recipe="paper", percentile=percentile) == \
        pytest.approx(max(plain, flipped), abs=1e-12)
    assert ssim(a, b, recipe="paper", percentile=percentile, flip=False) == \
        pytest.approx(plain, abs=1e-12)
    assert ssim(a, b, percentile=percentile) == ssim(a, b, recipe="paper", percentile=percentile)
    if pair == "flipped":  # the negated map is the one that matches
        assert flipped > plain + 0.5
    standard = max(standard_formula(a, b, percentile))
    assert abs(ssim(a, b, recipe="paper", percentile=percentile) - standard) > 1e-4


@pytest.mark.parametrize("percentile", [99.5, 100.0])
@pytest.mark.parametrize("pair", ["signed", "flipped", "non-negative", "heavy tails"])
def test_standard_recipe_equals_its_formula(pair, percentile):
    a, b = fixed_pairs()[pair]
    plain, flipped = standard_formula(a, b, percentile)
    assert ssim(a, b, recipe="standard", percentile=percentile) == \
        pytest.approx(max(plain, flipped), abs=1e-12)
    assert ssim(a, b, recipe="standard", percentile=percentile, flip=False) == \
        pytest.approx(plain, abs=1e-12)


def test_ssim_matches_skimage_on_normalised_maps(smooth_map, rng):
    from skimage.metrics import structural_similarity
    other = smooth_map + rng.normal(size=smooth_map.shape)
    a = normalize_percentile(smooth_map, percentile=99.5)
    b = normalize_percentile(other, percentile=99.5)
    expected = structural_similarity(a, b, win_size=5, data_range=1.0)
    assert ssim(smooth_map, other, recipe="standard", flip=False) == pytest.approx(expected)


def test_paper_normalisation_inverts_the_map(rng):
    x = rng.standard_cauchy(size=(12, 12))
    np.testing.assert_allclose(RECIPES["paper"].normalize(x, percentile=100),
                               (x.max() - x) / (x.max() - x.min()))
    np.testing.assert_allclose(RECIPES["standard"].normalize(x, percentile=100),
                               (x - x.min()) / (x.max() - x.min()))


def test_constant_map(rng):
    constant, other = np.full((10, 10), 0.25), rng.normal(size=(10, 10))
    # the paper's code divides by zero: NaN, for either map and after the flip
    assert np.isnan(max(paper_formula(constant, other, 99.5)))
    for a, b in ((constant, other), (other, constant), (constant, constant)):
        assert np.isnan(ssim(a, b, recipe="paper"))
        assert np.isnan(similarity_scores(a, b)["ssim_paper"])
    # fewer than 0.5 % of the pixels off the common value: the percentiles coincide
    almost = np.zeros((20, 20))
    almost[3, 4] = 5.0
    assert np.isnan(ssim(almost, rng.normal(size=(20, 20)), recipe="paper"))
    assert np.isfinite(ssim(almost[:10, :10], other, recipe="paper"))  # 1 % off: finite
    # the standard recipe does not score an undefined map either
    for a, b in ((constant, other), (other, constant), (constant, constant)):
        assert np.isnan(ssim(a, b, recipe="standard"))
        assert np.isnan(similarity_scores(a, b)["ssim_standard"])
    assert np.isnan(normalize_percentile(constant)).all()
    assert np.isnan(ssim(np.zeros((10, 10)), other, recipe="standard"))


def test_recipe_choice_and_scores(smooth_map, rng):
    other = smooth_map + rng.normal(size=smooth_map.shape)
    scores = similarity_scores(smooth_map, other, percentile=100)
    assert list(scores) == ["ssim_paper", "ssim_standard", "spearman_abs", "spearman"]
    assert scores["ssim_paper"] == ssim(smooth_map, other, recipe="paper", percentile=100)
    assert scores["ssim_standard"] == ssim(smooth_map, other, recipe="standard", percentile=100)
    assert list(similarity_scores(smooth_map, other, recipe="standard")) == \
        ["ssim_standard", "spearman_abs", "spearman"]
    with pytest.raises(ValueError, match="valid recipes: paper, standard"):
        ssim(smooth_map, other, recipe="wang")
    with pytest.raises(ValueError, match="'wang'"):
        similarity_scores(smooth_map, other, recipe=("paper", "wang"))
    assert ssim_label("ssim_paper") == "SSIM (paper recipe)"
    assert [r.metric for r in RECIPES.values()] == ["ssim_paper", "ssim_standard"]


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
    assert np.isnan(normalize_percentile(np.ones((5, 5)))).all()  # undefined: NaN


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
