"""CSC against training progress on a tiny run (64 images, 4 optimizer steps,
2 methods): checkpoints are the weights of their step (step 0 = the seeded
initialisation), the table's medians are those of the CSC experiment run
independently on a checkpoint, the figure is written, and the script
answers bad arguments."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_loader import load_script

from csc_analyzers.experiments.csc import run_csc
from csc_analyzers.experiments.training_progress import (
    checkpoint_steps, csc_images, run_training_progress, steps_per_epoch)
from csc_analyzers.models import load_network
from csc_analyzers.models.training import TrainConfig
from csc_analyzers.registry import select_methods

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("LRP a1b0", "Gradient")
CONFIG = TrainConfig(network="cifar-net", n_train=64, n_test=32, epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress")
    cache = tmp_path_factory.mktemp("cache")
    table = run_training_progress("cifar-net", config=CONFIG, early_steps=(0, 1),
                                  methods=METHODS, n_images=2, out_dir=out, cache_dir=cache)
    return out, cache, table


def _weights(path):
    network = load_network("cifar-net", weights=str(path), progress=False)
    return network.model.get_weights()


def _checkpoint_files(out):
    files = sorted((out / "csc_training" / CONFIG.key() / "checkpoints").glob("step_*_weights.h5"),
                   key=lambda p: int(p.name.split("_")[1]))
    return {int(p.name.split("_")[1]): p for p in files}


def test_checkpoint_steps():
    per_epoch = steps_per_epoch(CONFIG)
    assert per_epoch == 2
    assert checkpoint_steps(CONFIG, per_epoch, (0, 1)) == (0, 1, 2, 4)
    assert checkpoint_steps(CONFIG, per_epoch, (3,), every_epoch=False) == (3,)
    with pytest.raises(ValueError, match="outside the training run"):
        checkpoint_steps(CONFIG, per_epoch, (5,))


def test_step0_is_seeded_initialisation_and_weights_change(run):
    out, _cache, _table = run
    files = _checkpoint_files(out)
    assert sorted(files) == [0, 1, 2, 4]
    weights = {step: _weights(path) for step, path in files.items()}
    initial = load_network("cifar-net", weights=None, seed=CONFIG.seed).model.get_weights()
    for a, b in zip(weights[0], initial):
        np.testing.assert_array_equal(a, b)
    steps = sorted(weights)
    for earlier, later in zip(steps, steps[1:]):
        kernels = [np.abs(a - b).max() for a, b in zip(weights[earlier], weights[later])]
        assert max(kernels) > 0, f"weights of steps {earlier} and {later} are equal"


def test_table_rows_and_medians_equal_the_csc_experiment(run, tmp_path):
    out, cache, table = run
    written = pd.read_csv(out / "csc_training.csv", keep_default_na=False)
    assert len(written) == 4 * len(METHODS) * 2
    assert not written.duplicated(["checkpoint_step", "method", "layer"]).any()
    assert set(written["layer"]) == {"input", "conv1"}
    # the CSV keeps 10 significant digits: median_csc to 1e-10, the gap itself relatively
    np.testing.assert_allclose(written["one_minus_csc"], 1 - written["median_csc"], atol=1e-9)
    np.testing.assert_allclose(written["median_csc"], table["median_csc"], atol=1e-9)
    np.testing.assert_allclose(written["one_minus_csc"], table["one_minus_csc"], rtol=1e-8)
    # recompute step 2 with the CSC experiment itself, all injection layers
    path = _checkpoint_files(out)[2]
    network = load_network("cifar-net", weights=str(path), progress=False)
    images = network.preprocess(csc_images(CONFIG, 2, 0))
    full = run_csc(network, select_methods(list(METHODS)), images, out_dir=tmp_path / "ref")["table"]
    ref = full[(full["statistic"] == "median") & (full["injection_layer"] == "fc6")]
    mine = written[written["checkpoint_step"] == 2]
    for _, row in mine.iterrows():
        expected = ref[(ref["method"] == row["method"]) & (ref["layer"] == row["layer"])]["value"]
        assert len(expected) == 1
        assert row["one_minus_csc"] == pytest.approx(1 - float(expected.iloc[0]), rel=1e-8)
    # the measured trend exists: Gradient is far from converged, LRP a1b0 close
    at_input = mine[mine["layer"] == "input"].set_index("method")["one_minus_csc"]
    assert at_input["LRP a1b0"] < 1e-4 < at_input["Gradient"]


def test_figure_is_written(run):
    out, _cache, _table = run
    png = out / "csc_training_cifar-net.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000


def test_rerun_reuses_checkpoints(run):
    out, cache, table = run
    files = _checkpoint_files(out)
    stamps = {step: path.stat().st_mtime_ns for step, path in files.items()}
    again = run_training_progress("cifar-net", config=CONFIG, early_steps=(0, 1),
                                  methods=METHODS, n_images=2, out_dir=out, cache_dir=cache,
                                  plot=False)
    assert {s: p.stat().st_mtime_ns for s, p in _checkpoint_files(out).items()} == stamps
    np.testing.assert_array_equal(again["median_csc"].to_numpy(), table["median_csc"].to_numpy())


def _script():
    return load_script("csc_training_progress")


def test_script_parses_and_rejects_bad_arguments(capsys):
    script = _script()
    args = script.parse_args(["--out", "x"])
    assert (args.network, args.data, args.n_images, args.seed) == ("cifar-net", "builtin", 16, 0)
    assert script.parse_checkpoints(args.checkpoints) == ((0, 100, 400), True)
    assert script.parse_checkpoints("5,epochs,7") == ((5, 7), True)
    assert script.parse_checkpoints("3") == ((3,), False)
    bad = [["--n-images", "0"], ["--checkpoints", "0,x"], ["--checkpoints", "-4"],
           ["--checkpoints", ","], ["--methods", "No Such Method"], ["--epochs", "0"]]
    for extra in bad:
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--out", "unused"] + extra)
        assert exit_info.value.code == 2, extra
        assert "error" in capsys.readouterr().err
    for extra in (["--data", "imagenet"], ["--network", "vgg16"]):
        with pytest.raises(SystemExit):
            script.parse_args(["--out", "x"] + extra)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--out", "unused", "--checkpoints", "999999"])
    assert exit_info.value.code == 2
    assert "outside the training run" in capsys.readouterr().err


def test_claim_evidence_shows_the_training_trend(run):
    from csc_analyzers.claims import FAILS, Evidence, judge_all, training_trend
    from csc_analyzers.report import _training_rows

    out, _cache, table = run
    rows = _training_rows(out, "cifar-net")
    assert len(rows) == len(table)
    assert _training_rows(out, "small-resnet").empty
    ev = Evidence(network="cifar-net", trained=True, weights="trained on builtin",
                  csc_conv=pd.Series({"LRP a1b0": 0.9999999}),
                  csc_input=pd.Series({"LRP a1b0": 1 - 2e-5}), training=rows)
    (row,) = [r for r in judge_all(ev) if r.key == "a1b0_small" and not r.beyond]
    assert row.verdict == FAILS  # the trend is shown, it does not change the verdict
    gaps = table[(table["layer"] == "input") & (table["method"] == "LRP a1b0")] \
        .set_index("checkpoint_step")["one_minus_csc"]
    expected = (f"1 - CSC at the input during training (csc_training.csv, builtin data, "
                f"n=2 images): init {gaps[0]:.1e}, step 1 {gaps[1]:.1e}, "
                f"epoch 1 {gaps[2]:.1e}, epoch 2 {gaps[4]:.1e}")
    assert training_trend(rows, ["LRP a1b0"]) == expected
    assert row.evidence.endswith("; " + expected)
    assert "the value depends on the weights" in row.evidence
    assert "scripts/csc_training_progress.py --data cifar10" in row.evidence
    assert "--weights cifar10" in row.evidence
    ev.training = pd.DataFrame()
    (plain,) = [r for r in judge_all(ev) if r.key == "a1b0_small" and not r.beyond]
    assert "during training" not in plain.evidence
