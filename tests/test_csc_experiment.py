"""The CSC experiment on a small network with the Network contract's fields:
tidy tables, skipped methods, determinism and resuming without duplicates."""
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from csc_analyzers.experiments.csc import (TABLE_COLUMNS, first_conv_layer, make_plan,
                                           run_csc)
from csc_analyzers.experiments.store import ResultStore, Shard
from csc_analyzers.registry import get_method
from tensorflow import keras

METHODS = [get_method(n) for n in ("LRP a1b0", "Gradient")]


@dataclass
class TinyNetwork:
    """The fields of the Network contract that the CSC experiment reads."""

    name: str
    model: object
    aliases: dict
    layers: tuple
    csc_layers: tuple
    input_range: tuple = (-3.0, 3.0)


def tiny_network(seed=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.MaxPooling2D(name="p")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(16, activation="relu", name="d1")(h)
    out = keras.layers.Dense(4, activation="softmax", name="d2")(h)
    model = keras.Model(inp, out, name="tiny")
    model.set_weights([rng.normal(0, 0.4, w.shape).astype("float32")
                       for w in model.get_weights()])
    aliases = {"conv1": "c1", "conv2": "c2", "pool": "p", "fc1": "d1", "fc2": "d2"}
    model._csc_layer_aliases = dict(aliases)
    return TinyNetwork("tiny", model, aliases, ("input", "conv1", "conv2", "pool", "fc1",
                                                 "fc2"), ("fc2", "fc1", "conv2"))


@pytest.fixture
def network():
    return tiny_network()


@pytest.fixture
def tiny_images():
    return np.random.default_rng(5).normal(size=(3, 8, 8, 3)).astype("float32")


def test_plan_checks_layers_and_skips_methods(network):
    plan = make_plan(network, [get_method("Gradient"), get_method("PatternNet"),
                               get_method("SmoothGrad")], table={
        "gradient": type("A", (), {"propagate": None}),
        "pattern.net": type("B", (), {"propagate": None})})
    assert [s.name for s in plan.methods] == ["Gradient"]
    reasons = dict(plan.skipped)
    assert "patterns" in reasons["PatternNet"] and "CSC" in reasons["SmoothGrad"]
    assert plan.lower_layers["fc1"] == ("input", "conv1", "conv2", "pool")
    assert first_conv_layer(network) == "conv1"
    broken = TinyNetwork("tiny", network.model, network.aliases, ("input", "nope"), ("nope",))
    with pytest.raises(KeyError, match="nope"):
        make_plan(broken, METHODS)


def test_tables_and_resume_without_duplicates(network, tiny_images, tmp_path):
    first = []
    run_csc(network, METHODS, tiny_images, out_dir=tmp_path / "a", seed=3, n_vectors=4,
            unit_limit=2, on_unit=first.append)
    assert len(first) == 2
    second = []
    result = run_csc(network, METHODS, tiny_images, out_dir=tmp_path / "a", seed=3,
                     n_vectors=4, on_unit=second.append)
    assert len(second) == 2 * 3 - 2 and not set(first) & set(second)
    store = ResultStore(tmp_path / "a", "csc")
    raw = store.table()
    keys = ["method", "image", "injection_layer", "layer", "statistic", "bin"]
    assert not raw.duplicated(keys).any()
    assert len(list(store.units_dir.glob("*.csv"))) == 6

    fresh = run_csc(network, METHODS, tiny_images, out_dir=tmp_path / "b", seed=3,
                    n_vectors=4)
    pd.testing.assert_frame_equal(result["table"], fresh["table"])

    table = pd.read_csv(tmp_path / "a" / "csc.csv")
    assert tuple(table.columns) == TABLE_COLUMNS
    medians = table[table["statistic"] == "median"]
    methods = medians[medians["method"] != "random baseline"]
    # fc2 -> 5 lower layers, fc1 -> 4, conv2 -> 2; per method
    assert len(methods) == 2 * (5 + 4 + 2)
    assert (methods["n_images"] == 3).all() and (methods["n_vectors"] == 4).all()
    baseline = medians[medians["method"] == "random baseline"]
    assert list(baseline["layer"]) == list(network.layers)
    top = methods[(methods["injection_layer"] == "fc2") & (methods["layer"] == "conv1")]
    lrp, grad = (top.set_index("method").loc[m, "value"] for m in ("LRP a1b0", "Gradient"))
    assert lrp > grad
    stats = table[(table["method"] == "LRP a1b0") & (table["injection_layer"] == "fc2")
                  & (table["layer"] == "input")].set_index("statistic")["value"]
    ordered = [stats[f"p{q}"] for q in (0, 1, 5, 10, 20, 50, 80, 95, 99, 100)]
    assert ordered == sorted(ordered)
    assert "sv_ratio_median" in stats  # fc2 has 4 units: exact check done

    hist = pd.read_csv(tmp_path / "a" / "csc_histograms.csv")
    assert set(hist["layer"]) == {"conv1", "input"}
    counts = hist.groupby(["method", "injection_layer", "layer"])["count"].sum()
    # 3 images x 6 pairs x 64 locations, minus undefined cosines
    assert (counts <= 3 * 6 * 64).all() and (counts > 0).all()


def test_shards_give_the_whole_table(network, tiny_images, tmp_path):
    methods = METHODS[:1]
    halves = [run_csc(network, methods, tiny_images, out_dir=tmp_path / "s", seed=1,
                      n_vectors=3, shard=Shard(i, 2), exact_max_dim=0) for i in range(2)]
    whole = run_csc(network, methods, tiny_images, out_dir=tmp_path / "w", seed=1,
                    n_vectors=3, exact_max_dim=0)
    pd.testing.assert_frame_equal(halves[-1]["table"], whole["table"])
    with pytest.raises(ValueError, match="another --out"):
        run_csc(network, methods, tiny_images, out_dir=tmp_path / "w", seed=2, n_vectors=3)


def test_values_near_one_survive_the_csv_files(tmp_path):
    from csc_analyzers.experiments.csc import exact_values
    store = ResultStore(tmp_path, "csc")
    store.write(("k",), exact_values([{"statistic": "max", "value": 1 - 3e-13}]))
    assert 1 - store.read(("k",))["value"].iloc[0] == pytest.approx(3e-13, rel=1e-3)


def test_figures_from_a_results_directory(network, tiny_images, tmp_path):
    import importlib.util
    from pathlib import Path
    from csc_analyzers.convergence import simulate_theorem1
    run_csc(network, METHODS, tiny_images[:1], out_dir=tmp_path, n_vectors=3)
    simulate_theorem1(rng=np.random.default_rng(0), n_factors=3, n_trials=1,
                      distributions=["|gaussian|"], shapes=["square 64"]).to_csv(
        tmp_path / "theorem1.csv", index=False)
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_figures.py"
    spec = importlib.util.spec_from_file_location("make_figures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--results", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    written = sorted(p.name for p in (tmp_path / "fig").glob("*.png"))
    assert written == ["fig5_csc_histogram_tiny.png", "fig5_csc_tiny_fc2.png",
                       "fig6c_cmp_tiny.png", "theorem1.png"]


def test_exact_check_only_for_rules_linear_in_v(network, tiny_images):
    from csc_analyzers.experiments.csc import (LINEARITY_TOLERANCE, create_method_analyzer,
                                               unit_rows)
    plan = make_plan(network, METHODS)
    for name, linear in (("GuidedBP", False), ("LRP a1b0", True)):
        analyzer = create_method_analyzer(get_method(name), network)
        rows = pd.DataFrame(unit_rows(analyzer, tiny_images[:1], network, plan, image_id=0,
                                      method=name, n_vectors=3, seed=0, exact_max_dim=4))
        errors = rows.loc[rows["statistic"] == "linearity_error", "value"]
        assert len(errors) == 5  # only fc2 (4 units) is small enough: its 5 lower layers
        ratios = rows[rows["statistic"] == "sv_ratio_median"]
        if linear:
            assert errors.max() < 1e-4 and len(ratios) == 5
        else:
            assert errors.max() > LINEARITY_TOLERANCE and len(ratios) < 5
