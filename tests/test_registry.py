"""The method registry is consistent and matches the paper's list."""
import pytest

from csc_analyzers import registry
from csc_analyzers.registry import PAPER_METHODS, EXTRA_METHODS, get_method

PAPER_NAMES = ["GuidedBP", "Deconv", "RectGrad", "Gradient", "SmoothGrad", "DTD",
               "PatternAttr.", "PatternNet", "LRP a1b0", "LRP a2b1", "LRP a5b4", "LRP-z",
               "LRP CMP a1b0", "LRP CMP a2b1", "DeepLIFT Rev.C.", "DeepLIFT Resc.",
               "DeepLIFT Abla."]


def test_paper_methods_are_the_papers_17_in_order():
    assert [m.name for m in PAPER_METHODS] == PAPER_NAMES


def test_names_unique_and_styles_distinct():
    specs = PAPER_METHODS + EXTRA_METHODS
    assert len({m.name for m in specs}) == len(specs)
    assert len({(m.color, m.marker) for m in specs}) == len(specs)


def test_postprocessing_as_in_the_paper():
    abs_max = {"GuidedBP", "Deconv", "RectGrad", "SmoothGrad", "Gradient"}
    for spec in PAPER_METHODS:
        assert spec.postprocess == ("abs.max" if spec.name in abs_max else "sum"), spec.name
    assert get_method("RectGrad").ssim_percentile == 100
    assert get_method("RectGrad").kwargs["percentile"] == 98
    assert not get_method("SmoothGrad").runs_on("vgg16", "csc")
    assert get_method("SmoothGrad").runs_on("vgg16", "sanity")


def test_input_range_kwargs_resolve():
    dtd = get_method("DTD").analyzer_kwargs((-2.0, 3.0))
    assert dtd == {"low": -2.0, "high": 3.0, "residual_rule": "analyzer"}
    smooth = get_method("SmoothGrad").analyzer_kwargs((0.0, 255.0))
    assert smooth["noise_scale"] == pytest.approx(0.15 * 255.0)
    assert smooth["augment_by_n"] == 50


def test_unknown_method_lists_names():
    with pytest.raises(KeyError, match="LRP a1b0"):
        get_method("LRP a3b2")


def test_select_all_and_list():
    assert [m.name for m in registry.select_methods("all")] == PAPER_NAMES
    assert [m.name for m in registry.select_methods("LRP-z,Gradient")] == ["LRP-z", "Gradient"]
