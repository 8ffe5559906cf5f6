"""Undefined maps are flagged with their reason, never scored, and counted:
the reason of a set of maps (:func:`undefined_reason`), of a table's rows
(old tables without the column read as "unknown"), and a zero map and a NaN
map in the random-logit, sanity-check and class-sensitivity experiments:
their rows carry "zero map" / "nan input", stay out of the report's and the
audit's medians, and are counted per method and reason in both."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import small_cnn
from csc_analyzers.audit.report import summarize, verdict_table, format_table
from csc_analyzers.experiments.class_sensitivity import run_class_sensitivity
from csc_analyzers.experiments.common import ModelNetwork, row
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.sanity import run_sanity
from csc_analyzers.integrity import (count_undefined, flag_nonfinite, undefined_reason,
                                     undefined_reasons)
from csc_analyzers.registry import select_methods
from csc_analyzers.report import method_table, undefined_markdown


# -- the reason of maps and of rows (pure) ----------------------------------------------

def test_undefined_reason_of_maps():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 4))
    assert undefined_reason(good, good) == ""
    assert undefined_reason(good, np.zeros((4, 4))) == "zero map"
    assert undefined_reason(np.full((4, 4), 2.5), good) == "constant map"
    assert undefined_reason(np.full((4, 4), 2.5), constant_undefined=False) == ""
    assert undefined_reason(np.zeros((4, 4)), constant_undefined=False) == "zero map"
    nan, inf = good.copy(), good.copy()
    nan[1, 2], inf[0, 0] = np.nan, -np.inf
    assert undefined_reason(good, nan) == "nan map"
    assert undefined_reason(nan, inf) == "overflow"  # Inf first: the pass overflowed
    image = rng.normal(size=(4, 4, 3))
    assert undefined_reason(good, inputs=image) == ""
    image[0, 0, 0] = np.nan
    assert undefined_reason(nan, inf, inputs=image) == "nan input"


def test_row_reason_and_flags():
    defined = row("n", "m", 0, "e", 0, "l", "ssim_paper", 0.5, 0)
    assert (defined["nonfinite"], defined["undefined"]) == (False, "")
    zero = row("n", "m", 0, "e", 0, "l", "ssim_paper", 0.1, 0, undefined="zero map")
    assert (zero["nonfinite"], zero["undefined"]) == (False, "zero map")
    nan = row("n", "m", 0, "e", 0, "l", "ssim_paper", np.nan, 0)
    assert (nan["nonfinite"], nan["undefined"]) == (True, "undefined score")


def test_undefined_reasons_of_new_and_old_tables():
    new = pd.DataFrame({"method": ["a"] * 5, "value": [0.5, 0.2, np.nan, 0.3, 0.4],
                        "nonfinite": [False, False, True, True, False],
                        "undefined": ["", "zero map", "", "", np.nan]})
    assert undefined_reasons(new).tolist() == ["", "zero map", "undefined score", "unknown", ""]
    assert flag_nonfinite(new)["nonfinite"].tolist() == [False, True, True, True, False]
    old = new.drop(columns="undefined")  # written before reasons were recorded
    assert undefined_reasons(old).tolist() == ["", "", "unknown", "unknown", ""]
    assert flag_nonfinite(old)["nonfinite"].tolist() == [False, False, True, True, False]
    counts = count_undefined([new, old, pd.DataFrame()])
    assert {(r.method, r.reason): r.rows for r in counts.itertuples()} == {
        ("a", "zero map"): 1, ("a", "undefined score"): 1, ("a", "unknown"): 3}


# -- a zero map and a NaN map in the experiments ----------------------------------------

def dead_on_negative_images():
    """small_cnn whose first convolution has non-negative kernels and no bias:
    an image <= 0 leaves every ReLU at 0, so its gradient map is all zeros."""
    model = small_cnn(softmax=True, seed=3)
    weights = model.get_weights()
    weights[0], weights[1] = np.abs(weights[0]), np.zeros_like(weights[1])
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("undefined")
    rng = np.random.default_rng(1)
    model = dead_on_negative_images()
    network = ModelNetwork("dead", model, input_range=(-3.0, 3.0))
    images = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    images[0] = -np.abs(images[0])  # image 0: zero map
    images[1, 2, 3, 1] = np.nan  # image 1: NaN input, NaN map
    ids, labels = [0, 1, 2], [0, 1, 2]
    specs = select_methods("Gradient")
    masks = np.zeros((3, 2, 8, 8), bool)
    masks[:, 0, :, :4], masks[:, 1, :, 4:] = True, True
    run_random_logit(network, images, labels, ids, specs, out, seed=0).consolidate()
    run_sanity(network, images, labels, ids, specs, out, seed=0).consolidate()
    run_class_sensitivity(network, images, masks, np.array([[0, 1]] * 3), ids, specs, out,
                          seed=0).consolidate()
    tables = {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False, na_values=[""])
              for name in ("random_logit", "sanity_cascading", "class_sensitivity")}
    return out, model, tables


@pytest.mark.parametrize("name", ["random_logit", "sanity_cascading", "class_sensitivity"])
def test_rows_carry_the_reason_of_their_maps(runs, name):
    _, _, tables = runs
    table = tables[name]
    scored = table[table.metric != "random_class"]
    by_image = scored.groupby("image_id")["undefined"].agg(lambda s: set(s.fillna("")))
    assert by_image[0] == {"zero map"} and by_image[1] == {"nan input"}
    assert by_image[2] == {""}
    assert scored[scored.image_id == 1].nonfinite.all()
    # every row of the zero map is left out, also a finite one
    assert flag_nonfinite(scored[scored.image_id == 0]).nonfinite.all()
    assert (table[table.metric == "random_class"].undefined.fillna("") == "").all()
    if name == "class_sensitivity":  # a zero map's L1 difference is 0, finite: not scored
        l1 = scored[(scored.image_id == 0) & (scored.metric == "l1")]
        assert (l1.value == 0).all() and not l1.nonfinite.any()
    else:  # the SSIM of a zero map is NaN, as its reason says
        ssim = scored[(scored.image_id == 0) & (scored.metric == "ssim_paper")]
        assert ssim.value.isna().all()


def test_report_leaves_them_out_and_counts_them_per_reason(runs):
    out, model, tables = runs
    network = SimpleNamespace(name="dead", model=model, aliases={}, layers=("input", "conv1"))
    table = method_table(out, network, seed=0).set_index("method")
    # image 2 alone is scored
    assert table.loc["Gradient", "random_logit_ssim"].n == 1
    assert table.loc["Gradient", "top_layer_ssim"].n == 1
    assert table.loc["Gradient", "class_l1"].n == 1
    n_rows = sum(int((t.image_id.isin([0, 1]) & (t.metric != "random_class")).sum())
                 for t in tables.values())
    assert table.loc["Gradient", "undefined_maps"] == n_rows
    records = method_table(out, network, seed=0).attrs["undefined"]
    assert {r["reason"] for r in records} == {"zero map", "nan input"}
    assert sum(r["rows"] for r in records) == n_rows
    text = "\n".join(undefined_markdown(records))
    assert "| method | nan input | zero map |" in text and f"| Gradient | {n_rows // 2} |" in text


def test_audit_leaves_them_out_and_counts_them(runs):
    _, _, tables = runs
    summary = summarize(["Gradient"], {"random_logit": tables["random_logit"],
                                       "sanity_cascading": tables["sanity_cascading"],
                                       "class_sensitivity": tables["class_sensitivity"]},
                        logits="fc2", first_conv=None)
    logit = tables["random_logit"]
    expected = logit[(logit.image_id == 2) & (logit.metric == "ssim_standard")].value
    assert summary.loc[0, "random_logit_ssim"] == pytest.approx(float(expected.iloc[0]))
    n = sum(int((t.image_id == 0).sum() - (t.metric == "random_class").sum() / 3)
            for t in tables.values())
    cell = summary.loc[0, "undefined_maps"]
    assert cell == f"{2 * n} (nan input {n}, zero map {n})"
    verdicts = verdict_table(summary)
    assert verdicts.loc[0, "undefined_maps"] == cell
    assert "undefined maps" in format_table(verdicts) and cell in format_table(verdicts)
