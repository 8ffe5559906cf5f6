"""The claim registry on synthetic evidence: every verdict (holds, does not
hold, not testable here with its reason), the scope of each claim as the paper
states it, and beyond-the-paper rows that never change a verdict."""
import numpy as np
import pandas as pd
import pytest

from csc_analyzers.claims import (AGREES, CLAIMS, DIFFERS, FAILS, HOLDS, UNTESTABLE, VERDICTS,
                                  ClaimSpec, Evidence, all_converge, judge, judge_all,
                                  verdicts)

GOOD = {"DTD": 0.9999, "PatternAttr.": 0.995, "PatternNet": 0.99999, "LRP a1b0": 0.9999,
        "LRP a2b1": 0.992, "DeepLIFT Abla.": 0.9995, "LRP a5b4": 0.95,
        "LRP CMP a1b0": 0.999, "LRP CMP a2b1": 0.991,
        "LRP-z": 0.8, "DeepLIFT Rev.C.": 0.7, "DeepLIFT Resc.": 0.75, "Gradient": 0.8}


def evidence(network="vgg16", trained=True, **changes):
    csc = pd.Series({**GOOD, **changes}, dtype=float)
    return Evidence(network=network, trained=trained, layer="conv1", csc_conv=csc,
                    csc_input=csc, baseline_conv=0.1)


def own(rows, key):
    (row,) = [r for r in rows if r.key == key and not r.beyond]
    return row


def test_registry_has_one_spec_per_claim_with_scope_and_evaluator():
    keys = [spec.key for spec in CLAIMS]
    assert len(keys) == len(set(keys))
    assert {"converge", "free", "a5b4", "cmp", "a1b0_small", "random_logit", "sanity",
            "class"} <= set(keys)
    for spec in CLAIMS:
        assert spec.networks and callable(spec.evaluate) and spec.text.endswith(".")
    by_key = {spec.key: spec for spec in CLAIMS}
    # stated on VGG-16 and ResNet-50 only; ReLU-backward methods and a5b4 outside the set
    assert by_key["converge"].networks == ("vgg16", "resnet50")
    for method in ("GuidedBP", "Deconv", "RectGrad", "LRP a5b4", "LRP-z", "DeepLIFT Resc."):
        assert method not in by_key["converge"].methods_on("vgg16")
    assert "DeepLIFT Abla." not in by_key["converge"].methods_on("resnet50")
    assert by_key["a1b0_small"].networks == ("cifar-net",)
    assert by_key["a1b0_small"].methods == ("LRP a1b0",)
    assert by_key["a5b4"].networks == ("vgg16",)


def test_each_verdict_on_vgg16():
    rows = judge_all(evidence())
    found = verdicts(rows)
    assert found["converge"] == HOLDS and found["free"] == HOLDS and found["cmp"] == HOLDS
    assert found["a5b4"] == HOLDS  # 0.95 below the converging methods' minimum 0.992
    assert set(found.values()) <= set(VERDICTS)
    failing = verdicts(judge_all(evidence(**{"LRP a2b1": 0.9, "Gradient": 0.995})))
    assert failing["converge"] == FAILS and failing["free"] == FAILS
    assert verdicts(judge_all(evidence(**{"LRP a5b4": 0.9995})))["a5b4"] == FAILS
    # nothing of the SSIM / class tables measured: not testable, with the reason
    assert own(rows, "random_logit").verdict == UNTESTABLE
    assert own(rows, "class").reason == "none of the claim's methods was measured in this run"


def test_random_weights_vgg16_is_not_testable_and_architecture_level():
    rows = judge_all(evidence(trained=False))
    for key in ("converge", "free", "a5b4", "cmp"):
        row = own(rows, key)
        assert row.verdict == UNTESTABLE and row.reason.startswith("needs ImageNet weights")
        assert row.evidence.startswith("architecture-level (random weights): ")
    assert own(rows, "converge").verdict_text == (
        "not testable here: needs ImageNet weights (random weights here: the measurement is "
        "architecture-level)")


def test_small_network_scores_only_figure_5d():
    ev = evidence("cifar-net", **{"LRP a2b1": 0.5})
    ev.csc_input = pd.Series({"LRP a1b0": 1 - 2e-6})
    rows = judge_all(ev)
    scored = {r.key: r.verdict for r in rows if not r.beyond and r.verdict != UNTESTABLE}
    assert scored == {"a1b0_small": FAILS}
    assert own(rows, "a1b0_small").evidence == "1 - median CSC at the input = 2.00e-06"
    converge = own(rows, "converge")
    assert converge.reason == ("the paper states this for VGG-16 and ResNet-50, not for the "
                               "small network")
    beyond = [r for r in rows if r.key == "converge" and r.beyond]
    assert beyond[0].outcome == DIFFERS and "LRP a2b1" in beyond[0].evidence


@pytest.mark.parametrize("value", [0.0, 0.5, 0.9999])
def test_beyond_the_paper_rows_never_flip_a_verdict(value):
    """GuidedBP, Deconv, RectGrad, LRP a5b4 and (ResNet-50) DeepLIFT Abla. at
    any CSC: the converging claim's verdict stays the same."""
    base = {net: verdicts(judge_all(evidence(net)))["converge"] for net in ("vgg16", "resnet50")}
    for net in ("vgg16", "resnet50"):
        changes = {"GuidedBP": value, "Deconv": value, "RectGrad": value, "LRP a5b4": value}
        if net == "resnet50":
            changes["DeepLIFT Abla."] = value
        rows = judge_all(evidence(net, **changes))
        assert verdicts(rows)["converge"] == base[net] == HOLDS
        beyond = [r for r in rows if r.key == "converge" and r.beyond]
        assert len(beyond) == 1 and beyond[0].verdict == ""
        assert beyond[0].outcome == (AGREES if value >= 0.99 else DIFFERS)
        assert ("DeepLIFT Abla." in beyond[0].scope.split(":")[0]) == (net == "resnet50")


def test_no_measurement_out_of_scope_gives_no_row():
    spec = ClaimSpec("x", "A claim.", ("vgg16",), all_converge, methods=("DTD",))
    assert judge(spec, Evidence(network="cifar-net", trained=True)) == []
    (row,) = judge(spec, Evidence(network="vgg16", trained=True))
    assert row.verdict == UNTESTABLE and row.evidence == "n/a"
    ev = Evidence(network="vgg16", trained=True, csc_conv=pd.Series({"DTD": np.nan}))
    assert judge(spec, ev)[0].verdict == UNTESTABLE
