"""Figure 3's singular-value analysis: full matrices, centre slices, inter-layer
products as the paper published them, and the all-positions statistics."""
import numpy as np
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)

from csc_analyzers.pattern import estimate_patterns
from csc_analyzers.pattern.spectra import (PANELS, centre_slice, figure3_spectra,
                                           interlayer_product, interlayer_spectra,
                                           kernel_slices, layer_spectra, sigma_ratio,
                                           summarize, _svd)
from csc_analyzers.plotting.patterns import median_table, plot_figure3, plot_pattern_spectra


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


# -- Figure 3 as published: full matrices, centre slices, centre-to-centre T_l ----------


def _two_conv_net():
    """conv1 (3x3, 3->4), conv2 (3x3, 4->5), Flatten of 4x4x5, fc1 (6), fc2 (3)."""
    from tensorflow import keras
    rng = np.random.default_rng(7)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(6, activation="relu", name="fc1")(h)
    out = keras.layers.Dense(3, name="fc2")(h)
    model = keras.Model(inp, out)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _numpy_ratio(matrix):
    s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    return s[0] / s[1]


@pytest.fixture
def figure3_case(rng):
    model = _two_conv_net()
    data = [rng.normal(size=(8, 8, 8, 3)).astype("float32") for _ in range(2)]
    patterns = estimate_patterns(model, data, "relu")
    kernels = {name: model.get_layer(name).get_weights()[0]
               for name in ("conv1", "conv2", "fc1", "fc2")}
    mats = {name: {"W": k, "A": patterns.patterns[name], "A*W": patterns.patterns[name] * k}
            for name, k in kernels.items()}
    return model, patterns, mats, figure3_spectra(model, patterns)


def _row(table, panel, layer, kind):
    rows = table[(table.panel == panel) & (table.layer == layer) & (table.matrix == kind)]
    assert len(rows) == 1, (panel, layer, kind)
    return rows.iloc[0]


def test_figure3_full_matrix_ratios_equal_numpy_svd(figure3_case):
    _, _, mats, table = figure3_case
    for name, by_kind in mats.items():
        for kind, kernel in by_kind.items():
            if kernel.ndim == 4:  # stack the kh*kw slices (c_in x c_out) row-wise
                stacked = np.concatenate([kernel[i, j] for i in range(kernel.shape[0])
                                          for j in range(kernel.shape[1])], axis=0)
            else:
                stacked = kernel
            row = _row(table, "a", name, kind)
            assert (row.rows, row.cols) == stacked.shape
            assert row.position == "full"
            assert row.ratio == pytest.approx(_numpy_ratio(stacked), rel=1e-9)


def test_figure3_centre_slice_is_the_middle_position(figure3_case, rng):
    _, _, mats, table = figure3_case
    for name in ("conv1", "conv2"):
        for kind, kernel in mats[name].items():
            row = _row(table, "b", name, kind)
            assert row.position == "1,1"
            assert row.ratio == pytest.approx(_numpy_ratio(kernel[1, 1]), rel=1e-9)
    # fc1 reads a Flatten of (4, 4, 5): its centre location (2, 2) holds rows 50..54
    for kind, kernel in mats["fc1"].items():
        row = _row(table, "b", "fc1", kind)
        assert row.position == "2,2"
        start = (2 * 4 + 2) * 5
        assert row.ratio == pytest.approx(_numpy_ratio(kernel[start:start + 5]), rel=1e-9)
    assert _row(table, "b", "fc2", "W").position == "full"
    even = rng.normal(size=(4, 2, 3, 5))
    position, matrix = centre_slice(even)
    assert position == "2,1"
    np.testing.assert_array_equal(matrix, even[4 // 2, 2 // 2])
    with pytest.raises(ValueError, match="does not match kernel rows"):
        centre_slice(rng.normal(size=(7, 2)), spatial=(2, 2, 2))


def _paper_t(m_l, m_next):
    """T_l as the paper's notebook builds it: full SVDs, zero-padded diagonals."""
    u1, s1, v1 = np.linalg.svd(m_l, full_matrices=True)
    u2, s2, v2 = np.linalg.svd(m_next, full_matrices=True)

    def padded(s, n):
        return np.diag(np.pad(s, (0, n - len(s))))
    return padded(np.sqrt(s1), len(v1)) @ v1 @ u2 @ padded(np.sqrt(s2), u2.shape[1])


def test_figure3_interlayer_products_equal_the_formula(figure3_case):
    _, _, mats, table = figure3_case
    c = table[table.panel == "c"]
    assert list(dict.fromkeys(zip(c.layer, c.next_layer))) == [
        ("conv1", "conv2"), ("conv2", "fc1"), ("fc1", "fc2")]
    start = (2 * 4 + 2) * 5
    centre = {"conv1": lambda k: k[1, 1], "conv2": lambda k: k[1, 1],
              "fc1": lambda k: k[start:start + 5], "fc2": lambda k: k}
    for layer, next_layer in [("conv1", "conv2"), ("conv2", "fc1"), ("fc1", "fc2")]:
        for kind in ("A", "W", "A*W"):
            t = _paper_t(centre[layer](mats[layer][kind]).astype(np.float64),
                         centre[next_layer](mats[next_layer][kind]).astype(np.float64))
            row = _row(c, "c", layer, kind)
            assert row.next_layer == next_layer
            assert row.ratio == pytest.approx(_numpy_ratio(t), rel=1e-8)
    # the product of the T_l chain times the outer factors is the product of the slices
    m1, m2 = mats["conv1"]["A*W"][1, 1].astype(np.float64), mats["conv2"]["A*W"][1, 1]
    (u1, s1, v1), (u2, s2, v2) = _svd(m1), _svd(m2)
    t = interlayer_product((u1, s1, v1), (u2, s2, v2))
    np.testing.assert_allclose(u1 @ np.diag(np.sqrt(s1)) @ t @ np.diag(np.sqrt(s2)) @ v2,
                               m1 @ m2, atol=1e-10)


def test_figure3_figure_has_three_panels(figure3_case, tmp_path):
    _, _, _, table = figure3_case
    assert set(table.panel) == {"a", "b", "c"}
    assert set(table.statistic) == set(PANELS.values())
    paths = plot_figure3(table, tmp_path, title="two-conv net")
    assert paths[0].name == "fig3_pattern_spectra.png" and paths[0].stat().st_size > 0
    with pytest.raises(ValueError, match="lacks column 'panel'"):
        plot_figure3(table.drop(columns="panel"), tmp_path)


def test_pattern_spectra_script_writes_figure3(tmp_path, rng):
    import importlib.util
    from pathlib import Path
    import pandas as pd
    from csc_analyzers.pattern import save_patterns
    from csc_analyzers.pattern.training import load_model
    model, _ = load_model("cifar-net", "none", seed=0)
    data = [rng.normal(size=(4, 32, 32, 3)).astype("float32") for _ in range(2)]
    patterns = estimate_patterns(model, data, "relu")
    save_patterns(tmp_path / "p.npz", patterns)
    path = Path(__file__).resolve().parents[1] / "scripts" / "pattern_spectra.py"
    spec = importlib.util.spec_from_file_location("pattern_spectra_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    assert module.main(["--network", "cifar-net", "--weights", "none", "--patterns",
                        str(tmp_path / "p.npz"), "--out-dir", str(out)]) == 0
    written = pd.read_csv(out / "figure3.csv")
    expected = figure3_spectra(model, patterns)
    np.testing.assert_allclose(written["ratio"], expected["ratio"], rtol=1e-9)
    assert list(written["panel"]) == list(expected["panel"])
    assert (out / "fig3_pattern_spectra.png").stat().st_size > 0
    assert not (out / "layers_all_positions.csv").exists()
