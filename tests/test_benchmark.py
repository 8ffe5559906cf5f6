"""scripts/benchmark.py in its tiny mode: every column of the CSV is filled
where it applies, and the ratios are the quotients of the times."""
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csc_analyzers.registry import ALL_METHODS, select_methods

ROOT = Path(__file__).resolve().parents[1]


def check_pattern_row(row):
    """The pattern-statistics row: times positive, the ratio their quotient."""
    assert row["network"] == "cifar-net" and row["batch"] == 64
    assert row["median_s"] > 0 and row["forward_s"] > 0 and row["build_s"] > 0
    assert np.isclose(row["ratio_forward"], row["median_s"] / row["forward_s"], rtol=1e-3)


@pytest.mark.slow
def test_tiny_benchmark_writes_every_column(tmp_path):
    out = tmp_path / "bench.csv"
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))
    assert script["main"](["--tiny", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    pattern_row = table["method"] == "pattern statistics (64 images)"
    assert pattern_row.sum() == 1
    check_pattern_row(table[pattern_row].iloc[0])
    table = table[~pattern_row]
    specs = {spec.name: spec for spec in ALL_METHODS}
    expected = [spec.name for spec in select_methods(script["TINY_METHODS"])]
    assert list(table["method"]) == expected
    always = ["network", "batch", "method", "analyzer", "build_s", "setup_s", "median_s",
              "forward_s",
              "ratio_forward", "innvestigate_twin", "sanity_level_s", "sanity_ratio",
              "csc_peak_rss_mb"]
    assert table[always].notna().all().all(), table[always].isna().sum()
    twin = table["innvestigate_twin"] != "none"
    assert 0 < twin.sum() < len(table)
    assert table.loc[twin, ["innvestigate_s", "ratio_innvestigate"]].notna().all().all()
    assert table.loc[~twin, ["innvestigate_s", "ratio_innvestigate"]].isna().all().all()
    has_csc = table["method"].map(lambda m: specs[m].runs_on("cifar-net", "csc"))
    assert table.loc[has_csc, ["csc_s", "csc_ratio"]].notna().all().all()
    assert (table[["build_s", "median_s", "forward_s", "csc_peak_rss_mb"]] > 0).all().all()
    np.testing.assert_allclose(table["ratio_forward"], table["median_s"] / table["forward_s"],
                               rtol=1e-3)
    np.testing.assert_allclose(table["setup_s"], table["build_s"] - table["median_s"],
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(table.loc[twin, "ratio_innvestigate"],
                               table.loc[twin, "median_s"] / table.loc[twin, "innvestigate_s"],
                               rtol=1e-3)


@pytest.mark.slow
def test_time_methods_checks_and_writes_every_method(tmp_path):
    out = tmp_path / "times.csv"
    script = runpy.run_path(str(ROOT / "scripts" / "time_methods.py"))
    names = "Gradient,PatternNet,LRP a1b0"
    assert script["main"](["--network", "cifar-net", "--batch", "2", "--methods", names,
                           "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["method"]) == names.split(",")
    assert table.notna().all().all()
    assert table["finite"].all() and table["nonzero"].all()
    assert (table[["build_s", "median_batch_s", "s_per_image"]] > 0).all().all()
    np.testing.assert_allclose(table["s_per_image"], table["median_batch_s"] / 2, rtol=1e-3)


def test_time_methods_rejects_unknown_methods():
    script = runpy.run_path(str(ROOT / "scripts" / "time_methods.py"))
    with pytest.raises(SystemExit) as error:
        script["main"](["--network", "cifar-net", "--methods", "LRP a9b8"])
    assert error.value.code == 2


def test_benchmark_rejects_unknown_methods_before_timing(capsys):
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))
    with pytest.raises(SystemExit) as error:
        script["main"](["--tiny", "--methods", "LRP a9b8"])
    assert error.value.code == 2
    assert "LRP a9b8" in capsys.readouterr().err


def test_benchmark_default_sets_are_registry_names():
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))
    for network, names in script["DEFAULT_METHODS"].items():
        assert network in script["BATCH"]
        assert select_methods(names)


def test_timed_together_alternates_and_runs_long_enough():
    """The analysis, the forward pass and innvestigate's analyzer run in turn
    (same load for all), at least ``repeats`` rounds and until each has run
    ``min_seconds``."""
    timed_together = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))["timed_together"]
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b"), lambda: calls.append("c")]
    assert len(timed_together(fns, repeats=3, min_seconds=0.0)) == 3
    assert calls == ["a", "b", "c"] * 4  # warm-up round, then 3 timed rounds
    calls.clear()
    timed_together(fns[:2], repeats=3, min_seconds=10.0, max_repeats=7)
    assert calls == ["a", "b"] * 8  # too fast to reach 10 s: stops at max_repeats


@pytest.mark.slow
def test_quick_protocol_plumbing(tmp_path):
    """--quick on the CIFAR net with two methods: the side-by-side calls get the
    quick repeats and minimum time, every method row and the pattern-statistics
    row are written, and the memory probe is left out (not a timed test)."""
    out = tmp_path / "quick.csv"
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))
    calls = []
    timed_together = script["timed_together"]

    def recording(fns, repeats, min_seconds=None, **kwargs):
        calls.append((len(fns), repeats, min_seconds))
        return timed_together(fns, repeats, min_seconds, **kwargs)

    main = script["main"]
    main.__globals__["timed_together"] = recording
    main.__globals__["memory_probe"] = lambda *args: pytest.fail("--quick ran the memory probe")
    assert main(["--quick", "--networks", "cifar-net", "--methods", "Gradient,LRP-z",
                 "--pattern-images", "64", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["method"]) == ["Gradient", "LRP-z", "pattern statistics (64 images)"]
    check_pattern_row(table.iloc[2])
    methods = table.iloc[:2]
    assert methods["csc_peak_rss_mb"].isna().all()
    assert methods[["build_s", "median_s", "forward_s", "innvestigate_s", "csc_s",
                    "sanity_level_s"]].notna().all().all()
    # per method: (analysis, forward, innvestigate) in turn, then (one image, sanity, CSC)
    quick = (script["QUICK_REPEATS"], script["QUICK_MIN_SECONDS"])
    assert calls == [(3, *quick), (3, *quick)] * 2
    assert set(script["QUICK_METHODS"]) == set(script["BATCH"])
    for names in script["QUICK_METHODS"].values():
        assert select_methods(names)


def test_quick_and_tiny_exclude_each_other():
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))
    with pytest.raises(SystemExit) as error:
        script["main"](["--quick", "--tiny"])
    assert error.value.code == 2
