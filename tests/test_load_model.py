"""Loading saved models after ``import csc_analyzers`` (graph mode): the
natural ``keras.models.load_model`` sequence, ``load_weights``, the public
``csc_analyzers.load_model``, and models built before the import."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import csc_analyzers
import residual_support
from csc_analyzers import errors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import tutorial_models  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """tests/tutorial_models.py run in an eager process (as a user saves)."""
    directory = tmp_path_factory.mktemp("tutorial_models")
    subprocess.run([sys.executable, str(ROOT / "tests" / "tutorial_models.py"),
                    str(directory)], check=True, env=ENV, capture_output=True)
    return directory


def _inputs(saved, name):
    expected = np.load(saved / "expected.npz")
    x = expected["x"] if name == "rescaling" else expected["x"] / 255.0
    return x.astype(np.float32), expected[name]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", tutorial_models.NAMES)
def test_natural_load_sequence_gives_saved_predictions(saved, name, suffix):
    """`import csc_analyzers` (conftest) then `keras.models.load_model` with its
    defaults (compile=True): the saved model's predictions, exactly."""
    model = keras.models.load_model(saved / f"{name}{suffix}")
    x, expected = _inputs(saved, name)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["residual", "nested"])
def test_load_weights_in_graph_mode(saved, name):
    model = tutorial_models.build(keras, name)
    x, expected = _inputs(saved, name)
    before = model.predict(x, verbose=0)
    model.load_weights(saved / f"{name}.weights.h5")
    after = model.predict(x, verbose=0)
    assert np.abs(before - expected).max() > 1e-3  # the random start differs
    np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_public_load_model(saved, suffix):
    model = csc_analyzers.load_model(saved / f"residual{suffix}")
    x, expected = _inputs(saved, "residual")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert model.optimizer is None  # loaded without its training configuration


def test_public_load_model_errors(tmp_path):
    with pytest.raises(errors.ModelFileNotFoundError, match="nothing.keras"):
        csc_analyzers.load_model(tmp_path / "nothing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(errors.ModelFileError, match="junk.keras: cannot load"):
        csc_analyzers.load_model(tmp_path / "junk.keras")


def test_loader_patch_is_installed_once():
    from keras.src.saving import saving_lib

    import residual_support._tf as rtf

    assert saving_lib.load_model._csc_runs_assignments
    wrapped = saving_lib.load_model
    rtf._patch_keras_v3_loading()
    assert saving_lib.load_model is wrapped


def _gradient_reference(model, x):
    """d logit_k / d x of the predicted class, from the graph directly."""
    logits = model.layers[-1].input @ model.layers[-1].kernel + model.layers[-1].bias
    k = np.argmax(model.predict(x, verbose=0), axis=1)
    onehot = tf.one_hot(tf.constant(k), logits.shape[-1])
    grad = tf.gradients(tf.reduce_sum(logits * onehot), model.inputs[0])[0]
    return tf.compat.v1.keras.backend.get_session().run(grad, {model.inputs[0]: x})


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients"])
@pytest.mark.parametrize("name", tutorial_models.NAMES)
def test_api_first_call_on_loaded_tutorial_models(saved, name, method):
    """The first analyzer on a freshly loaded model with default layer names
    works (no "The name "add" is used 2 times"); a layer a method cannot pass
    is refused with UnsupportedLayerError naming it, never another error."""
    model = keras.models.load_model(saved / f"{name}.keras")
    x, _ = _inputs(saved, name)
    try:
        analyzer = csc_analyzers.create_analyzer(method, model)
    except (errors.UnsupportedLayerError, residual_support.UnsupportedLayerError) as error:
        assert name in ("rescaling", "leaky", "nested")
        assert {"rescaling": "rescaling", "leaky": "leaky_re_lu",
                "nested": "sequential"}[name] in str(error)
        return
    maps = analyzer.analyze(x)
    assert maps.shape == x.shape and np.all(np.isfinite(maps))
    if method == "gradient" and name in ("residual", "nested"):
        np.testing.assert_allclose(maps, _gradient_reference(model, x), rtol=1e-4, atol=1e-6)


def test_residual_first_call_without_name_reservation_would_fail(saved):
    """The collision the API prevents: the raw analyzer class on the loaded
    model fails, create_analyzer on the same model works."""
    from csc_analyzers.logits import logit_model

    model = keras.models.load_model(saved / "residual.keras")
    with pytest.raises(ValueError, match='"add" is used 2 times'):
        csc_analyzers.analyzers["gradient"](logit_model(model)).analyze(
            _inputs(saved, "residual")[0])
    keras.backend.clear_session()
    model = keras.models.load_model(saved / "residual.keras")
    maps = csc_analyzers.create_analyzer("gradient", model).analyze(_inputs(saved, "residual")[0])
    assert np.all(np.isfinite(maps)) and np.abs(maps).max() > 0


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_model_loaded_before_import_is_analysed_as_graph_copy(saved):
    """An eager model (loaded before `import csc_analyzers`): its gradient map
    equals the eager gradient computed before the import."""
    result = _run(f"""
        import numpy as np, tensorflow as tf
        from tensorflow import keras
        model = keras.models.load_model({str(saved / 'residual.h5')!r}, compile=False)
        x = (np.load({str(saved / 'expected.npz')!r})["x"] / 255.0).astype("float32")
        dense = model.layers[-1]
        features = keras.Model(model.inputs, dense.input)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            logits = features(xt) @ dense.kernel + dense.bias
            k = tf.argmax(logits, axis=1)
            target = tf.reduce_sum(logits * tf.one_hot(k, logits.shape[-1]))
        reference = tape.gradient(target, xt).numpy()
        import csc_analyzers
        maps = csc_analyzers.create_analyzer("gradient", model).analyze(x)
        print("DIFF", float(np.abs(maps - reference).max()), float(np.abs(reference).max()))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    line = [s for s in result.stdout.splitlines() if s.startswith("DIFF")][0]
    diff, scale = map(float, line.split()[1:])
    assert scale > 0 and diff <= 1e-5 * scale


def test_subclassed_model_built_before_import_is_refused():
    result = _run("""
        import numpy as np
        from tensorflow import keras

        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(3)
            def call(self, x):
                return self.dense(keras.layers.Flatten()(x))

        model = Net()
        model(np.zeros((1, 4, 4, 3), "float32"))
        import csc_analyzers
        from csc_analyzers.errors import EagerModelError
        try:
            csc_analyzers.create_analyzer("gradient", model)
        except EagerModelError as error:
            print("REFUSED", error)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "REFUSED" in result.stdout
    assert "import csc_analyzers before building or loading the model" in result.stdout
