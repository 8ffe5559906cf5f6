"""The report's Figure 3 claim: judged on VGG-16 with trained weights and
ImageNet patterns only, "not testable here" with the reason otherwise; other
networks' spectra are beyond-the-paper rows."""
import numpy as np
import pandas as pd

from csc_analyzers.claims import FAILS, HOLDS, UNTESTABLE
from csc_analyzers.report import pattern_claim


def _spectra(network, weights, data, ratios):
    rows = []
    for index, ratio in enumerate(ratios):
        for panel in ("a", "b"):
            for kind, value in (("A", ratio), ("W", 1.5), ("A*W", 2.0)):
                rows.append({"panel": panel, "layer": f"l{index}", "next_layer": "",
                             "layer_index": index, "matrix": kind, "ratio": value,
                             "network": network, "weights": weights, "pattern_data": data})
    return pd.DataFrame(rows)


def _claim(tmp_path, *tables):
    """The claim's own rows and its beyond-the-paper rows."""
    pd.concat(tables, ignore_index=True).to_csv(tmp_path / "pattern_spectra.csv", index=False)
    rows = pattern_claim(tmp_path)
    return [r for r in rows if not r.beyond], [r for r in rows if r.beyond]


def test_figure3_claim_is_not_scored_on_the_cifar_net(tmp_path):
    (own,), (beyond,) = _claim(tmp_path, _spectra("cifar-net", "trained on builtin",
                                                  "builtin", [8.0, 9.0, 2.0]))
    assert "VGG-16" in own.claim and "VGG-16" in own.scope
    assert own.verdict == UNTESTABLE and "VGG-16" in own.reason
    assert "2 of 3 layers" in beyond.evidence and "A\u2299W ratio > W's in 3 of 3" in \
        beyond.evidence
    assert beyond.verdict == "" and beyond.outcome == "unlike the paper's statement"


def test_figure3_claim_on_random_vgg16_needs_imagenet_weights(tmp_path):
    (own,), beyond = _claim(tmp_path, _spectra("vgg16", "random", "photos", [8.0] * 4))
    assert own.verdict == UNTESTABLE and not beyond
    assert own.reason == ("needs ImageNet weights (random weights here: the measurement is "
                          "architecture-level)")
    assert "vgg16 (random weights)" in own.evidence


def test_figure3_claim_is_scored_on_trained_vgg16_with_imagenet_patterns(tmp_path):
    verdict = _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet",
                                        [8.0] * 15 + [3.0]))[0][0].verdict
    assert verdict == HOLDS
    assert _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet",
                                     [3.0] * 4))[0][0].verdict == FAILS
    (own,), _ = _claim(tmp_path, _spectra("vgg16", "imagenet", "photos", [8.0] * 4))
    assert own.verdict == UNTESTABLE and "ImageNet images" in own.reason
    own, beyond = _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet", [8.0] * 4),
                         _spectra("cifar-net", "trained on builtin", "builtin", [1.0]))
    verdicts = {r.network: r.verdict for r in own}
    assert verdicts == {"cifar-net": UNTESTABLE, "vgg16": HOLDS}
    # the cifar-net's failing spectrum (beyond the paper) does not change VGG-16's verdict
    assert [r.network for r in beyond] == ["cifar-net"]


def test_old_pattern_tables_are_not_scored(tmp_path):
    pd.DataFrame({"kind": ["layer"], "matrix": ["A"], "ratio": [np.inf],
                  "network": ["vgg16"]}).to_csv(tmp_path / "pattern_spectra.csv", index=False)
    assert pattern_claim(tmp_path) == []


def test_reproduction_table_figure_and_claim_of_the_cifar_net(tmp_path):
    from csc_analyzers.models import load_network
    from csc_analyzers.pattern import estimate_patterns
    from csc_analyzers.plotting.figures import make_all_figures
    from csc_analyzers.reproduce import pattern_spectra
    network = load_network("cifar-net", weights=None, seed=0)
    rng = np.random.default_rng(0)
    patterns = estimate_patterns(network.model, [rng.normal(size=(4, 32, 32, 3))
                                                 .astype("float32")], "relu")
    table = pattern_spectra(network, patterns, data="builtin")
    assert set(table.panel) == {"a", "b", "c"}
    assert set(table.weights) == {"random"} and set(table.pattern_data) == {"builtin"}
    table.to_csv(tmp_path / "pattern_spectra.csv", index=False)
    written = make_all_figures(tmp_path, tmp_path / "figures")
    assert [p.name for p in written] == ["fig3_pattern_spectra_cifar-net.png"]
    own, beyond = [r for r in pattern_claim(tmp_path) if not r.beyond], \
        [r for r in pattern_claim(tmp_path) if r.beyond]
    assert own[0].verdict == UNTESTABLE and "cifar-net (random weights)" in beyond[0].evidence
