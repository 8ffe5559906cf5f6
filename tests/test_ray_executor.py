"""The Ray executor on a local Ray instance with 2 CPUs: a tiny reproduction
run by Ray tasks writes the same tables (byte for byte), figures and report
as the serial run; a task whose worker dies part way (after its first unit)
is retried by Ray, resumes from the unit it wrote, and the tables are still
those of the serial run. Ray is part of the test extra: these tests run
wherever the test dependencies are installed."""
import os
from pathlib import Path

import pytest
from script_loader import REPRODUCE_TABLES, load_script
import ray

from csc_analyzers.experiments.executors import (check_executor, package_root,
                                                 ray_task_options)
from csc_analyzers.experiments.tasks import KILL_ONCE_ENV

ROOT = Path(__file__).resolve().parents[1]
TABLES = REPRODUCE_TABLES
_script = load_script


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def tiny_args(base: Path, *extra):
    return ["--weights", "random", "--methods", "LRP a1b0,Gradient", "--n-images", "2",
            "--n-composites", "2", "--n-vectors", "2", "--out", str(base / "results"),
            "--figures", str(base / "figures"), "--no-progress", *extra]


def csc_args(out: Path, *extra):
    return ["--network", "cifar-net", "--weights", "random", "--methods", "LRP a1b0,Gradient",
            "--n-images", "2", "--n-vectors", "2", "--out", str(out), "--no-progress", *extra]


def test_task_options_ask_for_a_gpu_only_on_a_gpu_cluster():
    assert ray_task_options({"CPU": 8.0, "GPU": 2.0})["num_gpus"] == 1
    cpu = ray_task_options({"CPU": 2.0})
    assert cpu["num_gpus"] == 0 and cpu["num_cpus"] == 1
    assert cpu["max_retries"] >= 1 and cpu["retry_exceptions"] is False
    assert cpu["runtime_env"]["env_vars"]["PYTHONPATH"].split(os.pathsep)[0] == package_root()
    with pytest.raises(ValueError, match="serial, process, ray"):
        check_executor("dask")
    with pytest.raises(ValueError, match="--executor ray"):
        check_executor("serial", "auto")


@pytest.mark.slow
def test_ray_reproduction_writes_the_serial_tables_figures_and_report(local_ray, tmp_path):
    script = _script("reproduce")
    assert script.main(tiny_args(tmp_path / "serial")) == 0
    assert script.main(tiny_args(tmp_path / "ray", "--executor", "ray")) == 0
    for table in TABLES:
        assert (tmp_path / "ray" / "results" / table).read_bytes() == \
            (tmp_path / "serial" / "results" / table).read_bytes(), table
    assert (tmp_path / "ray" / "results" / "REPORT.md").stat().st_size > 0
    figures = {p.name for p in (tmp_path / "serial" / "figures").glob("*.png")}
    assert figures and {p.name for p in (tmp_path / "ray" / "figures").glob("*.png")} == figures


@pytest.mark.slow
def test_a_task_whose_worker_dies_is_retried_and_the_tables_are_unchanged(
        local_ray, tmp_path, monkeypatch):
    script = _script("run_csc")
    assert script.main(csc_args(tmp_path / "serial")) == 0
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))
    assert script.main(csc_args(tmp_path / "ray", "--executor", "ray")) == 0
    # a Ray worker (not this process) ended itself after writing its first unit
    assert marker.read_text().startswith("killed pid ")
    assert int(marker.read_text().split()[-1]) != os.getpid()
    for table in ("csc.csv", "csc_histograms.csv"):
        assert (tmp_path / "ray" / table).read_bytes() == \
            (tmp_path / "serial" / table).read_bytes(), table
    units = sorted(p.name for p in (tmp_path / "ray" / "csc" / "units").glob("*.csv"))
    assert units == sorted(p.name for p in (tmp_path / "serial" / "csc" / "units").glob("*.csv"))
    assert len(units) == 4
