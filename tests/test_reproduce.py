"""scripts/reproduce.py end to end on a tiny configuration: tables, figures
and a report whose numbers equal the tables; a rerun that finds every unit
done; two shards merged equal one run; a run killed with SIGKILL and started
again gives the tables of an uninterrupted run."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from script_loader import REPRODUCE_TABLES, load_script

ROOT = Path(__file__).resolve().parents[1]
TABLES = REPRODUCE_TABLES
_script = load_script


def tiny_args(base: Path, *extra):
    return ["--weights", "random", "--methods", "LRP a1b0,Gradient", "--n-images", "2",
            "--n-composites", "2", "--n-vectors", "2", "--out", str(base / "results"),
            "--figures", str(base / "figures"), "--no-progress", *extra]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """One uninterrupted tiny run; returns its base directory."""
    base = tmp_path_factory.mktemp("whole")
    assert _script("reproduce").main(tiny_args(base)) == 0
    return base


def assert_same_tables(base: Path, reference: Path):
    for table in TABLES:
        got = (base / "results" / table).read_bytes()
        assert got == (reference / "results" / table).read_bytes(), table


@pytest.mark.slow
def test_tiny_reproduction_writes_tables_figures_and_a_report_that_matches(whole_run):
    out, figures = whole_run / "results", whole_run / "figures"
    for table in TABLES:
        assert (out / table).stat().st_size > 0, table
    pngs = {p.name for p in figures.glob("*.png")}
    assert any(name.startswith("fig5_csc") for name in pngs)
    assert any(name.startswith("fig4a_random_logit") for name in pngs)
    assert any(name.startswith("fig4b_sanity") for name in pngs)
    assert "theorem1.png" in pngs and "theorem1_vgg16.png" in pngs
    report = (out / "REPORT.md").read_text()
    assert "SSIM: the paper's recipe (metric ssim_paper)" in report
    assert "random-logit SSIM (paper)" in report
    csc = pd.read_csv(out / "csc.csv", keep_default_na=False, na_values=[""])
    verdicts = pd.read_csv(out / "verdicts.csv")
    for method in ("LRP a1b0", "Gradient"):
        row = csc[(csc.method == method) & (csc.layer == "input") & (csc.statistic == "median")
                  & (csc.injection_layer == "fc6")]
        value = float(row.value.iloc[0])
        line = next(l for l in report.splitlines() if l.startswith(f"| {method} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) == pytest.approx(value, abs=5e-7)
        assert float(verdicts.set_index("method").loc[method, "csc_input"]) == \
            pytest.approx(value)
    logit = pd.read_csv(out / "random_logit.csv")
    median = logit[(logit.method == "Gradient") & (logit.metric == "ssim_paper")].value.median()
    line = next(l for l in report.splitlines() if l.startswith("| Gradient |"))
    assert re.search(rf"{median:.3f} \[", line)
    # a rerun finds every unit done and writes the same tables
    before = {table: (out / table).read_bytes() for table in TABLES}
    assert _script("reproduce").main(tiny_args(whole_run)) == 0
    assert {table: (out / table).read_bytes() for table in TABLES} == before


@pytest.mark.slow
def test_two_shards_merged_equal_one_run(whole_run, tmp_path):
    script = _script("reproduce")
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        assert script.main(tiny_args(shard, "--shard", f"{i}/2")) == 0
        assert not (shard / "results" / "REPORT.md").exists()
    merged = tmp_path / "merged"
    assert script.main(tiny_args(merged, "--merge", *[str(s / "results") for s in shards])) == 0
    assert_same_tables(merged, whole_run)
    # the example maps (for Figure 1) come along, so the merged run has every figure
    maps = {p.relative_to(merged / "results") for p in (merged / "results" / "maps").rglob("*.npz")}
    assert maps == {p.relative_to(whole_run / "results")
                    for p in (whole_run / "results" / "maps").rglob("*.npz")}
    assert {p.name for p in (merged / "figures").glob("*.png")} == \
        {p.name for p in (whole_run / "figures").glob("*.png")}


def _unit_files(out: Path) -> int:
    return len(list(out.glob("*/units/*.csv"))) if out.exists() else 0


@pytest.mark.slow
def test_killed_reproduction_resumes_to_the_same_tables(whole_run, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "reproduce.py"), *tiny_args(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "results"
    seen = []
    for point in (1, 4):  # kill once the run has written `point` more unit files
        start = _unit_files(out)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while proc.poll() is None and time.time() < deadline:
            if _unit_files(out) >= start + point:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(_unit_files(out))
        for path in out.glob("*/units/*.csv"):  # whole units only
            assert len(pd.read_csv(path)) > 0, path
    assert not (out / "REPORT.md").exists(), f"the runs were not killed part way: {seen}"
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
    assert_same_tables(tmp_path, whole_run)
    assert (out / "REPORT.md").exists()
