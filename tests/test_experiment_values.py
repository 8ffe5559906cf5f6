"""Published numbers recomputed from their definitions with code written here:
the CSC table and histograms from ``propagate`` and an explicit pairwise
cosine, the random-logit maps from the drawn class, the bootstrap interval's
coverage on a known distribution, and the report's convergence verdict at
the paper's threshold 0.99."""
import numpy as np
import pandas as pd
import pytest

import csc_analyzers
from conftest import small_cnn
from csc_analyzers.experiments.common import ModelNetwork
from csc_analyzers.experiments.csc import TABLE_COLUMNS, run_csc
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.sanity import maps_path
from csc_analyzers.metrics.bootstrap import bootstrap_median
from csc_analyzers.metrics.csc import BIN_EDGES
from csc_analyzers.registry import get_method, select_methods
from test_csc_experiment import tiny_network

SEED, N_VECTORS = 7, 4
LOWER = {"fc2": ["input", "c1"], "fc1": ["input", "c1"]}  # Keras names of input, conv1
CSC_NAME = {"input": "input", "c1": "conv1"}


def explicit_abs_cosines(relevances):
    """|cos| of every pair i < j of relevance vectors at every spatial location
    (channels last), written out with loops; NaN where a vector is zero."""
    r = relevances.reshape(len(relevances), -1, relevances.shape[-1]).astype(np.float64)
    values = []
    for i in range(len(r)):
        for j in range(i + 1, len(r)):
            for loc in range(r.shape[1]):
                a, b = r[i, loc], r[j, loc]
                norm = np.sqrt(a @ a) * np.sqrt(b @ b)
                values.append(abs(a @ b) / norm if norm > 0 else np.nan)
    return np.array(values)


def test_csc_rows_and_histograms_equal_an_explicit_pairwise_cosine(tmp_path):
    """The median, p0, p100 and the histogram counts of the CSC tables,
    recomputed from propagate with the documented random vectors: N(0, I)
    from ``default_rng([seed, image_id, position of the injection layer])``."""
    network = tiny_network()
    images = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    result = run_csc(network, [get_method("Gradient")], images, out_dir=tmp_path,
                     seed=SEED, n_vectors=N_VECTORS, exact_max_dim=0)
    keys = ["method", "injection_layer", "layer", "statistic"]
    table = result["table"].set_index(keys).sort_index()
    histograms = result["histograms"]
    analyzer = csc_analyzers.create_analyzer("gradient", network.model)
    injection_keras = {"fc2": "d2", "fc1": "d1"}
    for position, injection in enumerate(network.csc_layers[:2]):
        cosines = {layer: [] for layer in LOWER[injection]}
        for image_id, x in enumerate(images):
            shape = analyzer.relevance_shape(injection_keras[injection])
            v = np.random.default_rng([SEED, image_id, position]).standard_normal(
                (N_VECTORS,) + shape)
            out = analyzer.propagate(x[None], v.astype("float32"), injection_keras[injection],
                                     LOWER[injection])
            for layer in LOWER[injection]:
                cosines[layer].append(explicit_abs_cosines(out[layer]))
        for layer, parts in cosines.items():
            values = np.concatenate(parts)
            assert np.isfinite(values).all()
            name = CSC_NAME[layer]
            row = table.loc[("Gradient", injection, name)]["value"]
            # p0 / p100 are exact; the median is exact to within its histogram bin
            assert row["p0"] == pytest.approx(values.min(), rel=1e-9, abs=1e-12)
            assert row["p100"] == pytest.approx(values.max(), rel=1e-9, abs=1e-12)
            median = np.median(values)
            k = np.searchsorted(BIN_EDGES, median, side="right") - 1
            assert abs(row["median"] - median) <= BIN_EDGES[k + 1] - BIN_EDGES[k]
            # the histogram counts every cosine once, in the bin of its |value|
            mine = histograms[(histograms.method == "Gradient")
                              & (histograms.injection_layer == injection)
                              & (histograms.layer == name)].set_index("bin")["count"]
            assert mine.sum() == len(values) == len(images) * 6 * 64  # 6 pairs, 8 x 8 locations
            expected, _ = np.histogram(values, bins=BIN_EDGES)
            assert dict(mine) == {b: c for b, c in enumerate(expected) if c}


def test_random_logit_maps_explain_the_drawn_class(tmp_path):
    """The saved maps are the map of the true class and the map of the drawn
    class (recomputed here with the analyzer and the method's abs.max
    post-processing); the drawn class is stored, differs from the true one,
    and the two maps differ."""
    model = small_cnn(softmax=True, seed=3)
    network = ModelNetwork("tiny", model, input_range=(-3.0, 3.0))
    images = np.random.default_rng(6).normal(size=(3, 8, 8, 3)).astype("float32")
    labels, ids = [0, 1, 2], [5, 6, 7]
    store = run_random_logit(network, images, labels, ids, select_methods("Gradient"),
                             tmp_path, seed=4, save_maps_for=ids)
    rows = store.table([("tiny", "Gradient", i) for i in ids])
    drawn = rows[rows.metric == "random_class"].set_index("image_id")["value"]
    gradient = csc_analyzers.create_analyzer("gradient", model, neuron_selection_mode="index")
    for k, image_id in enumerate(ids):
        saved = np.load(maps_path(tmp_path, "random_logit", ("tiny", "Gradient", image_id)))
        true_class, other = (int(c) for c in saved["classes"])
        assert true_class == labels[k] and other != labels[k] and 0 <= other < 3
        assert other == int(drawn[image_id])
        for map_, target in zip(saved["maps"], (true_class, other)):
            expected = np.abs(gradient.analyze(images[k:k + 1], neuron_selection=[target])[0])
            np.testing.assert_allclose(map_, expected.max(axis=-1), rtol=1e-5, atol=1e-7)
        assert np.abs(saved["maps"][0] - saved["maps"][1]).max() > 1e-3 * np.abs(
            saved["maps"][0]).max()


def test_random_class_is_uniform_over_the_other_classes():
    from csc_analyzers.experiments.common import random_class
    draws = np.array([random_class(3, 10, seed=1, image_id=i) for i in range(9000)])
    assert not (draws == 3).any()
    counts = np.bincount(draws, minlength=10)
    others = np.delete(counts, 3)
    # 9 classes, 1000 expected each: a 5-sigma band of the binomial
    assert np.abs(others - 1000).max() < 5 * np.sqrt(1000 * 8 / 9)


@pytest.mark.parametrize("low,high,coverage", [(0.5, 99.5, 0.99), (25.0, 75.0, 0.5)])
def test_bootstrap_interval_covers_the_true_median(low, high, coverage):
    """Medians of 61 draws of N(0, 1) (true median 0): the bootstrap interval
    between the ``low`` and ``high`` percentiles holds 0 in about
    ``high - low`` percent of 300 data sets, and the 99 % interval's width is
    about that of the normal approximation of the median's sampling
    distribution, 2 * 2.576 * 1.2533 / sqrt(n)."""
    rng = np.random.default_rng(50)
    n, trials = 61, 300
    hits, widths = 0, []
    for _ in range(trials):
        x = rng.normal(size=n)
        median, lower, upper = bootstrap_median(x, rng=rng, n_resamples=2000, low=low,
                                                high=high)
        assert median == np.median(x) and lower <= median <= upper
        hits += lower <= 0.0 <= upper
        widths.append(upper - lower)
    rate = hits / trials
    band = 4 * np.sqrt(coverage * (1 - coverage) / trials) + 0.03
    assert abs(rate - coverage) <= band, (rate, coverage)
    if coverage == 0.99:
        theory = 2 * 2.576 * 1.2533 / np.sqrt(n)
        assert 0.7 * theory < np.median(widths) < 1.3 * theory, (np.median(widths), theory)


def test_report_verdict_uses_the_papers_threshold(tmp_path):
    """A median CSC after the first convolution of 0.9905 converges, 0.985 does not."""
    from csc_analyzers.report import method_table
    network = tiny_network()
    rows = []
    for method, value in (("LRP a1b0", 0.9905), ("Gradient", 0.985), ("Deconv", 0.99)):
        for layer, index in (("input", 0), ("conv1", 1)):
            rows.append({"network": "tiny", "method": method, "injection_layer": "fc2",
                         "layer": layer, "layer_index": index, "statistic": "median",
                         "value": value, "n_images": 3, "n_vectors": 4, "nonfinite": False})
    pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).to_csv(tmp_path / "csc.csv", index=False)
    verdicts = method_table(tmp_path, network, seed=0).set_index("method")["verdict"]
    assert dict(verdicts) == {"Deconv": "converges", "LRP a1b0": "converges",
                              "Gradient": "does not converge"}
