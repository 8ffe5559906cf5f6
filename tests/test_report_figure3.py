"""The report's Figure 3 claim: scored on VGG-16 with trained weights and
ImageNet patterns only, with the reason when it is not scored."""
import numpy as np
import pandas as pd

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
    pd.concat(tables, ignore_index=True).to_csv(tmp_path / "pattern_spectra.csv", index=False)
    return pattern_claim(tmp_path)


def test_figure3_claim_is_not_scored_on_the_cifar_net(tmp_path):
    claim, measured, holds = _claim(tmp_path, _spectra("cifar-net", "trained on builtin",
                                                       "builtin", [8.0, 9.0, 2.0]))
    assert "VGG-16" in claim
    assert holds.startswith("not scored") and "VGG-16" in holds
    assert "2 of 3 layers" in measured and "A\u2299W ratio > W's in 3 of 3" in measured


def test_figure3_claim_on_random_vgg16_needs_trained_weights(tmp_path):
    _, measured, holds = _claim(tmp_path, _spectra("vgg16", "random", "photos", [8.0] * 4))
    assert holds == "not scored: architecture-level, needs trained weights"
    assert "vgg16 (random weights)" in measured


def test_figure3_claim_is_scored_on_trained_vgg16_with_imagenet_patterns(tmp_path):
    assert _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet",
                                     [8.0] * 15 + [3.0]))[2] == "yes"
    assert _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet", [3.0] * 4))[2] == "no"
    holds = _claim(tmp_path, _spectra("vgg16", "imagenet", "photos", [8.0] * 4))[2]
    assert holds.startswith("not scored") and "ImageNet images" in holds
    both = _claim(tmp_path, _spectra("vgg16", "imagenet", "imagenet", [8.0] * 4),
                  _spectra("cifar-net", "trained on builtin", "builtin", [8.0]))[2]
    assert both.startswith("cifar-net: not scored") and both.endswith("vgg16: yes")


def test_old_pattern_tables_are_not_scored(tmp_path):
    pd.DataFrame({"kind": ["layer"], "matrix": ["A"], "ratio": [np.inf],
                  "network": ["vgg16"]}).to_csv(tmp_path / "pattern_spectra.csv", index=False)
    assert pattern_claim(tmp_path) is None


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
    claim, measured, holds = pattern_claim(tmp_path)
    assert holds.startswith("not scored") and "cifar-net (random weights)" in measured
