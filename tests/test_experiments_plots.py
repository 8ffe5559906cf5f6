"""Figures from a tiny run: files written, bootstrap summary matches the table."""
import numpy as np
import pandas as pd
import pytest

from conftest import small_cnn
from csc_analyzers import analyzers
from csc_analyzers.experiments.class_sensitivity import run_class_sensitivity
from csc_analyzers.experiments.common import ModelNetwork
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.sanity import run_sanity
from csc_analyzers.plotting.sanity import level_summary, make_sanity_figures
from csc_analyzers.registry import select_methods


def test_figures_from_a_tiny_run(tmp_path, rng):
    network = ModelNetwork("tiny", small_cnn(softmax=True), input_range=(-3.0, 3.0))
    images = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    labels, ids = [0, 1, 2], [0, 1, 2]
    specs = select_methods("Gradient,LRP CMP a1b0")
    out = tmp_path / "results"
    run_sanity(network, images, labels, ids, specs, out, save_maps_for=[0]).consolidate()
    run_random_logit(network, images, labels, ids, specs, out).consolidate()
    masks = np.zeros((3, 2, 8, 8), bool)
    masks[:, 0, :, :4] = True
    masks[:, 1, :, 4:] = True
    pairs = np.array([[0, 1], [1, 2], [2, 0]])
    store = run_class_sensitivity(network, images, masks, pairs, ids, specs, out,
                                  save_maps_for=[0])
    store.consolidate()
    assert set(store.table().metric) == {"l1", "l1_mean", "mask_gap", "abs_mask_gap"}
    paths = make_sanity_figures(out, "tiny", tmp_path / "figures",
                                rng=np.random.default_rng(0), n_resamples=200)
    names = {p.name.split("_tiny")[0] for p in paths}
    expected = {"fig1a_sanity_grid", "fig4b_sanity_ssim", "fig4a_random_logit",
                "fig1be_class_insensitivity"}
    if "lrp.cmp_alpha_1_beta_0" in analyzers:  # LRP CMP registered: Figure 6 too
        expected |= {"fig6_lrp_cmp_ssim", "fig6_lrp_cmp_grid"}
    assert expected <= names
    assert all(p.stat().st_size > 1000 for p in paths)

    table = pd.read_csv(out / "sanity_cascading.csv")
    summary = level_summary(table, rng=np.random.default_rng(0), n_resamples=200)
    for _, entry in summary.iterrows():
        values = table[(table.method == entry.method) & (table.level == entry.level)
                       & (table.metric == "ssim_paper")].value
        assert entry["median"] == np.median(values)
        assert entry.low <= entry["median"] <= entry.high


def test_sanity_figures_take_nan_ssims_and_name_the_metric(tmp_path):
    import pytest
    from csc_analyzers.errors import ArgumentError
    from csc_analyzers.plotting.sanity import plot_random_logit, plot_ssim_vs_level

    rows = [("tiny", m, i, "sanity_cascading", lv, f"l{lv}", metric, v)
            for m, v in (("Gradient", 0.5), ("LRP a1b0", np.nan))
            for i in range(3) for lv in (1, 2)
            for metric in ("ssim_paper", "ssim_standard")]
    table = pd.DataFrame(rows, columns=["network", "method", "image_id", "experiment", "level",
                                        "layer", "metric", "value"])
    table.loc[(table.method == "LRP a1b0") & (table.metric == "ssim_standard"), "value"] = 0.9
    summary = level_summary(table, rng=np.random.default_rng(0), n_resamples=50)
    lrp = summary[summary.method == "LRP a1b0"]
    assert lrp["median"].isna().all() and (lrp.n == 0).all()
    standard = level_summary(table, rng=np.random.default_rng(0), n_resamples=50,
                             metric="ssim_standard")
    assert (standard[standard.method == "LRP a1b0"]["median"] == 0.9).all()
    assert plot_ssim_vs_level(table, tmp_path / "b.png", rng=np.random.default_rng(0),
                              n_resamples=50).stat().st_size > 1000
    logit = table.assign(experiment="random_logit")
    assert plot_random_logit(logit, tmp_path / "a.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="'ssim_other'"):
        plot_random_logit(logit, tmp_path / "c.png", metric="ssim_other")
    with pytest.raises(ArgumentError, match="'ssim'"):
        plot_random_logit(logit.assign(metric="ssim"), tmp_path / "d.png")


def test_flagged_rows_are_left_out_of_the_level_medians():
    """A finite SSIM of a map that held Inf (flagged ``nonfinite``) is not in
    the median or n, as in the report."""
    rows = [("tiny", "Gradient", i, "sanity_cascading", 1, "l1", "ssim_paper", v, i == 3)
            for i, v in enumerate([0.2, 0.4, 0.6, 0.0])]
    table = pd.DataFrame(rows, columns=["network", "method", "image_id", "experiment", "level",
                                        "layer", "metric", "value", "nonfinite"])
    entry = level_summary(table, rng=np.random.default_rng(0), n_resamples=50).iloc[0]
    assert (entry["median"], entry.n) == (0.4, 3)
    entry = level_summary(table.drop(columns="nonfinite"), rng=np.random.default_rng(0),
                          n_resamples=50).iloc[0]
    assert (entry["median"], entry.n) == (pytest.approx(0.3), 4)
