"""Figure 3's singular-value analysis: slicing, ratios, inter-layer products."""
import numpy as np

import csc_analyzers  # noqa: F401  (graph mode first)

from csc_analyzers.pattern import estimate_patterns
from csc_analyzers.pattern.spectra import (interlayer_product, interlayer_spectra,
                                           kernel_slices, layer_spectra, sigma_ratio,
                                           summarize, _svd)
from csc_analyzers.plotting.patterns import median_table, plot_pattern_spectra


def test_sigma_ratio_and_slices(rng):
    assert sigma_ratio(np.linalg.svd(np.diag([0.5, 5.0, 1.0]), compute_uv=False)) == 5.0
    assert sigma_ratio([3.0, 0.0]) == float("inf")
    kernel = rng.normal(size=(3, 3, 4, 5))
    slices = kernel_slices(kernel)
    assert len(slices) == 9
    np.testing.assert_array_equal(slices["1,2"], kernel[1, 2])
    dense = rng.normal(size=(2 * 3 * 4, 7))
    spatial = kernel_slices(dense, spatial=(2, 3, 4))
    # Flatten orders features as (h, w, c): position (1, 2) holds rows 20..23
    np.testing.assert_array_equal(spatial["1,2"], dense[(1 * 3 + 2) * 4:(1 * 3 + 2) * 4 + 4])


def test_interlayer_product_reconstructs_the_chain(rng):
    m_l, m_next = rng.normal(size=(6, 5)), rng.normal(size=(5, 4))
    (u_l, s_l, v_l), (u_n, s_n, v_n) = _svd(m_l), _svd(m_next)
    t = interlayer_product((u_l, s_l, v_l), (u_n, s_n, v_n))
    chain = u_l @ np.diag(np.sqrt(s_l)) @ t @ np.diag(np.sqrt(s_n)) @ v_n
    np.testing.assert_allclose(chain, m_l @ m_next, atol=1e-10)


def test_layer_and_interlayer_tables(rng, cnn, tmp_path):
    data = [rng.normal(size=(8, 8, 8, 3)).astype("float32") for _ in range(2)]
    patterns = estimate_patterns(cnn, data, "relu")
    table = layer_spectra(cnn, patterns)
    # conv1: 9 kernel positions; fc1 (after Flatten of 3x3x4): 9 spatial slices; fc2: 1
    counts = table[table["matrix"] == "A"].groupby("layer").size().to_dict()
    assert counts == {"conv1": 9, "fc1": 9, "fc2": 1}
    row = table[(table["layer"] == "conv1") & (table["matrix"] == "A*W")
                & (table["position"] == "0,1")].iloc[0]
    matrix = patterns.patterns["conv1"][0, 1] * cnn.get_layer("conv1").get_weights()[0][0, 1]
    assert np.isclose(row["ratio"], sigma_ratio(np.linalg.svd(matrix, compute_uv=False)))
    pairs = interlayer_spectra(cnn, patterns, max_pairs=5, rng=np.random.default_rng(0))
    assert set(zip(pairs["layer"], pairs["next_layer"])) == {("conv1", "fc1"), ("fc1", "fc2")}
    assert (pairs.groupby(["layer", "matrix"]).size() == 5).all()  # 81 and 9 combinations
    assert np.isfinite(pairs["ratio"]).all() and (pairs["ratio"] >= 1).all()
    assert set(summarize(table)["matrix"]) == {"A", "W", "A*W"}
    assert list(median_table(table)["layer"]) == ["conv1", "fc1", "fc2"]
    paths = plot_pattern_spectra(table, pairs, tmp_path)
    assert paths[0].is_file() and paths[0].stat().st_size > 0
