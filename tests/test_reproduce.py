"""scripts/reproduce.py end to end on a tiny configuration."""
import importlib.util
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_reproduction_writes_tables_figures_and_a_report_that_matches(tmp_path):
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--weights", "random", "--methods", "LRP a1b0,Gradient", "--n-images", "2",
            "--n-composites", "2", "--n-vectors", "2", "--out", str(out),
            "--figures", str(figures), "--no-progress"]
    assert _script("reproduce").main(args) == 0
    for table in ("csc.csv", "csc_histograms.csv", "sanity_cascading.csv", "random_logit.csv",
                  "class_sensitivity.csv", "theorem1.csv", "verdicts.csv"):
        assert (out / table).stat().st_size > 0, table
    pngs = {p.name for p in figures.glob("*.png")}
    assert any(name.startswith("fig5_csc") for name in pngs)
    assert any(name.startswith("fig4a_random_logit") for name in pngs)
    assert any(name.startswith("fig4b_sanity") for name in pngs)
    assert "theorem1.png" in pngs
    report = (out / "REPORT.md").read_text()
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
    median = logit[(logit.method == "Gradient") & (logit.metric == "ssim")].value.median()
    line = next(l for l in report.splitlines() if l.startswith("| Gradient |"))
    assert re.search(rf"{median:.3f} \[", line)
    # a rerun finds every unit done and writes the same tables
    before = (out / "random_logit.csv").read_bytes()
    assert _script("reproduce").main(args) == 0
    assert (out / "random_logit.csv").read_bytes() == before
