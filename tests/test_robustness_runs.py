"""Long runs: the user's model is never changed (also when a run raises),
seeded runs write byte-identical tables, and runs killed with SIGKILL at
several points and run again give the tables of an uninterrupted run.

The kill-and-resume tests are also determinism tests across processes: the
resumed table is made of units written by three different processes (with
``--weights random`` each drew the network's initial weights anew) and must
equal, byte for byte, the table of one uninterrupted run in this process."""
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import small_cnn
from test_csc_experiment import tiny_network
from csc_analyzers import checks
from csc_analyzers.errors import ModelChangedError
from csc_analyzers.experiments import sanity as sanity_module
from csc_analyzers.experiments.class_sensitivity import run_class_sensitivity
from csc_analyzers.experiments.common import ModelNetwork
from csc_analyzers.experiments.csc import run_csc
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.sanity import run_sanity
from csc_analyzers.integrity import file_fingerprint, model_fingerprint, unchanged_model
from csc_analyzers.registry import select_methods

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


# --- the user's model is never changed ------------------------------------------------------

@pytest.fixture
def user_model(tmp_path):
    path = tmp_path / "user.h5"
    small_cnn(softmax=True).save(path, save_format="h5")
    return path, checks.load_user_model(path)


def test_experiments_leave_model_and_file_unchanged(user_model, tmp_path, rng):
    path, model = user_model
    network = ModelNetwork("user", model, input_range=(-3.0, 3.0))
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    specs = select_methods("Gradient,LRP a1b0,GuidedBP")
    masks = np.zeros((2, 2, 8, 8), bool)
    masks[:, 0, :4], masks[:, 1, 4:] = True, True
    before = model_fingerprint(model)
    with unchanged_model(model, path):
        store = run_sanity(network, images, [0, 1], [0, 1], specs, tmp_path / "o", seed=1)
        run_sanity(network, images, [0, 1], [0, 1], specs, tmp_path / "o", seed=1,
                   mode="independent")
        run_random_logit(network, images, [0, 1], [0, 1], specs, tmp_path / "o", seed=1)
        run_class_sensitivity(network, images, masks, np.array([[0, 1], [1, 2]]), [0, 1],
                              specs, tmp_path / "o", seed=1)
    tiny = tiny_network()
    with unchanged_model(tiny.model):
        run_csc(tiny, select_methods("Gradient,LRP a1b0"), images, out_dir=tmp_path / "c",
                n_vectors=2, exact_max_dim=4)
    assert model_fingerprint(model) == before
    assert len(store.table()) == 3 * 2 * 3 * 4  # methods x images x levels x metrics


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_sanity_raising_mid_randomisation_restores_weights(user_model, tmp_path, rng,
                                                           monkeypatch, interrupt):
    path, model = user_model
    network = ModelNetwork("user", model, input_range=(-3.0, 3.0))
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    calls = []
    real = sanity_module.explain

    def failing_explain(*args, **kwargs):  # raises while layers are randomised
        calls.append(model_fingerprint(model))
        if len(calls) == 3:
            raise interrupt("stop")
        return real(*args, **kwargs)

    monkeypatch.setattr(sanity_module, "explain", failing_explain)
    before, file_before = model_fingerprint(model), file_fingerprint(path)
    with pytest.raises(interrupt):
        with unchanged_model(model, path):
            run_sanity(network, images, [0, 1], [0, 1], select_methods("Gradient"),
                       tmp_path / "o", seed=1, chunk=1)
    assert calls[2] != before, "the failure came while the weights were randomised"
    assert model_fingerprint(model) == before and file_fingerprint(path) == file_before


def test_csc_and_random_logit_raising_mid_run_leave_weights(tmp_path, rng):
    tiny = tiny_network()
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    before = model_fingerprint(tiny.model)

    def stop(key):
        raise RuntimeError(f"stop after {key}")

    with pytest.raises(RuntimeError, match="stop after"):
        run_csc(tiny, select_methods("LRP a1b0"), images, out_dir=tmp_path, n_vectors=2,
                on_unit=stop)
    assert model_fingerprint(tiny.model) == before

    def stop_progress(n):
        raise KeyboardInterrupt

    network = ModelNetwork("tiny", tiny.model, input_range=(-3.0, 3.0))
    with pytest.raises(KeyboardInterrupt):
        run_random_logit(network, images, [0, 1], [0, 1], select_methods("GuidedBP"),
                         tmp_path, progress=stop_progress)
    assert model_fingerprint(tiny.model) == before


def test_unchanged_model_detects_a_change(rng):
    model = small_cnn()
    with pytest.raises(ModelChangedError, match="small_cnn"):
        with unchanged_model(model):
            weights = model.get_weights()
            weights[0] = weights[0] + 1e-6
            model.set_weights(weights)


def test_nonfinite_maps_flag_rows_and_the_run_goes_on(tmp_path, rng):
    model = small_cnn(softmax=True)
    weights = model.get_weights()
    weights[0][0, 0, 0, 0] = np.inf  # conv1 gives Inf/NaN at some locations
    model.set_weights(weights)
    network = ModelNetwork("broken", model, input_range=(-3.0, 3.0))
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    store = run_random_logit(network, images, [0, 1], [0, 1], select_methods("Gradient"),
                             tmp_path, seed=0)
    table = store.table()
    assert len(table) == 2 * 5  # 4 scores and random_class
    metrics = table[table["metric"] != "random_class"]
    assert metrics["nonfinite"].all()
    assert not table.loc[table["metric"] == "random_class", "nonfinite"].any()


# --- subprocess runs: determinism and kill-and-resume -----------------------------------------

def csc_command(out, n_images):
    return [str(SCRIPTS / "run_csc.py"), "--network", "cifar-net", "--weights", "random",
            "--methods", "Gradient", "--n-images", str(n_images), "--n-vectors", "2",
            "--exact-max-dim", "0", "--seed", "2", "--out", str(out)]


def run_in_process(command):
    main = runpy.run_path(command[0])["main"]
    assert main(command[1:]) == 0


def kill_at_points(command, units_dir, points, total):
    """Start ``command`` once per point and SIGKILL it: point 0 during start-up
    (before any unit), point k >= 1 once at least k unit files exist. Returns
    the number of finished unit files after each kill."""
    seen = []
    for point in points:
        proc = subprocess.Popen([sys.executable] + command, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        start = len(list(units_dir.glob("*.csv"))) if units_dir.exists() else 0
        while time.time() < deadline and proc.poll() is None:
            done = len(list(units_dir.glob("*.csv"))) if units_dir.exists() else 0
            if point == 0 and time.time() > deadline - 298:
                break
            if point > 0 and done >= start + point:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        units = sorted(units_dir.glob("*.csv")) if units_dir.exists() else []
        seen.append(len(units))
        for path in units:  # whole units only: every file parses and has rows
            assert len(pd.read_csv(path)) > 0, path
    assert seen[-1] < total, f"the runs were not killed part way: {seen}"
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("script, experiment, points, rows_per_unit", [
    ("run_sanity_checks.py", "sanity_cascading", (0, 1, 3), 3 * 4),
    ("run_random_logit.py", "random_logit", (2,), 5),
])
def test_killed_at_several_points_resumes_to_the_same_table(tmp_path, rng, script, experiment,
                                                             points, rows_per_unit):
    n_images = 6
    model = tmp_path / "tiny.h5"
    small_cnn(softmax=True).save(model, save_format="h5")
    images = tmp_path / "images.npz"
    np.savez(images, images=rng.normal(size=(n_images, 8, 8, 3)).astype("float32"),
             labels=rng.integers(0, 3, size=n_images))

    def command(out):
        extra = ["--chunk", "1"] if script == "run_sanity_checks.py" else []
        return [str(SCRIPTS / script), "--network", str(model), "--images", str(images),
                "--methods", "Gradient,LRP-z", "--n-images", str(n_images), "--seed", "3",
                "--out", str(out), "--no-progress", *extra]

    run_in_process(command(tmp_path / "whole"))
    whole = (tmp_path / "whole" / f"{experiment}.csv").read_bytes()
    killed = tmp_path / "killed"
    seen = kill_at_points(command(killed), killed / experiment / "units", points, 2 * n_images)
    assert not (killed / f"{experiment}.csv").exists()
    subprocess.run([sys.executable] + command(killed), env=ENV, check=True,
                   capture_output=True, timeout=300)
    assert (killed / f"{experiment}.csv").read_bytes() == whole, seen
    table = pd.read_csv(killed / f"{experiment}.csv")
    assert not table.duplicated(["method", "image_id", "level", "metric"]).any()
    assert len(table) == 2 * n_images * rows_per_unit
    print(f"{script}: unit files after each kill {seen} of {2 * n_images}")


@pytest.mark.slow
def test_random_logit_seeded_runs_are_byte_identical(tmp_path, rng):
    model = tmp_path / "tiny.h5"
    small_cnn(softmax=True).save(model, save_format="h5")
    images = tmp_path / "images.npz"
    np.savez(images, images=rng.normal(size=(3, 8, 8, 3)).astype("float32"),
             labels=np.array([0, 1, 2]))
    tables = []
    for out in ("a", "b"):
        command = [str(SCRIPTS / "run_random_logit.py"), "--network", str(model), "--images",
                   str(images), "--methods", "Gradient,LRP a1b0,SmoothGrad", "--n-images", "3",
                   "--seed", "4", "--out", str(tmp_path / out), "--no-progress"]
        run_in_process(command)
        tables.append((tmp_path / out / "random_logit.csv").read_bytes())
    assert tables[0] == tables[1] and len(tables[0]) > 200


@pytest.mark.slow
def test_csc_killed_at_several_points_resumes_to_the_same_table(tmp_path):
    n_images = 3
    run_in_process(csc_command(tmp_path / "a", n_images))
    names = ("csc.csv", "csc_histograms.csv")
    whole = {name: (tmp_path / "a" / name).read_bytes() for name in names}
    killed = tmp_path / "killed"
    seen = kill_at_points(csc_command(killed, n_images), killed / "csc" / "units", (0, 1),
                          n_images)
    subprocess.run([sys.executable] + csc_command(killed, n_images), env=ENV, check=True,
                   capture_output=True, timeout=600)
    for name in names:
        assert (killed / name).read_bytes() == whole[name], (name, seen)
    print(f"run_csc.py: unit files after each kill {seen} of {n_images}")
