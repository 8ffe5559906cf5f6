"""``scripts/audit.py`` end to end on small saved models: the three formats, a
residual model, resume, and inputs that must stop the audit before any work."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tensorflow import keras

from audit_models import save_in_subprocess
from csc_analyzers.audit.checks import load_model, reserve_layer_names
from csc_analyzers.audit.report import INSENSITIVE, SENSITIVE, verdict

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("audit_script", ROOT / "scripts" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = _script()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The models of tests/audit_models.py, saved by a process in eager mode."""
    return save_in_subprocess(tmp_path_factory.mktemp("audit_models"))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A broken file first, then three readable images of other sizes and modes
    (grayscale, RGBA, RGB)."""
    directory = tmp_path_factory.mktemp("audit_images")
    rng = np.random.default_rng(0)
    (directory / "a_broken.jpg").write_bytes(b"not an image")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(directory / "b.png")
    Image.fromarray(rng.integers(0, 255, (20, 25, 4), dtype=np.uint8)).save(directory / "c.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(directory / "d.png")
    return directory


def run(argv, capsys):
    code = audit.main([str(a) for a in argv] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_verdicts(out):
    return pd.read_csv(out / "verdicts.csv").set_index("method")


def check_verdict_consistent(row, first_conv_channels):
    expected = verdict(row.csc_first_conv, row.csc_input, row.random_logit_ssim,
                       row.top_layer_ssim, first_conv_channels=first_conv_channels)[0]
    assert row.verdict == expected


@pytest.mark.slow
def test_keras_file_on_builtin_images(models, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run([models / "cnn32.keras", "--methods", "Gradient,LRP-z",
                           "--n-images", 2, "--n-vectors", 3, "--out", out], capsys)
    assert code == 0
    table = read_verdicts(out)
    assert list(table.index) == ["Gradient", "LRP-z"]
    csc = pd.read_csv(out / "results" / "csc.csv")
    logit = pd.read_csv(out / "results" / "random_logit.csv")
    for method, row in table.iterrows():
        assert row.verdict in (INSENSITIVE, SENSITIVE)
        check_verdict_consistent(row, first_conv_channels=4)
        at_input = csc[(csc.method == method) & (csc.injection_layer == "fc")
                       & (csc.layer == "input") & (csc.statistic == "median")]
        assert row.csc_input == pytest.approx(float(at_input.value.iloc[0]), abs=1e-6)
        ssim = logit[(logit.method == method) & (logit.metric == "ssim_standard")].value
        assert len(ssim) == 2
        assert row.random_logit_ssim == pytest.approx(np.median(ssim), abs=1e-6)
        assert np.isfinite(row.top_layer_ssim)
        assert np.isfinite(row.class_sensitivity_gap)  # built-in composites, 10 classes
    assert "rand.-logit SSIM" in stdout and "Gradient" in stdout
    report = (out / "AUDIT.md").read_text()
    assert "| Gradient |" in report and "| LRP-z |" in report
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    for prefix in ("fig5_csc_cnn32", "random_logit_", "sanity_ssim_", "class_sensitivity_"):
        assert any(name.startswith(prefix) for name in figures), (prefix, figures)
    for name in figures:
        assert f"(figures/{name})" in report


@pytest.mark.slow
def test_residual_h5_with_an_image_directory(models, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="a_broken.jpg"):
        code, _, err = run([models / "residual.h5", "--images", image_dir, "--n-images", 2,
                            "--methods", "Gradient,LRP a1b0,DeepLIFT Resc.", "--n-vectors", 2,
                            "--preprocess", "tf", "--no-figures", "--out", out], capsys)
    assert code == 0, err
    table = read_verdicts(out)
    model_layers = {layer.name for layer in load_model(models / "residual.h5").layers}
    for method in ("Gradient", "DeepLIFT Resc."):
        row = table.loc[method]
        assert row.verdict in (INSENSITIVE, SENSITIVE)
        assert np.isfinite(row.csc_input) and np.isfinite(row.random_logit_ssim)
        assert math.isnan(row.class_sensitivity_gap)  # no masks for directory images
    lrp = table.loc["LRP a1b0"]
    if lrp.verdict.startswith("not applicable"):
        # innvestigate refuses a layer of the model: the reason names it
        assert any(f"'{name}'" in lrp.verdict for name in model_layers), lrp.verdict
        assert "LRP a1b0 not applicable" in err
    else:
        assert np.isfinite(lrp.csc_input)
    units = list((out / "results" / "random_logit" / "units").glob("*Gradient*"))
    assert len(units) == 2  # the broken file is skipped
    report = (out / "AUDIT.md").read_text()
    assert "[-1, 1]" in report and "no object masks" in report


@pytest.mark.slow
def test_savedmodel_directory_and_resume(models, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [models / "residual_savedmodel", "--images", image_dir, "--n-images", 2,
            "--methods", "Gradient", "--n-vectors", 2, "--no-figures", "--out", out]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    units = {p: (p.stat().st_mtime_ns, p.read_bytes())
             for p in (out / "results").rglob("units/*.csv")}
    # CSC, random logit, top layer: two images each; the CSC random baseline
    assert len(units) == 2 + 2 + 2 + 1
    first = (out / "verdicts.csv").read_text()
    keras.backend.clear_session()
    assert run(argv, capsys)[0] == 0
    again = {p: (p.stat().st_mtime_ns, p.read_bytes())
             for p in (out / "results").rglob("units/*.csv")}
    assert again == units  # nothing recomputed
    assert (out / "verdicts.csv").read_text() == first
    keras.backend.clear_session()
    code, _, err = run(argv[:-2] + ["--seed", 1, "--out", out], capsys)
    assert code == 2 and "other settings (seed)" in err


def test_unsupported_layer_everywhere_writes_nothing(models, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    # the gradient family runs on any differentiable layer (an LSTM too): only
    # methods with a rule per layer type are chosen here
    code, stdout, err = run([models / "lstm.keras", "--images", image_dir, "--methods",
                             "LRP-z,DeepLIFT Resc.", "--out", out], capsys)
    assert code == 2
    assert "audit: error" in err and "no chosen method can explain it" in err
    for method in ("LRP-z", "DeepLIFT Resc."):
        line = next(l for l in err.splitlines() if l.strip().startswith(method + ":"))
        assert "'lstm'" in line or "'rows'" in line, line
    assert "'lstm'" in err
    assert not out.exists() and stdout == ""


def test_bad_inputs_stop_before_any_work(models, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run([tmp_path / "missing.keras", "--out", out], capsys)
    assert code == 2 and "missing.keras: no such file" in err
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x00garbage")
    code, _, err = run([broken, "--out", out], capsys)
    assert code == 2 and "broken.h5: cannot load the model" in err
    code, _, err = run([tmp_path, "--out", out], capsys)
    assert code == 2 and "without saved_model.pb" in err
    # a 16x16 model has no built-in images
    code, _, err = run([models / "residual.h5", "--out", out], capsys)
    assert code == 2 and "pass --images DIR" in err
    with pytest.raises(SystemExit) as stop:  # argparse, before TensorFlow work
        run([models / "residual.h5", "--methods", "Nope", "--out", out], capsys)
    assert stop.value.code == 2 and "unknown method 'Nope'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["cnn32.keras", "residual.h5", "residual_savedmodel"])
def test_every_format_loads_its_saved_weights(models, name):
    expected = np.load(models / "expected_weights.npz")
    weights = load_model(models / name).get_weights()
    assert len(weights) == len([k for k in expected.files if k.startswith(name + "/")])
    for i, value in enumerate(weights):
        np.testing.assert_array_equal(value, expected[f"{name}/{i}"])


def test_loaded_model_names_are_reserved(models):
    model = load_model(models / "residual.h5")
    names = {layer.name for layer in model.layers}
    assert {"add", "batch_normalization", "re_lu"} <= names
    reserve_layer_names(model)
    fresh = [keras.layers.Add().name, keras.layers.BatchNormalization().name,
             keras.layers.ReLU().name, keras.layers.Conv2D(1, 1).name]
    assert not set(fresh) & names
