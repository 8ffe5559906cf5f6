"""CSC metric (pure functions) and the Theorem 1 simulation (numpy only)."""
import numpy as np
import pytest
from scipy.stats import norm

from csc_analyzers.convergence import (DISTRIBUTIONS, product_convergence, random_factors,
                                       simulate_theorem1, singular_value_ratio,
                                       location_singular_value_ratios)
from csc_analyzers.metrics.csc import (BIN_EDGES, PAPER_HISTOGRAM_EDGES, PERCENTILES,
                                       abs_cos_histogram, csc_summary, histogram_percentiles,
                                       pairwise_cosine, random_baseline, rebin)


def test_identical_and_opposite_vectors(rng):
    v = rng.normal(size=(4, 4, 7))
    same = pairwise_cosine(np.stack([v, 2.5 * v]))
    opposite = pairwise_cosine(np.stack([v, -v]))
    assert same.shape == (1, 16)
    np.testing.assert_allclose(same, 1.0, atol=1e-12)
    np.testing.assert_allclose(opposite, -1.0, atol=1e-12)
    assert csc_summary(opposite)["median"] == pytest.approx(1.0)


def test_pairwise_cosine_matches_numpy_per_location(rng):
    r = rng.normal(size=(5, 3, 2, 6))
    cos = pairwise_cosine(r)
    assert cos.shape == (10, 6)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    for p, (i, j) in enumerate(pairs):
        for loc, (h, w) in enumerate(np.ndindex(3, 2)):
            a, b = r[i, h, w], r[j, h, w]
            assert cos[p, loc] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    dense = pairwise_cosine(r.reshape(5, -1))
    assert dense.shape == (10, 1)


def test_zero_vectors_are_undefined_and_counted(rng):
    r = rng.normal(size=(3, 2, 4))
    r[0, 1] = 0.0
    cos = pairwise_cosine(r)
    assert np.isnan(cos[:2, 1]).all() and np.isfinite(cos[2]).all()
    summary = csc_summary(cos)
    assert summary["n_undefined"] == 2 and summary["n_values"] == 4


def test_summary_percentiles_are_ordered(rng):
    summary = csc_summary(pairwise_cosine(rng.normal(size=(6, 5, 5, 3))))
    values = [summary[f"p{q}"] for q in PERCENTILES]
    assert values == sorted(values)
    assert summary["median"] == pytest.approx(summary["p50"])
    assert 0.0 <= values[0] and values[-1] <= 1.0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_cosine(np.ones((1, 4)))
    with pytest.raises(ValueError, match="channels"):
        pairwise_cosine(np.ones(4))


@pytest.mark.parametrize("channels", [256, 1024])
def test_random_baseline_for_large_channel_counts(channels):
    median = random_baseline(channels, rng=np.random.default_rng(0), n_pairs=8000)
    mean = random_baseline(channels, rng=np.random.default_rng(1), n_pairs=8000,
                           statistic="mean")
    # s_cos ~ N(0, 1/c): E|s_cos| = sqrt(2 / (pi c)), median |s_cos| = z_0.75 / sqrt(c)
    assert mean == pytest.approx(np.sqrt(2 / (np.pi * channels)), rel=0.04)
    assert median == pytest.approx(norm.ppf(0.75) / np.sqrt(channels), rel=0.04)


def test_histogram_percentiles_within_one_bin(rng):
    values = np.concatenate([rng.uniform(0, 1, 3000), 1 - 10 ** rng.uniform(-9, -1, 3000)])
    counts = abs_cos_histogram(values)
    assert counts.sum() == values.size
    qs = [1, 5, 10, 20, 50, 80, 95, 99]
    estimate = histogram_percentiles(counts, qs)
    exact = np.percentile(values, qs)
    widths = np.diff(BIN_EDGES)[np.searchsorted(BIN_EDGES, exact) - 1]
    assert np.all(np.abs(estimate - exact) <= widths + 1e-15)
    assert rebin(counts).sum() == values.size
    assert len(rebin(counts)) == len(PAPER_HISTOGRAM_EDGES) - 1


def test_singular_value_ratio_of_rank_one_and_identity(rng):
    c, g = rng.normal(size=8), rng.normal(size=5)
    assert singular_value_ratio(np.outer(c, g) + 1e-9 * rng.normal(size=(8, 5))) > 1e6
    assert singular_value_ratio(np.eye(4)) == pytest.approx(1.0)
    blocks = location_singular_value_ratios(np.vstack([np.outer(c[:3], g), np.eye(3, 5)]), 3)
    assert blocks[0] > 1e12 and blocks[1] == pytest.approx(1.0)


@pytest.mark.parametrize("distribution", [d for d in DISTRIBUTIONS if d != "signed gaussian"])
def test_products_of_non_negative_matrices_converge(distribution):
    factors = random_factors(distribution, [(64, 64)] * 10, rng=np.random.default_rng(3))
    result = product_convergence(factors, rng=np.random.default_rng(4))
    assert result["csc"].iloc[-1] > 0.999
    assert result["sv_ratio"].iloc[-1] > 1e3
    # exponential: sigma1/sigma2 grows by orders of magnitude from 2 to 10 factors
    assert np.log10(result["sv_ratio"].iloc[-1]) > np.log10(result["sv_ratio"].iloc[1]) + 2


def test_products_of_signed_gaussian_matrices_do_not_converge():
    factors = random_factors("signed gaussian", [(64, 64)] * 10, rng=np.random.default_rng(3))
    result = product_convergence(factors, rng=np.random.default_rng(4))
    assert result["csc"].iloc[-1] < 0.9
    assert result["sv_ratio"].iloc[-1] < 1e3


def test_simulation_table():
    table = simulate_theorem1(rng=np.random.default_rng(0), n_factors=4, n_trials=2,
                              distributions=["|gaussian|", "signed gaussian"],
                              shapes=["square 64", "widening 16..512"])
    assert len(table) == 2 * 2 * 2 * 4
    assert set(table.columns) == {"distribution", "shape", "trial", "n_factors",
                                  "sv_ratio", "csc"}
    with pytest.raises(KeyError, match="unknown distribution"):
        random_factors("cauchy", [(2, 2)], rng=np.random.default_rng(0))
