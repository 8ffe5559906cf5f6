"""The report's claims on synthetic result tables written with the experiments'
column layout: each claim's scope (the networks and methods the paper states
it for), its verdict ("holds", "does not hold", "not testable here" with the
reason), the numbers its evidence carries (recomputed here with numpy), the
SSIM column it reads (``ssim_paper``), that beyond-the-paper rows never
change a verdict, and that NaN, flagged or undefined-map rows stay out of the
medians and are counted per reason. The Figure 3 claim is covered by
tests/test_report_figure3.py; the claim logic on its own by
tests/test_claims_scope.py."""
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from csc_analyzers.claims import FAILS, HOLDS, UNTESTABLE
from csc_analyzers.experiments.common import ROW_COLUMNS
from csc_analyzers.experiments.csc import TABLE_COLUMNS
from csc_analyzers.report import claims, method_table, theorem_claim
from test_csc_experiment import tiny_network

NET = "vgg16"  # the tiny network under VGG-16's name: in the scope of the VGG-16 claims
CONVERGING = ("DTD", "LRP a1b0", "PatternNet")  # in the paper's converging set on VGG-16
NON_CONVERGING = ("Gradient", "LRP-z")
RANDOM_LOGIT, SANITY, MODIFIED_BP, FREE = "random_logit", "sanity", "converge", "free"
A1B0, CLASS, CMP, A5B4 = "a1b0_small", "class", "cmp", "a5b4"


def named(name):
    return dataclasses.replace(tiny_network(), name=name)  # first convolution: "conv1"


@pytest.fixture(scope="module")
def network():
    return named(NET)


def csc_table(path, conv, input_values=None, baseline=(0.3, 0.2), network=NET):
    """csc.csv with the median CSC per method after conv1 (``conv``) and at the
    input (``input_values``, default: the conv value), injection at fc2, and
    the random baseline rows (no injection layer)."""
    input_values = input_values or {}
    rows = []
    for method, value in conv.items():
        for layer, index, v in (("input", 0, input_values.get(method, value)),
                                ("conv1", 1, value)):
            for statistic, s in (("median", v), ("p25", v - 0.01), ("undefined_fraction", 0.0)):
                rows.append({"network": network, "method": method, "injection_layer": "fc2",
                             "layer": layer, "layer_index": index, "statistic": statistic,
                             "value": s, "n_images": 3, "n_vectors": 4, "nonfinite": False})
    for layer, index, v in (("input", 0, baseline[1]), ("conv1", 1, baseline[0])):
        rows.append({"network": network, "method": "random baseline", "injection_layer": "",
                     "layer": layer, "layer_index": index, "statistic": "median", "value": v,
                     "n_images": 0, "n_vectors": 4, "nonfinite": False})
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    _append(path / "csc.csv", frame)


def _append(path, frame):
    if path.exists():
        frame = pd.concat([pd.read_csv(path, keep_default_na=False, na_values=[""]), frame],
                          ignore_index=True)
    frame.to_csv(path, index=False)


def per_image_table(path, name, experiment, values, *, metric, other=None, level=0,
                    layer="logits", flagged=(), network=NET, other_metric=None, reasons=None):
    """A per-image table (``ROW_COLUMNS``): ``values[method]`` are the
    per-image values of ``metric``; ``other[method]`` those of
    ``other_metric`` (the rows the report must not read). Rows whose
    (method, image) is in ``flagged`` carry nonfinite=True; NaN values are
    flagged as the experiments flag them. ``reasons[(method, image)]`` is the
    ``undefined`` reason of the image's rows (e.g. "zero map": finite value,
    not flagged nonfinite)."""
    rows = []
    reasons = reasons or {}
    for metric_name, table in ((metric, values), (other_metric, other or {})):
        for method, series in table.items():
            for image_id, value in enumerate(series):
                bad = (method, image_id) in flagged or not np.isfinite(value)
                rows.append(dict(zip(ROW_COLUMNS, (network, method, image_id, experiment, level,
                                                   layer, metric_name, value, 0, bad,
                                                   reasons.get((method, image_id), "")))))
    _append(path / name, pd.DataFrame(rows, columns=list(ROW_COLUMNS)))


def random_logit(path, paper, standard=None, flagged=(), reasons=None):
    """random_logit.csv: ``ssim_paper`` and ``ssim_standard`` rows (both
    flagged for the (method, image) pairs in ``flagged``), and unflagged
    ``spearman`` and ``random_class`` rows."""
    standard = standard if standard is not None else {m: [0.5] * len(v) for m, v in paper.items()}
    per_image_table(path, "random_logit.csv", "random_logit", paper, metric="ssim_paper",
                    other=standard, other_metric="ssim_standard", flagged=flagged,
                    reasons=reasons)
    per_image_table(path, "random_logit.csv", "random_logit",
                    {m: [1.0] * len(v) for m, v in paper.items()}, metric="spearman",
                    other={m: [7.0] * len(v) for m, v in paper.items()},
                    other_metric="random_class")


def sanity(path, level1, level2, standard=None):
    standard = standard if standard is not None else {m: [0.5] * len(v) for m, v in level1.items()}
    per_image_table(path, "sanity_cascading.csv", "sanity_cascading", level1, metric="ssim_paper",
                    other=standard, other_metric="ssim_standard", level=1, layer="fc2")
    per_image_table(path, "sanity_cascading.csv", "sanity_cascading", level2, metric="ssim_paper",
                    level=2, layer="fc1")


def all_rows(results, network, *, trained=True, seed=0):
    methods = method_table(results, network, seed=seed)
    return claims(results, network, methods, trained=trained, seed=seed)


def claim_of(results, network, key, *, trained=True, seed=0):
    """(claim, evidence, verdict) of the claim's own row; verdict with its reason."""
    rows = all_rows(results, network, trained=trained, seed=seed)
    found = [r for r in rows if r.key == key and not r.beyond]
    assert len(found) == 1, [(r.key, r.beyond) for r in rows]
    return found[0].claim, found[0].evidence, found[0].verdict_text


def beyond_of(results, network, key, *, trained=True, seed=0):
    return [r for r in all_rows(results, network, trained=trained, seed=seed)
            if r.key == key and r.beyond]


def pooled(measured, which):
    """(median, low, high, n) of the interval after ``which:`` in the text."""
    match = re.search(rf"{which}: ([0-9.]+) \[([0-9.]+), ([0-9.]+)\] \(n=(\d+)\)", measured)
    assert match, measured
    median, low, high = map(float, match.groups()[:3])
    assert low <= median <= high
    return median, low, high, int(match.group(4))


CONVERGED_CSC = {"DTD": 0.9991, "LRP a1b0": 0.9999999, "PatternNet": 0.995,
                 "Gradient": 0.87, "LRP-z": 0.65}


# -- convergence claims (csc.csv) -------------------------------------------------------


def test_modified_bp_claim_holds_with_the_count_and_the_minimum(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    claim, measured, holds = claim_of(tmp_path, network, MODIFIED_BP)
    assert holds == HOLDS == "holds"
    assert measured == ("median CSC after conv1 >= 0.99 for 3 of 3 methods; "
                        "min 0.9950 (PatternNet) (n=3 images)")


def test_modified_bp_claim_fails_naming_the_methods_below(tmp_path, network):
    csc_table(tmp_path, {**CONVERGED_CSC, "DTD": 0.9812, "PatternNet": 0.9899})
    _, measured, holds = claim_of(tmp_path, network, MODIFIED_BP)
    assert holds == FAILS == "does not hold"
    assert measured == ("median CSC after conv1 >= 0.99 for 1 of 3 methods; min 0.9812 "
                        "(DTD); below: DTD, PatternNet (n=3 images)")
    _, untrained_measured, untrained = claim_of(tmp_path, network, MODIFIED_BP, trained=False)
    assert untrained == f"{UNTESTABLE}: needs ImageNet weights (random weights here: the " \
        "measurement is architecture-level)"
    assert untrained_measured == "architecture-level (random weights): " + measured


def test_exactly_the_threshold_converges(tmp_path, network):
    csc_table(tmp_path, {**CONVERGED_CSC, "PatternNet": 0.99})
    assert claim_of(tmp_path, network, MODIFIED_BP)[2] == HOLDS


def test_methods_outside_the_claim_go_beyond_the_paper(tmp_path, network):
    """GuidedBP, Deconv, RectGrad (a ReLU on the backward signal) and LRP a5b4
    far below 0.99 on VGG-16: the claim still holds, they are listed beyond."""
    csc_table(tmp_path, {**CONVERGED_CSC, "GuidedBP": 0.5, "Deconv": 0.4, "RectGrad": 0.6,
                         "LRP a5b4": 0.7})
    _, measured, holds = claim_of(tmp_path, network, MODIFIED_BP)
    assert holds == HOLDS and "3 of 3 methods" in measured
    (beyond,) = beyond_of(tmp_path, network, MODIFIED_BP)
    assert "GuidedBP, Deconv, RectGrad, LRP a5b4" in beyond.scope and beyond.verdict == ""
    assert beyond.evidence == ("median CSC after conv1 >= 0.99 for 0 of 4 methods; min 0.4000 "
                               "(Deconv); below: GuidedBP, Deconv, RectGrad, LRP a5b4 "
                               "(n=3 images)")
    # LRP a5b4 has its own VGG-16 claim: below the converging methods' minimum
    _, measured, holds = claim_of(tmp_path, network, A5B4)
    assert holds == HOLDS and measured == ("LRP a5b4: 0.7000; converging methods' min 0.9950 "
                                           "(PatternNet) (n=3 images)")


def test_non_converging_claim_lists_each_method_and_the_baseline(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC, baseline=(0.3125, 0.2))
    _, measured, holds = claim_of(tmp_path, network, FREE)
    assert holds == HOLDS
    assert measured == ("LRP-z: 0.6500; Gradient: 0.8700 (random baseline 0.312) "
                        "(n=3 images)")


def test_non_converging_claim_fails_when_the_gradient_converges(tmp_path, network):
    csc_table(tmp_path, {**CONVERGED_CSC, "Gradient": 0.9935})
    _, measured, holds = claim_of(tmp_path, network, FREE)
    assert holds == FAILS and "Gradient: 0.9935" in measured
    assert claim_of(tmp_path, network, FREE, trained=False)[2].startswith(
        f"{UNTESTABLE}: needs ImageNet weights")


def test_lrp_a1b0_input_claim_reads_the_input_layer(tmp_path):
    small = named("cifar-net")
    csc_table(tmp_path, CONVERGED_CSC, input_values={"LRP a1b0": 1 - 4e-7}, network="cifar-net")
    _, measured, holds = claim_of(tmp_path, small, A1B0)
    assert holds == HOLDS and measured == "1 - median CSC at the input = 4.00e-07 (n=3 images)"
    other = tmp_path / "other"
    other.mkdir()
    # converged after conv1 (0.9999999) but not to 1 - 1e-6 at the input
    csc_table(other, CONVERGED_CSC, input_values={"LRP a1b0": 1 - 3e-5}, network="cifar-net")
    _, measured, holds = claim_of(other, small, A1B0)
    assert holds == FAILS and measured == "1 - median CSC at the input = 3.00e-05 (n=3 images)"
    assert claim_of(other, small, A1B0, trained=False)[2] == \
        f"{UNTESTABLE}: needs trained weights (random weights here)"


def test_cifar_net_report_does_not_score_the_vgg16_resnet50_claims(tmp_path):
    """On the small network the convergence claims (stated on VGG-16 and
    ResNet-50) are not testable, with the reason; their measurement (here:
    it would fail) is a beyond-the-paper row; only Figure 5d's claim is scored."""
    small = named("cifar-net")
    csc_table(tmp_path, {**CONVERGED_CSC, "PatternNet": 0.5, "Gradient": 0.999,
                         "LRP a5b4": 0.8}, network="cifar-net")
    rows = all_rows(tmp_path, small)
    own = {r.key: r for r in rows if not r.beyond}
    for key in (MODIFIED_BP, FREE):
        assert own[key].verdict == UNTESTABLE
        assert own[key].reason == ("the paper states this for VGG-16 and ResNet-50, not for "
                                   "the small network")
    assert own[A5B4].reason == "the paper states this for VGG-16, not for the small network"
    assert own[A1B0].verdict == HOLDS
    beyond = {r.key: r for r in rows if r.beyond and "not in the claim's scope" in r.scope}
    assert beyond[MODIFIED_BP].outcome == "unlike the paper's statement"
    assert "min 0.5000 (PatternNet)" in beyond[MODIFIED_BP].evidence
    assert "PatternNet left out on the small network by the paper's code" in \
        beyond[MODIFIED_BP].scope
    assert beyond[FREE].outcome == "unlike the paper's statement"
    assert not any(r.verdict in (HOLDS, FAILS) for r in rows if r.key != A1B0)


def test_another_networks_rows_are_not_read(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    csc_table(tmp_path, {m: 0.5 for m in CONVERGED_CSC}, network="other")
    assert claim_of(tmp_path, network, MODIFIED_BP)[2] == HOLDS


# -- random logit and sanity check (per-image SSIM tables) -------------------------------


HIGH = {"DTD": [0.97, 0.95, 0.99, 0.93], "LRP a1b0": [0.96, 0.92, 0.98],
        "PatternNet": [0.91, 0.99]}
LOW = {"Gradient": [0.45, 0.6, 0.55], "LRP-z": [0.7, 0.4]}


def test_random_logit_claim_holds_with_the_pooled_medians(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    random_logit(tmp_path, {**HIGH, **LOW})
    claim, measured, holds = claim_of(tmp_path, network, RANDOM_LOGIT)
    assert holds == HOLDS and "Figure 4a" in claim
    median, _, _, n = pooled(measured, "converging")
    assert n == 9 and median == pytest.approx(np.median(sum(HIGH.values(), [])), abs=5e-4)
    median, _, _, n = pooled(measured, "others")
    assert n == 5 and median == pytest.approx(np.median(sum(LOW.values(), [])), abs=5e-4)
    # the groups follow the measured CSC verdicts: a Gradient that converges here counts
    moved = tmp_path / "moved"
    moved.mkdir()
    csc_table(moved, {**CONVERGED_CSC, "Gradient": 0.995})
    random_logit(moved, {**HIGH, **LOW})
    _, measured, _ = claim_of(moved, network, RANDOM_LOGIT)
    assert pooled(measured, "converging")[3] == 12 and pooled(measured, "others")[3] == 2


def test_random_logit_claim_fails_below_the_threshold(tmp_path, network):
    """Converging methods' pooled median 0.85 (> the others' 0.5, < 0.9): does not hold."""
    csc_table(tmp_path, CONVERGED_CSC)
    random_logit(tmp_path, {"DTD": [0.84, 0.85, 0.86], "LRP a1b0": [0.85, 0.83],
                            **LOW})
    _, measured, holds = claim_of(tmp_path, network, RANDOM_LOGIT)
    assert holds == FAILS and pooled(measured, "converging")[0] == pytest.approx(0.85, abs=5e-4)
    assert claim_of(tmp_path, network, RANDOM_LOGIT, trained=False)[2].startswith(
        f"{UNTESTABLE}: needs ImageNet weights")


def test_random_logit_claim_fails_when_the_others_score_higher(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    random_logit(tmp_path, {**HIGH, "Gradient": [0.99, 0.995, 0.999]})
    assert claim_of(tmp_path, network, RANDOM_LOGIT)[2] == FAILS


def test_random_logit_claim_without_non_converging_methods(tmp_path, network):
    csc_table(tmp_path, {m: v for m, v in CONVERGED_CSC.items() if m in CONVERGING})
    random_logit(tmp_path, HIGH)
    _, measured, holds = claim_of(tmp_path, network, RANDOM_LOGIT)
    assert holds == HOLDS and measured.endswith("others: n/a")


def test_methods_beyond_figure4_do_not_enter_the_groups(tmp_path, network):
    """Excitation BP (not in Figure 4) converging with SSIM 0.1 leaves the
    pooled median of the converging methods unchanged; it is a beyond row."""
    csc_table(tmp_path, {**CONVERGED_CSC, "Excitation BP": 0.999})
    random_logit(tmp_path, {**HIGH, **LOW, "Excitation BP": [0.1, 0.1, 0.1, 0.1]})
    _, measured, holds = claim_of(tmp_path, network, RANDOM_LOGIT)
    assert holds == HOLDS and pooled(measured, "converging")[3] == 9
    (beyond,) = beyond_of(tmp_path, network, RANDOM_LOGIT)
    assert "Excitation BP" in beyond.scope and beyond.outcome == "unlike the paper's statement"


@pytest.mark.parametrize("paper_high", [True, False])
def test_claims_read_the_paper_recipe_not_the_standard_one(tmp_path, network, paper_high):
    """ssim_paper and ssim_standard disagree: the verdict follows ssim_paper."""
    high = {m: v for m, v in HIGH.items()}
    low = {m: [0.3] * len(v) for m, v in HIGH.items()}
    paper, standard = (high, low) if paper_high else (low, high)
    csc_table(tmp_path, CONVERGED_CSC)
    random_logit(tmp_path, {**paper, **LOW}, standard={**standard, **LOW})
    sanity(tmp_path, {**paper, **LOW}, {m: [0.1, 0.1] for m in CONVERGED_CSC},
           standard={**standard, **LOW})
    expected = HOLDS if paper_high else FAILS
    for start in (RANDOM_LOGIT, SANITY):
        _, measured, holds = claim_of(tmp_path, network, start)
        assert holds == expected, (start, measured)
        assert pooled(measured, "converging")[0] == pytest.approx(
            np.median(sum(paper.values(), [])), abs=5e-4)


def test_nan_and_flagged_rows_are_not_in_the_medians(tmp_path, network):
    """A NaN SSIM (constant map), a finite SSIM of a map that held NaN/Inf
    (flagged) and a finite SSIM of an all-zero map (reason "zero map", not
    flagged nonfinite) are left out of the pooled median and its n; the
    per-method table counts them as undefined maps, per reason."""
    csc_table(tmp_path, CONVERGED_CSC)
    values = {"DTD": [0.95, np.nan, 0.97, 0.0, 0.2], "LRP a1b0": [0.96, 0.0], **LOW}
    random_logit(tmp_path, values, flagged={("DTD", 3), ("LRP a1b0", 1)},
                 reasons={("DTD", 3): "overflow", ("DTD", 4): "zero map"})
    _, measured, holds = claim_of(tmp_path, network, RANDOM_LOGIT)
    median, _, _, n = pooled(measured, "converging")
    assert (n, median) == (3, pytest.approx(0.96, abs=5e-4))
    assert holds == HOLDS
    rows = method_table(tmp_path, network, seed=0).set_index("method")
    # DTD: ssim_paper of images 1 (NaN), 3 and 4, ssim_standard of images 3 and 4;
    # LRP a1b0: both SSIMs of image 1
    assert dict(rows["undefined_maps"]) == {"DTD": 5, "LRP a1b0": 2, "PatternNet": 0,
                                            "Gradient": 0, "LRP-z": 0}
    assert rows.loc["DTD", "random_logit_ssim"].n == 2
    by_reason = {(r["method"], r["reason"]): r["rows"]
                 for r in method_table(tmp_path, network, seed=0).attrs["undefined"]}
    assert by_reason == {("DTD", "overflow"): 2, ("DTD", "undefined score"): 1,
                         ("DTD", "zero map"): 2, ("LRP a1b0", "unknown"): 2}


def test_sanity_claim_reads_level_one_only(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    sanity(tmp_path, {**HIGH, **LOW}, {m: [0.05, 0.05, 0.05] for m in CONVERGED_CSC})
    claim, measured, holds = claim_of(tmp_path, network, SANITY)
    assert holds == HOLDS and "Figure 4b" in claim
    assert pooled(measured, "converging")[3] == 9 and pooled(measured, "others")[3] == 5
    low = tmp_path / "low"
    low.mkdir()
    csc_table(low, CONVERGED_CSC)
    sanity(low, {m: [0.2, 0.3] for m in CONVERGED_CSC}, {**HIGH, **LOW})
    _, measured, holds = claim_of(low, network, SANITY)
    assert holds == FAILS and pooled(measured, "converging")[0] == pytest.approx(0.25, abs=5e-4)
    assert claim_of(low, network, SANITY, trained=False)[2].startswith(
        f"{UNTESTABLE}: needs ImageNet weights")
    near = tmp_path / "near"  # pooled median 0.85: above the others' 0.5, below 0.9
    near.mkdir()
    csc_table(near, CONVERGED_CSC)
    sanity(near, {"DTD": [0.84, 0.86], "LRP a1b0": [0.85], **LOW}, {**HIGH, **LOW})
    _, measured, holds = claim_of(near, network, SANITY)
    assert holds == FAILS and pooled(measured, "converging")[0] == pytest.approx(0.85, abs=5e-4)


def test_no_converging_method_ssim_claims_not_testable(tmp_path, network):
    csc_table(tmp_path, {m: 0.5 for m in CONVERGED_CSC})
    random_logit(tmp_path, {**HIGH, **LOW})
    rows = {r.key: r for r in all_rows(tmp_path, network) if not r.beyond}
    for key in (RANDOM_LOGIT, SANITY):
        assert rows[key].verdict == UNTESTABLE
        assert rows[key].reason == "none of the claim's methods was measured in this run"
    methods = method_table(tmp_path, network, seed=0)
    assert claims(tmp_path, network, methods.iloc[0:0], trained=True, seed=0) == []


# -- class sensitivity ------------------------------------------------------------------


def class_table(path, gaps):
    """``gaps``: per-image abs_mask_gap values (the claim's metric); the
    positive-share mask_gap rows hold 99 (the claim must not read them)."""
    per_image_table(path, "class_sensitivity.csv", "class_sensitivity", gaps,
                    metric="abs_mask_gap", other={m: [99.0] * len(v) for m, v in gaps.items()},
                    other_metric="mask_gap")


def test_class_sensitivity_claim_against_the_reference_methods(tmp_path, network):
    csc_table(tmp_path, CONVERGED_CSC)
    class_table(tmp_path, {"LRP a1b0": [0.01, 0.03, 0.02], "Gradient": [0.3, 0.5],
                           "LRP-z": [0.4]})
    _, measured, holds = claim_of(tmp_path, network, CLASS)
    assert holds == HOLDS
    assert pooled(measured, "mask gap LRP a1b0")[:1] == (pytest.approx(0.02, abs=5e-4),)
    median, _, _, n = pooled(measured, "LRP-z, Gradient")
    assert (median, n) == (pytest.approx(0.4, abs=5e-4), 3)
    other = tmp_path / "other"
    other.mkdir()
    csc_table(other, CONVERGED_CSC)
    class_table(other, {"LRP a1b0": [0.6, 0.5], "Gradient": [0.3, 0.2]})
    assert claim_of(other, network, CLASS)[2] == FAILS
    assert claim_of(other, network, CLASS, trained=False)[2].startswith(
        f"{UNTESTABLE}: needs ImageNet weights")


def test_class_sensitivity_claim_without_reference_methods_needs_0_in_interval(tmp_path,
                                                                               network):
    csc_table(tmp_path, CONVERGED_CSC)
    class_table(tmp_path, {"LRP a1b0": [-0.02, 0.01, 0.0, 0.03]})
    _, measured, holds = claim_of(tmp_path, network, CLASS)
    assert holds == HOLDS and measured.endswith(": n/a")
    other = tmp_path / "other"
    other.mkdir()
    csc_table(other, CONVERGED_CSC)
    class_table(other, {"LRP a1b0": [0.05, 0.07, 0.06]})  # interval above 0
    assert claim_of(other, network, CLASS)[2] == FAILS


def test_class_sensitivity_claim_overlapping_the_references_does_not_hold(tmp_path, network):
    """LRP a1b0 above 0 and overlapping the references' interval: no."""
    csc_table(tmp_path, CONVERGED_CSC)
    class_table(tmp_path, {"LRP a1b0": [0.2, 0.3, 0.25], "Gradient": [0.25, 0.35, 0.3]})
    assert claim_of(tmp_path, network, CLASS)[2] == FAILS


# -- Theorem 1 (theorem1.csv) -----------------------------------------------------------


def theorem_table(path, last):
    """theorem1.csv's columns; ``last[distribution]`` are the sv ratios of the
    trials at the largest n_factors (12); n_factors 1 has ratio 1."""
    rows = []
    for distribution, ratios in last.items():
        for shape in ("square 64", "widening 16..512"):
            for trial, ratio in enumerate(ratios):
                for n_factors, value in ((1, 1.0), (12, ratio)):
                    rows.append({"distribution": distribution, "shape": shape, "trial": trial,
                                 "n_factors": n_factors, "sv_ratio": value, "csc": 0.5})
    pd.DataFrame(rows).to_csv(path / "theorem1.csv", index=False)


def test_theorem_claim_verdicts_and_numbers(tmp_path):
    assert theorem_claim(tmp_path) is None
    theorem_table(tmp_path, {"signed gaussian": [2.0, 3.0, 40.0], "|gaussian|": [5e3, 2e3, 1e9],
                             "uniform": [1e6, 1e6, 1e6]})
    row = theorem_claim(tmp_path)
    assert row.verdict == HOLDS and "Theorem 1" in row.claim and "no network" in row.scope
    assert row.evidence == ("sigma1/sigma2 after 12 factors: non-negative min 5.00e+03, "
                            "signed Gaussian 3.00")
    theorem_table(tmp_path, {"signed gaussian": [20.0, 30.0, 1.0], "uniform": [1e6] * 3})
    assert theorem_claim(tmp_path).verdict == FAILS
    theorem_table(tmp_path, {"signed gaussian": [2.0] * 3, "uniform": [1e6] * 3,
                             "row-stochastic": [900.0, 1e9, 800.0]})
    row = theorem_claim(tmp_path)
    assert row.verdict == FAILS and "non-negative min 9.00e+02" in row.evidence


# -- the document -----------------------------------------------------------------------


def _write(results, name, weights):
    from types import SimpleNamespace

    from csc_analyzers.report import write_report
    tiny = named(name)
    network = SimpleNamespace(name=name, model=tiny.model, aliases=tiny.aliases,
                              layers=tiny.layers, weights=weights)
    settings = SimpleNamespace(seed=0, n_vectors=4, n_images=3, recipe="paper", data="builtin")
    path = write_report(results, settings=settings, networks={name: {"network": network}},
                        figures=[], wall_time=60.0)
    return path.read_text(), pd.read_csv(results / "claims.csv", keep_default_na=False)


def test_cifar_net_report_says_why_the_vgg16_claims_are_not_scored(tmp_path):
    csc_table(tmp_path, CONVERGED_CSC, network="cifar-net")
    per_image_table(tmp_path, "random_logit.csv", "random_logit", {**HIGH, **LOW},
                    metric="ssim_paper", network="cifar-net",
                    reasons={("DTD", 0): "zero map", ("Gradient", 1): "overflow"})
    text, table = _write(tmp_path, "cifar-net", "trained on builtin")
    line = next(l for l in text.splitlines() if l.startswith("| All modified-BP methods"))
    assert "| not testable here: the paper states this for VGG-16 and ResNet-50, not for the " \
        "small network |" in line
    assert "### Beyond the paper" in text and "never count against a claim" in text
    assert "| undefined maps |" in text
    assert "| method | overflow | zero map |" in text and "| DTD | 0 | 1 |" in text
    assert "| Gradient | 1 | 0 |" in text
    own = table[~table.beyond.astype(bool)]
    assert set(own.verdict) <= {HOLDS, FAILS, UNTESTABLE}
    assert set(own.loc[own.verdict != UNTESTABLE, "key"]) == {A1B0}
    assert (table[table.beyond.astype(bool)].verdict == "").all()


def test_random_weight_vgg16_report_needs_imagenet_weights(tmp_path):
    csc_table(tmp_path, CONVERGED_CSC)
    text, table = _write(tmp_path, "vgg16", "random")
    own = table[~table.beyond.astype(bool)].set_index("key")
    assert own.loc[MODIFIED_BP, "verdict"] == UNTESTABLE
    assert own.loc[MODIFIED_BP, "reason"].startswith("needs ImageNet weights")
    assert own.loc[MODIFIED_BP, "evidence"].startswith("architecture-level (random weights)")
    assert "architecture-level" in text


def test_class_sensitivity_claim_not_decidable_without_sensitive_references(tmp_path, network):
    """References whose gap interval reaches 0: the network shows no class
    sensitivity, so LRP a1b0's gap, near 0 or not, decides nothing."""
    csc_table(tmp_path, CONVERGED_CSC)
    class_table(tmp_path, {"LRP a1b0": [0.01, 0.02, 0.015], "Gradient": [-0.01, 0.0, 0.01],
                           "LRP-z": [-0.02, 0.005]})
    assert claim_of(tmp_path, network, CLASS)[2].startswith(f"{UNTESTABLE}: not decidable here")


def test_a_pipe_in_a_claim_row_does_not_break_the_markdown_table():
    from csc_analyzers.claims import ClaimRow
    from csc_analyzers.report import beyond_markdown, claims_markdown
    row = ClaimRow(claim="c", scope="s", verdict=HOLDS, reason="", evidence="|x| = 1")
    line = claims_markdown([row])[-1]
    assert line == "| c | s | holds | \\|x\\| = 1 |"
    assert line.replace("\\|", "").count("|") == 5
    beyond = ClaimRow(claim="c", scope="s", verdict="", reason="", evidence="a|b",
                      beyond=True, outcome="o")
    assert beyond_markdown([beyond])[-2] == "| c | s | a\\|b | o |"
