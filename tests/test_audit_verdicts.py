"""The audit's verdict rule and summary on synthetic tables (pure functions)."""
import math

import numpy as np
import pandas as pd
import pytest

from csc_analyzers.audit.report import (INSENSITIVE, NOT_MEASURED, SENSITIVE, format_table,
                                        summarize, verdict, verdict_table)

NAN = float("nan")


def summary(*rows):
    columns = ["method", "csc_first_conv", "csc_input", "random_logit_ssim",
               "top_layer_ssim", "class_sensitivity_gap"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows], columns=columns)


def test_each_criterion_alone_makes_a_method_class_insensitive():
    table = verdict_table(summary(
        ("conv", 0.995, 0.5, NAN, NAN, 0.2),   # CSC alone: no SSIM measured
        ("input", 0.2, 0.99, NAN, NAN, 0.2),        # boundary: >= counts
        ("logit", 0.2, 0.5, 0.9, 0.1, 0.2),
        ("top", 0.2, 0.5, 0.1, 0.95, 0.2),
        ("none", 0.989, 0.989, 0.899, 0.899, 0.0),
    ))
    assert list(table["verdict"]) == [INSENSITIVE] * 4 + [SENSITIVE]
    assert "CSC after the first convolution 0.995 >= 0.99" in table.loc[0, "evidence"]
    assert "CSC at the input 0.99 >= 0.99" in table.loc[1, "evidence"]
    assert "random-logit SSIM 0.9 >= 0.9" in table.loc[2, "evidence"]
    assert "top-layer SSIM 0.95 >= 0.9" in table.loc[3, "evidence"]
    # the class gap is reported, not used by the rule
    assert table.loc[4, "class_sensitivity_gap"] == 0.0


def test_missing_values_are_ignored_and_all_missing_is_not_measured():
    table = verdict_table(summary(
        ("no csc", NAN, NAN, 0.95, NAN, NAN),
        ("only top", NAN, NAN, NAN, 0.3, NAN),
        ("nothing", NAN, NAN, NAN, NAN, NAN),
    ))
    assert list(table["verdict"]) == [INSENSITIVE, SENSITIVE, NOT_MEASURED]
    assert table.loc[1, "evidence"] == "top-layer SSIM 0.3 < 0.9"


def test_first_conv_with_few_channels_is_not_used():
    one = summary(("m", 1.0, 0.5, NAN, NAN, NAN))
    narrow = verdict_table(one, first_conv_channels=4)
    wide = verdict_table(one, first_conv_channels=64)
    assert narrow.loc[0, "verdict"] == SENSITIVE
    assert "not used (4 channels < 32)" in narrow.loc[0, "evidence"]
    assert wide.loc[0, "verdict"] == INSENSITIVE
    # thresholds are options
    assert verdict(0.5, 0.5, csc_threshold=0.4)[0] == INSENSITIVE
    assert verdict(0.5, 0.5, 0.5, 0.5, ssim_threshold=0.6)[0] == SENSITIVE


def test_disagreeing_signals_follow_the_ssims_and_say_why():
    """Contrastive LRP: CSC measures the shared z+ chain (converged), both SSIMs
    say the map changes: the verdict follows the SSIMs and the evidence says so."""
    table = verdict_table(summary(
        ("contrastive", 0.999, 0.995, 0.42, 0.3, 0.1),
        ("one ssim", 0.999, NAN, 0.5, NAN, 0.1),
        ("agree", 0.999, 0.995, 0.95, 0.3, 0.1),          # an SSIM fires too: insensitive
        ("ssim only", 0.5, 0.4, 0.95, 0.93, 0.1),
    ))
    assert list(table["verdict"]) == [SENSITIVE, SENSITIVE, INSENSITIVE, INSENSITIVE]
    evidence = table.loc[0, "evidence"]
    assert evidence.startswith("signals disagree: CSC after the first convolution 0.999 >= "
                               "0.99, CSC at the input 0.995 >= 0.99, but random-logit SSIM "
                               "0.42 < 0.9, top-layer SSIM 0.3 < 0.9")
    assert "the verdict follows the SSIMs" in evidence and "Contrastive LRP" in evidence
    assert "signals disagree" not in table.loc[2, "evidence"]
    assert table.loc[3, "evidence"].startswith("random-logit SSIM 0.95 >= 0.9")
    assert "signals disagree: CSC after the first convolution 0.5 < 0.99" in \
        table.loc[3, "evidence"]


def test_columns_not_in_the_verdict_are_labelled():
    one = summary(("m", 1.0, 0.5, NAN, NAN, 0.3))
    narrow = format_table(verdict_table(one, first_conv_channels=4))
    wide = format_table(verdict_table(one, first_conv_channels=64))
    assert "CSC 1st conv (not in verdict)" in narrow and "class gap (not in verdict)" in narrow
    assert "CSC 1st conv (not in verdict)" not in wide and "CSC 1st conv" in wide
    assert "class gap (not in verdict)" in wide


def test_verdict_table_checks_its_columns():
    with pytest.raises(ValueError, match="top_layer_ssim"):
        verdict_table(summary(("m", 1, 1, 1, 1, 1)).drop(columns="top_layer_ssim"))


def test_summarize_takes_the_right_rows_of_each_experiment():
    csc = pd.DataFrame([
        # injection at the logits: the rows the verdict uses
        ("A", "fc", "conv1", "median", 0.97), ("A", "fc", "input", "median", 0.6),
        ("A", "fc", "conv1", "p50", 0.0),       # other statistic
        ("A", "conv2", "conv1", "median", 0.1),  # other injection layer
        ("B", "fc", "input", "median", 0.3),
    ], columns=["method", "injection_layer", "layer", "statistic", "value"])
    rows = []
    for method, values in (("A", [0.1, 0.5, 0.9]), ("B", [0.2, 0.4])):
        rows += [(method, "ssim_standard", 0, v) for v in values]
        rows += [(method, "ssim_paper", 0, 1.0 - v) for v in values]  # not the audit's
    rows.append(("A", "spearman", 0, 0.99))
    logit = pd.DataFrame(rows, columns=["method", "metric", "level", "value"])
    sanity = pd.DataFrame([("A", "ssim_standard", 1, 0.8), ("A", "ssim_standard", 1, 0.6),
                           ("A", "ssim_paper", 1, 0.1), ("A", "ssim_standard", 2, 0.0)],
                          columns=["method", "metric", "level", "value"])
    gap = pd.DataFrame([("B", "mask_gap", 0, 0.25), ("B", "mask_gap", 0, np.nan)],
                       columns=["method", "metric", "level", "value"])
    out = summarize(["A", "B"], {"csc": csc, "random_logit": logit, "sanity_cascading": sanity,
                                 "class_sensitivity": gap}, logits="fc", first_conv="conv1")
    a, b = out.iloc[0], out.iloc[1]
    assert (a.csc_first_conv, a.csc_input) == (0.97, 0.6)
    assert a.random_logit_ssim == 0.5 and b.random_logit_ssim == pytest.approx(0.3)
    assert a.top_layer_ssim == pytest.approx(0.7)
    assert math.isnan(b.csc_first_conv) and b.csc_input == 0.3
    assert math.isnan(a.class_sensitivity_gap) and b.class_sensitivity_gap == 0.25
    text = format_table(verdict_table(out))
    assert text.splitlines()[2].startswith("A ") and "-" in text.splitlines()[3]


def test_summarize_leaves_flagged_rows_out_of_the_medians():
    """A row flagged nonfinite (a map behind a finite value held NaN/Inf) is
    not scored, like a NaN value."""
    logit = pd.DataFrame([("A", "ssim_standard", 0, 0.2, False),
                          ("A", "ssim_standard", 0, 0.4, False),
                          ("A", "ssim_standard", 0, 0.99, True),
                          ("A", "ssim_standard", 0, np.nan, False)],
                         columns=["method", "metric", "level", "value", "nonfinite"])
    out = summarize(["A"], {"random_logit": logit}, logits="fc", first_conv="conv1")
    assert out.iloc[0].random_logit_ssim == pytest.approx(0.3)


def test_a_sensitive_method_with_undefined_verdict_rows_is_not_listed_as_passing_all_tests():
    """Undefined maps are left out of the medians. Where that touches the rows
    the verdict uses (LRP a5b4 on ResNet50V2: NaN relevance at the input,
    overflowing maps), the evidence says how many and the guidance lists the
    method apart from those that passed on every map; zero maps at layers
    the verdict does not use (EfficientNetB0's squeeze-excite gates) leave
    it among them."""
    from csc_analyzers.audit.report import LEFT_OUT_COLUMN, UNDEFINED_COLUMN, guidance

    def csc_row(method, layer, value, undefined=""):
        return (method, "fc", layer, "median", value, undefined)

    csc = pd.DataFrame([
        csc_row("gated", "conv1", 0.4), csc_row("gated", "input", 0.5),
        csc_row("gated", "se_gate", 0.0, "zero map"),  # not a layer the verdict uses
        csc_row("exploding", "conv1", np.nan, "nan map"),
        csc_row("exploding", "input", np.nan, "nan map"),
    ], columns=["method", "injection_layer", "layer", "statistic", "value", "undefined"])
    logit = pd.DataFrame([("gated", "ssim_standard", 0, 0.3, ""),
                          ("exploding", "ssim_standard", 0, 0.6, ""),
                          ("exploding", "ssim_standard", 0, 0.5, "overflow")],
                         columns=["method", "metric", "level", "value", "undefined"])
    out = verdict_table(summarize(["gated", "exploding"], {"csc": csc, "random_logit": logit},
                                  logits="fc", first_conv="conv1"))
    assert list(out[LEFT_OUT_COLUMN]) == [0, 3]
    assert list(out[UNDEFINED_COLUMN]) == ["1 (zero map 1)", "3 (nan map 2, overflow 1)"]
    assert list(out["verdict"]) == [SENSITIVE, SENSITIVE]
    evidence = dict(zip(out["method"], out["evidence"]))
    assert "left out" not in evidence["gated"]
    assert evidence["exploding"].startswith(
        "3 of the rows the verdict uses left out (undefined maps); the medians are of the "
        "defined ones only; random-logit SSIM 0.6 < 0.9")
    paragraphs = guidance(out)
    passed = next(p for p in paragraphs if p.startswith("**Passed all tests:**"))
    assert "gated" in passed and "exploding" not in passed
    assert any(p.startswith("**Passed on the maps that were defined, with others undefined:** "
                            "exploding (3 rows left out; undefined maps in all its tables: "
                            "3 (nan map 2, overflow 1)).") for p in paragraphs)
    alone = guidance(out.iloc[1:2].reset_index(drop=True))
    assert not any(p.startswith("**Passed all tests") for p in alone)
    assert "No method could be measured" not in "\n".join(alone)
