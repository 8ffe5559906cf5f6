"""Appendix B's chains with VGG-16's layer shapes: the alpha-beta matrices as
the paper builds them, convergence of the non-negative chain, the signed
Gaussian chain's slower convergence, the network's weights and patterns."""
import numpy as np
import pandas as pd
import pytest

import csc_analyzers  # noqa: F401  (graph mode first)

from csc_analyzers.convergence_vgg16 import (VGG16_LAYERS, alpha_beta, alpha_beta_matrix,
                                             chain_convergence, generated_vgg16_slices,
                                             network_slices, simulate_vgg16_chains,
                                             vgg16_backward_shapes)


def test_vgg16_backward_shapes_are_the_papers():
    shapes = vgg16_backward_shapes()
    assert len(shapes) == 16
    assert shapes[:4] == [(1000, 4096), (4096, 4096), (4096, 512), (512, 512)]
    assert shapes[-3:] == [(128, 64), (64, 64), (64, 3)]
    for (_, cols), (rows, _) in zip(shapes[:-1], shapes[1:]):
        assert cols == rows


@pytest.mark.parametrize("alpha", [1, 2, 5, 10])
def test_alpha_beta_matrix_equals_the_numpy_formula(alpha):
    beta = alpha - 1
    got = alpha_beta_matrix(np.random.default_rng(3), (40, 30), alpha, beta)
    w = np.random.default_rng(3).standard_normal((40, 30), dtype=np.float32).astype(np.float64)
    expected = alpha * w * (w >= 0) + beta * w * (w < 0)  # the paper's get_alpha_beta_matrix
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert (got >= 0).all() == (beta == 0)
    w32 = w.astype(np.float32)
    before = w32.copy()
    np.testing.assert_array_equal(alpha_beta(w32, alpha, beta), got)
    np.testing.assert_array_equal(w32, before)  # a new array; the draws stay for reuse
    with pytest.raises(ValueError, match="alpha and beta must be >= 0"):
        alpha_beta_matrix(np.random.default_rng(0), (2, 2), 1, -1)


def test_chain_convergence_measures_the_propagated_vectors(rng):
    vectors = rng.normal(size=(5, 6))
    matrices = [rng.normal(size=(6, 4)), rng.normal(size=(4, 3))]
    table = chain_convergence(vectors, matrices, relu=True)
    x = np.maximum(np.maximum(vectors @ matrices[0], 0) @ matrices[1], 0)
    s = np.linalg.svd(x, compute_uv=False)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = np.abs(unit @ unit.T)[np.triu_indices(5, k=1)]
    last = table.iloc[-1]
    assert list(table.depth) == [0, 1, 2] and (last.rows, last.cols) == (5, 3)
    assert last.sv_ratio == pytest.approx(s[0] / s[1])
    assert last.csc == pytest.approx(np.nanmean(cos))
    with pytest.raises(ValueError, match="matrix 1 has 5 rows"):
        chain_convergence(vectors, [rng.normal(size=(5, 4))])


@pytest.fixture(scope="module")
def small_run():
    return simulate_vgg16_chains(rng=np.random.default_rng(0), n_trials=2, n_vectors=8,
                                 alphas=(1, 2))


def test_alpha_1_chain_is_non_negative_and_its_ratio_grows(small_run):
    shapes = vgg16_backward_shapes()
    matrices = [alpha_beta_matrix(np.random.default_rng(1), s, 1, 0) for s in shapes[:3]]
    assert all((m >= 0).all() for m in matrices)
    ratio = (small_run[small_run.family == "alpha=1,beta=0"]
             .groupby("depth")["sv_ratio"].median())
    assert list(ratio.index) == list(range(17))
    # exponential growth: orders of magnitude between depths 2, 5 and 10
    assert np.log10(ratio[5]) > np.log10(ratio[2]) + 2
    assert np.log10(ratio[10]) > np.log10(ratio[5]) + 2
    assert ratio[13] > 1e8


def test_signed_gaussian_chain_does_not_converge_as_fast(small_run):
    median = small_run.groupby(["family", "depth"])[["sv_ratio", "csc"]].median()
    for depth in (5, 10, 13):
        assert median.loc[("signed gaussian", depth), "sv_ratio"] < 100
        assert median.loc[("alpha=1,beta=0", depth), "sv_ratio"] > \
            1e3 * median.loc[("signed gaussian", depth), "sv_ratio"]
    assert median.loc[("alpha=1,beta=0", 13), "csc"] > 1 - 1e-8
    assert median.loc[("signed gaussian", 13), "csc"] < 0.9
    assert set(small_run.family) == {"alpha=1,beta=0", "alpha=2,beta=1", "signed gaussian",
                                     "ReLU", "ReLU network weights"}
    assert (small_run.loc[small_run.family == "ReLU network weights", "weights"]
            .str.startswith("generated").all())


def test_generated_slices_have_keras_glorot_limits():
    matrices = generated_vgg16_slices(np.random.default_rng(0))
    assert [m.shape for m in matrices] == vgg16_backward_shapes()
    fc1 = matrices[2]  # fc1 transposed: (4096, 512), fans 25088 and 4096
    assert np.abs(fc1).max() <= np.sqrt(6 / (25088 + 4096))
    assert np.abs(fc1).max() > 0.99 * np.sqrt(6 / (25088 + 4096))
    conv = matrices[-1]  # block1_conv1 transposed: (64, 3), fans 27 and 576
    assert np.abs(conv).max() <= np.sqrt(6 / (27 + 576))
    assert VGG16_LAYERS[13][0] == "fc1"


def test_network_weights_and_patterns_give_the_centre_slice_chains(cnn, rng):
    from csc_analyzers.pattern import estimate_patterns
    data = [rng.normal(size=(8, 8, 8, 3)).astype("float32") for _ in range(2)]
    patterns = estimate_patterns(cnn, data, "relu")
    slices = network_slices(cnn, patterns)
    conv1, fc1, fc2 = (cnn.get_layer(n).get_weights()[0] for n in ("conv1", "fc1", "fc2"))
    # top first, transposed; fc1 reads a Flatten of (3, 3, 4): centre location (1, 1)
    start = (1 * 3 + 1) * 4
    expected_w = [fc2.T, fc1[start:start + 4].T, conv1[1, 1].T]
    for got, expected in zip(slices["W"], expected_w):
        np.testing.assert_array_equal(got, expected)
    a = patterns.patterns
    np.testing.assert_allclose(slices["A*W"][1], (a["fc1"] * fc1)[start:start + 4].T)
    table = simulate_vgg16_chains(rng=np.random.default_rng(0), n_trials=1, n_vectors=4,
                                  alphas=(1,), model=cnn, patterns=patterns,
                                  weights_label="small cnn", gaussian=False)
    assert set(table.family) == {"alpha=1,beta=0", "ReLU network weights", "pattern A*W"}
    network = table[table.family == "pattern A*W"]
    assert list(network.cols) == [3, 6, 4, 3] and set(network.weights) == {"small cnn"}
    with pytest.raises(ValueError, match="patterns need the model"):
        simulate_vgg16_chains(rng=np.random.default_rng(0), patterns=patterns)


def test_vgg16_chain_figure(small_run, tmp_path):
    from csc_analyzers.plotting.csc import plot_theorem1_vgg16
    paths = plot_theorem1_vgg16(small_run, tmp_path)
    assert paths[0].name == "theorem1_vgg16.png" and paths[0].stat().st_size > 0
    with pytest.raises(ValueError, match="lacks column 'weights'"):
        plot_theorem1_vgg16(pd.DataFrame({"family": ["x"]}), tmp_path)


def test_simulate_theorem1_script_writes_the_vgg16_chains(tmp_path):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "simulate_theorem1.py"
    spec = importlib.util.spec_from_file_location("simulate_theorem1_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--no-generic", "--vgg16-trials", "1",
                        "--vgg16-vectors", "4", "--alphas", "1,3"]) == 0
    table = pd.read_csv(tmp_path / "theorem1_vgg16.csv")
    assert set(table.family) == {"alpha=1,beta=0", "alpha=3,beta=2", "signed gaussian",
                                 "ReLU", "ReLU network weights"}
    assert (tmp_path / "figures" / "theorem1_vgg16.png").stat().st_size > 0
    assert not (tmp_path / "theorem1.csv").exists()
    with pytest.raises(SystemExit):
        module.main(["--out", str(tmp_path), "--patterns", "p.npz"])  # patterns need weights
