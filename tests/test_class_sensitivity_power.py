"""The sign-agnostic class-sensitivity score (``abs_mask_gap``): defined for
maps without positive relevance, and a test with known answers: a linear
model whose class logits read disjoint object masks must show a gap whose
bootstrap interval (the report's) excludes 0; classes that are scaled or
negated copies of each other must show a gap of 0."""
import numpy as np
import pytest
from tensorflow import keras
from tensorflow.keras import layers as klayers

from csc_analyzers.experiments.class_sensitivity import (abs_share, class_sensitivity_scores,
                                                         positive_share, run_class_sensitivity)
from csc_analyzers.experiments.common import ModelNetwork
from csc_analyzers.registry import select_methods
from csc_analyzers.report import interval, per_image

SIZE = 8


def test_abs_share_defined_without_positive_relevance():
    h = -np.arange(1.0, 17.0).reshape(4, 4)  # every value negative
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True
    assert np.isnan(positive_share(h, mask))
    expected = np.abs(h[:, :2]).sum() / np.abs(h).sum()
    assert abs_share(h, mask) == pytest.approx(expected)
    scores = class_sensitivity_scores(h, -h[::-1], mask)
    assert np.isnan(scores["mask_gap"])
    flipped = np.abs(h[::-1][:, :2]).sum() / np.abs(h).sum()
    assert scores["abs_mask_gap"] == pytest.approx(expected - flipped)
    assert np.isfinite(scores["abs_mask_gap"])


@pytest.mark.parametrize("bad", ["zero", "nan", "inf"])
def test_abs_share_undefined_for_zero_or_nonfinite_maps(bad):
    h = np.zeros((4, 4))
    if bad != "zero":
        h[1, 1] = np.nan if bad == "nan" else np.inf
    assert np.isnan(abs_share(h, np.ones((4, 4), bool)))


def test_abs_share_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        abs_share(np.ones((4, 4)), np.ones((4, 5), bool))


def _known_answer_model(rng):
    """Linear logits on 8 x 8 x 3 images. Class 0 reads the left half (mask
    A) with weights of random sign plus a weak leak from everywhere, class 1
    the right half (mask B) the same way; class 2 is 2 x class 0, class 3 is
    -class 0 (same evidence, other scale or sign)."""
    left = np.zeros((SIZE, SIZE, 3))
    left[:, :SIZE // 2] = 1.0
    right = 1.0 - left

    def reads(region):
        return (rng.normal(size=region.shape) * region
                + 0.1 * rng.normal(size=region.shape)).ravel()

    w0, w1 = reads(left), reads(right)
    kernel = np.stack([w0, w1, 2 * w0, -w0], axis=1).astype("float32")
    inp = keras.Input((SIZE, SIZE, 3))
    out = klayers.Dense(4, use_bias=False, name="logits")(klayers.Flatten()(inp))
    model = keras.Model(inp, out, name="known_answer")
    model.get_layer("logits").set_weights([kernel])
    return model


@pytest.fixture(scope="module")
def known_answer_run(tmp_path_factory):
    rng = np.random.default_rng(21)
    model = _known_answer_model(rng)
    network = ModelNetwork("known", model, input_range=(-3.0, 3.0))
    n = 24
    images = rng.normal(size=(n, SIZE, SIZE, 3)).astype("float32")
    masks = np.zeros((n, 2, SIZE, SIZE), bool)
    masks[:, 0, :, :SIZE // 2] = True
    masks[:, 1, :, SIZE // 2:] = True
    pairs = {"sensitive": [0, 1], "scaled": [0, 2], "negated": [0, 3]}
    specs = select_methods("Gradient,LRP-z")
    tables = {}
    for case, pair in pairs.items():
        out = tmp_path_factory.mktemp(case)
        store = run_class_sensitivity(network, images, masks, np.tile(pair, (n, 1)),
                                      list(range(n)), specs, out)
        store.consolidate()
        tables[case] = store.table()
    return tables


@pytest.mark.parametrize("method", ["Gradient", "LRP-z"])
def test_class_sensitive_model_gap_interval_excludes_zero(known_answer_run, method):
    gaps = per_image(known_answer_run["sensitive"], "known", "abs_mask_gap")[method]
    assert len(gaps) == 24 and np.isfinite(gaps).all()
    found = interval(gaps, seed=0)
    assert found.n == 24 and found.low > 0.5  # the interval excludes 0 by far


@pytest.mark.parametrize("case", ["scaled", "negated"])
@pytest.mark.parametrize("method", ["Gradient", "LRP-z"])
def test_class_insensitive_construction_gap_is_zero(known_answer_run, case, method):
    gaps = per_image(known_answer_run[case], "known", "abs_mask_gap")[method]
    assert len(gaps) == 24
    np.testing.assert_allclose(gaps, 0.0, atol=1e-6)
    found = interval(gaps, seed=0)
    assert found.low <= 1e-6 and found.high >= -1e-6


def test_positive_share_gap_misreads_a_negated_class(known_answer_run):
    """With class 3 = -class 0 the positive-share gap of LRP-z is far from 0
    (the positive relevance of one map is the negative of the other), while
    the abs gap is 0: the reason for the sign-agnostic score."""
    table = known_answer_run["negated"]
    positive = per_image(table, "known", "mask_gap")["LRP-z"]
    absolute = per_image(table, "known", "abs_mask_gap")["LRP-z"]
    assert np.nanmax(np.abs(positive)) > 0.05
    np.testing.assert_allclose(absolute, 0.0, atol=1e-6)
