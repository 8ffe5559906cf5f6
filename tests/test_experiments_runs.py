"""Runs that resume after SIGKILL, and shards that merge into one run's table."""
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
from csc_analyzers.experiments.common import ModelNetwork
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.sanity import run_sanity
from csc_analyzers.experiments.store import Shard, merge_stores
from csc_analyzers.registry import select_methods

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_sanity_checks.py"
METHODS = "Gradient,LRP a1b0,GuidedBP"
N_IMAGES = 10


@pytest.fixture
def tiny_files(tmp_path, rng):
    model = small_cnn(softmax=True)
    model_path = tmp_path / "tiny.h5"
    model.save(model_path, save_format="h5")
    data_path = tmp_path / "images.npz"
    np.savez(data_path, images=rng.normal(size=(N_IMAGES, 8, 8, 3)).astype("float32"),
             labels=rng.integers(0, 3, size=N_IMAGES))
    return model_path, data_path


def command(model_path, data_path, out):
    return [sys.executable, str(SCRIPT), "--network", str(model_path), "--images",
            str(data_path), "--methods", METHODS, "--n-images", str(N_IMAGES), "--seed", "3",
            "--chunk", "1", "--out", str(out), "--no-progress"]


def run(cmd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)


@pytest.mark.slow
def test_killed_run_resumed_equals_uninterrupted_run(tiny_files, tmp_path):
    model_path, data_path = tiny_files
    script = runpy.run_path(str(SCRIPT))  # the uninterrupted run, in this process
    assert script["main"](command(model_path, data_path, tmp_path / "whole")[2:]) == 0
    killed = tmp_path / "killed"
    units = killed / "sanity_cascading" / "units"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command(model_path, data_path, killed), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if units.exists() and any(units.glob("*.csv")):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(units.glob("*.csv")))
    assert 0 < n_done < 3 * N_IMAGES, "the run was not killed part way"
    assert not (killed / "sanity_cascading.csv").exists()
    run(command(model_path, data_path, killed))
    whole = (tmp_path / "whole" / "sanity_cascading.csv").read_bytes()
    assert (killed / "sanity_cascading.csv").read_bytes() == whole
    table = pd.read_csv(tmp_path / "whole" / "sanity_cascading.csv")
    assert len(table) == 3 * N_IMAGES * 3 * 4  # methods x images x levels x metrics
    assert not table.duplicated(["method", "image_id", "level", "metric"]).any()


def test_two_shards_merged_equal_one_run(tmp_path, rng):
    network = ModelNetwork("tiny", small_cnn(softmax=True), input_range=(-3.0, 3.0))
    images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    labels, ids = [0, 1, 2, 1], [10, 11, 12, 13]
    specs = select_methods("LRP-z")
    for runner, experiment in ((run_sanity, "sanity_cascading"), (run_random_logit,
                                                                   "random_logit")):
        single = runner(network, images, labels, ids, specs, tmp_path / "single", seed=2)
        for index in range(2):
            runner(network, images, labels, ids, specs, tmp_path / f"shard{index}", seed=2,
                   shard=Shard(index, 2))
        merged = merge_stores([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged",
                              experiment)
        keys = [("tiny", s.name, i) for s in specs for i in ids]
        pd.testing.assert_frame_equal(merged.table(keys), single.table(keys))
        assert len(single.table(keys)) > 0


def test_sanity_reusing_the_random_logit_maps_equals_explaining_again(tmp_path, rng,
                                                                      monkeypatch):
    """The sanity check's original maps taken from the random-logit
    experiment (same network, analyzer, weights and classes) give the same
    rows and saved maps as explaining the images again, with one map fewer
    per image; a map not supplied is explained."""
    import csc_analyzers.experiments.sanity as sanity

    network = ModelNetwork("tiny", small_cnn(softmax=True), input_range=(-3.0, 3.0))
    images = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    labels, ids = [0, 1, 2], [10, 11, 12]
    specs = select_methods("LRP-z,SmoothGrad")
    calls = []
    explain = sanity.explain
    monkeypatch.setattr(sanity, "explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    keys = [("tiny", s.name, i) for s in specs for i in ids]

    alone = run_sanity(network, images, labels, ids, specs, tmp_path / "alone", seed=2,
                       save_maps_for=ids[:1])
    explained_alone = len(calls)
    originals = {}
    run_random_logit(network, images, labels, ids, specs, tmp_path / "shared", seed=2,
                     original_maps=originals)
    assert sorted(originals) == sorted((s.name, i, c) for s in specs
                                       for i, c in zip(ids, labels))
    del originals[("LRP-z", 12, 2)]  # one map missing: explained
    calls.clear()
    shared = run_sanity(network, images, labels, ids, specs, tmp_path / "shared", seed=2,
                        save_maps_for=ids[:1], original_maps=originals)
    assert len(calls) == explained_alone - (len(specs) * len(ids) - 1)
    pd.testing.assert_frame_equal(shared.table(keys), alone.table(keys))
    for spec in specs:
        key = ("tiny", spec.name, ids[0])
        a = np.load(sanity.maps_path(tmp_path / "alone", "sanity_cascading", key))["maps"]
        b = np.load(sanity.maps_path(tmp_path / "shared", "sanity_cascading", key))["maps"]
        np.testing.assert_array_equal(a, b)
