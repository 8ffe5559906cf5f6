"""Bad inputs: each gives the project's error class, a message naming the
culprit, and no traceback from inside TensorFlow; fixable images are fixed."""
import logging
import runpy
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tensorflow import keras

from conftest import small_cnn
from csc_analyzers import checks, errors
from csc_analyzers.data import imagenet
from csc_analyzers.integrity import count_nonfinite, flag_nonfinite
from csc_analyzers.registry import select_methods

ROOT = Path(__file__).resolve().parents[1]
SANITY = runpy.run_path(str(ROOT / "scripts" / "run_sanity_checks.py"))["main"]
CSC = runpy.run_path(str(ROOT / "scripts" / "run_csc.py"))["main"]


def act_model(activation, name="act_net"):
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(2, 3, activation=activation, name="conv_act")(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(h), name=name)


def layer_model(layer, name="odd_net"):
    inp = keras.Input((8, 8, 3), name="image")
    h = layer(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(h), name=name)


@pytest.fixture
def files(tmp_path, rng):
    model = small_cnn(softmax=True)
    good = tmp_path / "good.h5"
    model.save(good, save_format="h5")
    (tmp_path / "truncated.h5").write_bytes(good.read_bytes()[:300])
    (tmp_path / "garbage.keras").write_bytes(b"this is not a zip archive")
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "model.txt").write_text("a model?")
    (tmp_path / "not_saved_model").mkdir()
    np.savez(tmp_path / "images.npz", images=rng.normal(size=(2, 8, 8, 3)).astype("float32"),
             labels=np.array([0, 1]))
    np.savez(tmp_path / "wrong_shape.npz", images=np.zeros((2, 16, 16, 3), "float32"),
             labels=np.array([0, 1]))
    np.savez(tmp_path / "no_labels.npz", images=np.zeros((2, 8, 8, 3), "float32"))
    np.savez(tmp_path / "bad_labels.npz", images=np.zeros((2, 8, 8, 3), "float32"),
             labels=np.array([0, 7]))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    np.savez(tmp_path / "other_patterns.npz", a=np.zeros((5, 5, 3, 4)), b=np.zeros((36, 6)),
             c=np.zeros((6, 3)))
    np.savez(tmp_path / "few_patterns.npz", a=np.zeros((3, 3, 3, 4)))
    for name, layout in (("flat_val", None), ("odd_val", "cats"), ("empty_synsets", "n01")):
        root = tmp_path / name
        root.mkdir()
        if layout is None:
            Image.new("RGB", (10, 10)).save(root / "ILSVRC2012_val_00000001.JPEG")
        else:
            (root / layout).mkdir()
    return tmp_path


def sanity_args(files, *extra, network=None):
    return ["--network", str(network or files / "good.h5"), "--images",
            str(files / "images.npz"), "--methods", "Gradient", "--n-images", "2",
            "--out", str(files / "out"), "--no-progress", *extra]


# (case id, callable(files) -> raises, error class, text the message must hold)
CASES = [
    ("missing model file", lambda f: checks.load_user_model(f / "nowhere.h5"),
     errors.ModelFileNotFoundError, "nowhere.h5"),
    ("truncated h5", lambda f: checks.load_user_model(f / "truncated.h5"),
     errors.ModelFileError, "truncated.h5"),
    ("garbage .keras", lambda f: checks.load_user_model(f / "garbage.keras"),
     errors.ModelFileError, "garbage.keras"),
    ("empty h5", lambda f: checks.load_user_model(f / "empty.h5"),
     errors.ModelFileError, "empty.h5"),
    ("unknown model suffix", lambda f: checks.load_user_model(f / "model.txt"),
     errors.ModelFileError, "model.txt"),
    ("directory that is no SavedModel", lambda f: checks.load_user_model(f / "not_saved_model"),
     errors.ModelFileError, "not_saved_model"),
    ("LayerNormalization for LRP", lambda f: checks.check_layers(
        layer_model(keras.layers.LayerNormalization(name="my_norm")), select_methods("LRP-z")),
     errors.UnsupportedLayerError, "'my_norm' (LayerNormalization)"),
    ("Lambda layer for LRP", lambda f: checks.check_layers(
        layer_model(keras.layers.Lambda(lambda x: 2 * x, name="double")),
        select_methods("LRP-z")), errors.UnsupportedLayerError, "'double' (Lambda)"),
    ("dilated conv for DeepLIFT", lambda f: checks.check_layers(
        layer_model(keras.layers.Conv2D(2, 3, dilation_rate=2, name="dilated")),
        select_methods("DeepLIFT Resc.")), errors.UnsupportedLayerError, "'dilated' (Conv2D)"),
    ("elu for GuidedBP", lambda f: checks.check_activations(
        act_model("elu"), select_methods("GuidedBP,Gradient")),
     errors.ActivationError, "'conv_act' (elu)"),
    ("tanh for RectGrad", lambda f: checks.check_activations(
        act_model("tanh"), select_methods("RectGrad")), errors.ActivationError, "RectGrad"),
    ("swish for DeepLIFT", lambda f: checks.check_activations(
        act_model("swish"), select_methods("DeepLIFT Rev.C.")),
     errors.ActivationError, "'conv_act' (swish)"),
    ("images of another size", lambda f: checks.check_input_shape(
        small_cnn(), np.zeros((2, 16, 16, 3))), errors.InputShapeError, "(2, 16, 16, 3)"),
    ("image dir missing", lambda f: imagenet.list_validation_dir(f / "no_val"),
     errors.ImageDirectoryNotFoundError, "no_val"),
    ("image dir flat (no synsets)", lambda f: imagenet.list_validation_dir(f / "flat_val"),
     errors.ImageDirectoryError, "flat_val"),
    ("image dir with non-synset folders", lambda f: imagenet.list_validation_dir(f / "odd_val"),
     errors.ImageDirectoryError, "'cats'"),
    ("image dir with empty synsets", lambda f: imagenet.list_validation_dir(f / "empty_synsets"),
     errors.ImageDirectoryError, "empty_synsets"),
    ("patterns of another model", lambda f: checks.check_patterns_file(
        f / "other_patterns.npz", small_cnn()), errors.PatternsFileError, "other_patterns.npz"),
    ("patterns: too few arrays", lambda f: checks.check_patterns_file(
        f / "few_patterns.npz", small_cnn()), errors.PatternsFileError, "few_patterns.npz"),
    ("patterns file corrupt", lambda f: checks.check_patterns_file(f / "broken.npz", small_cnn()),
     errors.PatternsFileError, "broken.npz"),
    ("unknown method", lambda f: checks.check_methods("Gradient,LRP-q"),
     errors.ArgumentError, "'LRP-q'"),
    ("unknown network", lambda f: checks.check_network_name("resnet18"),
     errors.ArgumentError, "'resnet18'"),
    ("shard out of range", lambda f: checks.check_shard("2/2"), errors.ArgumentError, "--shard"),
    ("shard not i/N", lambda f: checks.check_shard("half"), errors.ArgumentError, "'half'"),
]

# command-line cases: (case id, main, argv(files), text of the stderr message)
CLI_CASES = [
    ("cli: corrupt model", SANITY, lambda f: sanity_args(f, network=f / "truncated.h5"),
     "truncated.h5"),
    ("cli: unknown network", SANITY, lambda f: sanity_args(f, network="alexnet"), "'alexnet'"),
    ("cli: model file without --images", SANITY,
     lambda f: ["--network", str(f / "good.h5"), "--out", str(f / "out")], "--images"),
    ("cli: images of another shape", SANITY, lambda f: sanity_args(f) + [
        "--images", str(f / "wrong_shape.npz")], "(2, 16, 16, 3)"),
    ("cli: images file without labels", SANITY, lambda f: sanity_args(f) + [
        "--images", str(f / "no_labels.npz")], "'labels'"),
    ("cli: labels outside the classes", SANITY, lambda f: sanity_args(f) + [
        "--images", str(f / "bad_labels.npz")], "labels [7]"),
    ("cli: images file corrupt", SANITY, lambda f: sanity_args(f) + [
        "--images", str(f / "broken.npz")], "broken.npz"),
    ("cli: bad shard", SANITY, lambda f: sanity_args(f, "--shard", "3/2"), "--shard '3/2'"),
    ("cli: unknown method", SANITY, lambda f: sanity_args(f) + ["--methods", "Gradiant"],
     "'Gradiant'"),
    ("cli: patterns of another model", SANITY, lambda f: sanity_args(f) + [
        "--patterns", str(f / "other_patterns.npz")], "other_patterns.npz"),
    ("cli: n-images 0", SANITY, lambda f: sanity_args(f) + ["--n-images", "0"], "--n-images 0"),
    ("cli csc: unknown network", CSC, lambda f: ["--network", "vgg19", "--out", str(f)],
     "'vgg19'"),
    ("cli csc: missing weights file", CSC, lambda f: [
        "--network", "cifar-net", "--weights", str(f / "none.h5"), "--out", str(f)], "none.h5"),
    ("cli csc: n-vectors 1", CSC, lambda f: [
        "--network", "cifar-net", "--n-vectors", "1", "--out", str(f)], "--n-vectors 1"),
    ("cli csc: bad shard", CSC, lambda f: [
        "--network", "cifar-net", "--shard", "0/0", "--out", str(f)], "--shard"),
]


def no_tensorflow_frames(error) -> bool:
    """The traceback ends in project code: no frame of the exception's own
    traceback is inside tensorflow/keras, and it has no TF error as cause."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f.filename for f in frames if "site-packages" in f.filename]
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return not inside and cause is None


@pytest.mark.parametrize("case, call, kind, culprit", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_project_error_naming_culprit(files, case, call, kind, culprit):
    with pytest.raises(errors.InputError) as info:
        call(files)
    assert type(info.value) is kind, f"{case}: {type(info.value).__name__}: {info.value}"
    assert culprit in str(info.value), str(info.value)
    assert no_tensorflow_frames(info.value), case


@pytest.mark.parametrize("case, main, argv, culprit", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_exits_with_message(files, capsys, case, main, argv, culprit):
    with pytest.raises(SystemExit) as info:
        main(argv(files))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and culprit in err, err
    assert "Traceback" not in err and "site-packages" not in err, err
    assert not (files / "out").exists() or not any((files / "out").rglob("*.csv"))


def test_activation_warnings_and_accepted_models():
    specs = select_methods("LRP a1b0,Gradient,LRP-z")
    warnings = checks.check_activations(act_model("sigmoid"), specs)
    assert len(warnings) == 1 and "LRP a1b0" in warnings[0] and "'conv_act'" in warnings[0]
    assert checks.check_activations(act_model("sigmoid"),
                                     select_methods("DeepLIFT Resc.")) == []
    relu = small_cnn(softmax=True)  # final softmax and ReLUs: nothing to say
    assert checks.preflight(relu, select_methods("all"), images=np.zeros((1, 8, 8, 3))) == []


def test_good_model_file_loads_with_same_weights(files):
    model = checks.load_user_model(files / "good.h5")
    reference = small_cnn(softmax=True)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fixable_images_are_fixed_and_counted(tmp_path, caplog):
    paths = []
    for name, image in (("rgb.png", Image.new("RGB", (16, 16), (10, 20, 30))),
                        ("grey.png", Image.new("L", (16, 16), 77)),
                        ("rgba.png", Image.new("RGBA", (16, 16), (1, 2, 3, 4))),
                        ("big.jpg", Image.new("RGB", (40, 24), (200, 0, 0)))):
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    paths.insert(2, tmp_path / "broken.jpg")
    with caplog.at_level(logging.WARNING):
        images, kept = imagenet.load_images(paths, size=16)
    assert kept == [0, 1, 3, 4] and images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    assert (images[1] == 77).all()  # grey replicated to RGB
    assert tuple(images[2, 0, 0]) == (1, 2, 3)  # alpha dropped
    assert abs(int(images[3, ..., 0].mean()) - 200) <= 1
    text = caplog.text
    assert "broken.jpg" in text
    assert "converted 2 of 5 images" in text and "resized 1 of 5 images" in text
    assert "skipped 1 of 5" in text


def test_unreadable_file_in_validation_tree_is_skipped(tmp_path):
    root = tmp_path / "val"
    for k, synset in enumerate(("n01", "n02")):
        (root / synset).mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (12, 12), (k, j, 0)).save(root / synset / f"{j}.png")
    (root / "n02" / "2.png").write_bytes(b"truncated")
    images, labels, paths = imagenet.sample_validation_dir(root, n=5, seed=0, size=8)
    assert len(images) == len(labels) == len(paths) == 4
    assert all(p.name != "2.png" for p in paths)
    assert all(label == int(p.parent.name == "n02") for label, p in zip(labels, paths))


def test_nonfinite_rows_are_flagged_and_counted():
    table = pd.DataFrame({"method": ["a", "a", "b", "b", "b"],
                          "value": [0.5, np.nan, np.inf, 1.0, -np.inf]})
    flagged = flag_nonfinite(table)
    assert flagged["nonfinite"].tolist() == [False, True, True, False, True]
    assert "nonfinite" not in table.columns  # pure
    counts = count_nonfinite(table).set_index("method")
    assert counts.loc["a", "nonfinite"] == 1 and counts.loc["b", "nonfinite"] == 2
    assert counts.loc["b", "rows"] == 3
    with pytest.raises(ValueError, match="'score'"):
        flag_nonfinite(table, column="score")
