"""The runtime shim, create_analyzer and the softmax handling."""
import subprocess
import sys

import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.logits import logit_model
from conftest import small_cnn

import innvestigate.analyzer as ianalyzer


@pytest.mark.parametrize("first", ["csc_analyzers", "residual_support"])
def test_import_switches_to_graph_mode(first):
    code = (f"import {first}; import tensorflow as tf; "
            "import csc_analyzers, residual_support; "
            "print(tf.executing_eagerly(), tf.compat.v1.executing_eagerly_outside_functions())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_import_is_quiet_by_default():
    code = ("import numpy as np; import csc_analyzers; from tensorflow import keras; "
            "keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).predict(np.ones((1, 2)), verbose=0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "cuda" not in result.stderr.lower()
    assert "state_updates" not in result.stderr


@pytest.mark.parametrize("env, disabled", [("", "True"), ("1", "False")])
def test_grappler_is_off_on_cpu_unless_asked(env, disabled):
    """Without a GPU the Keras session is created with Grappler off, and
    CSC_TF_GRAPPLER=1 turns it back on; the import must not create a session.
    With a GPU Grappler stays on by design: the test skips there."""
    import os
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: Grappler stays on there by design; "
                    "this checks the CPU-only default")
    code = ("import csc_analyzers; import tensorflow as tf; from tensorflow import keras; "
            "assert not tf.config.list_physical_devices('GPU'); "
            "s = tf.compat.v1.keras.backend.get_session(); "
            "print(s._config.graph_options.rewrite_options.disable_meta_optimizer)")
    env_vars = dict(os.environ, CSC_TF_GRAPPLER=env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env_vars).stdout.split()
    assert out == [disabled]


def test_deeplift_through_shim_sums_to_delta():
    from residual_support._tf import deeplift
    import deeplift.layers as dl
    from deeplift.models import SequentialModel

    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(5, 7)), rng.normal(size=7)
    w2, b2 = rng.normal(size=(7, 2)), rng.normal(size=2)
    layers = [dl.core.Input(batch_shape=(None, 5), name="inp")]
    layers.append(dl.core.Dense(kernel=w1, bias=b1, dense_mxts_mode=dl.DenseMxtsMode.Linear,
                                name="d1"))
    layers.append(dl.activations.ReLU(nonlinear_mxts_mode=dl.NonlinearMxtsMode.Rescale,
                                      name="r1"))
    layers.append(dl.core.Dense(kernel=w2, bias=b2, dense_mxts_mode=dl.DenseMxtsMode.Linear,
                                name="d2"))
    for below, above in zip(layers[:-1], layers[1:]):
        above.set_inputs(below)
    layers[-1].build_fwd_pass_vars()
    model = SequentialModel(layers)
    scores = model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-1)
    x = rng.normal(size=(4, 5))
    ref = np.zeros_like(x)

    def f(v):
        return np.maximum(v @ w1 + b1, 0) @ w2 + b2

    for task in range(2):
        contribs = np.asarray(scores(task_idx=task, input_data_list=[x],
                                     input_references_list=[ref], batch_size=4,
                                     progress_update=None))
        delta = f(x)[:, task] - f(ref)[:, task]
        np.testing.assert_allclose(contribs.sum(axis=1), delta, rtol=1e-4, atol=1e-6)


def test_analyzers_table_is_superset_of_innvestigate():
    assert set(ianalyzer.analyzers) <= set(csc_analyzers.analyzers)


NEEDS_KWARGS = {"deep_taylor.bounded": {"low": -3.0, "high": 3.0}, "lrp": {"rule": "Z"},
                "lrp.alpha_beta": {"alpha": 2, "beta": 1},
                "lrp.sequential_preset_b_flat_until_idx": {"until_layer_idx": 2}}


@pytest.mark.parametrize("name", sorted(ianalyzer.analyzers))
def test_every_innvestigate_name_runs(name, cnn, images):
    analyzer = csc_analyzers.create_analyzer(name, cnn, **NEEDS_KWARGS.get(name, {}))
    result = analyzer.analyze(images)
    assert result.shape == images.shape
    assert np.all(np.isfinite(result))


def test_unknown_name_lists_valid_names(cnn):
    with pytest.raises(KeyError) as info:
        csc_analyzers.create_analyzer("lrp.does_not_exist", cnn)
    message = str(info.value)
    assert "lrp.does_not_exist" in message
    assert "lrp.alpha_1_beta_0" in message and "gradient" in message


@pytest.mark.parametrize("name", ["gradient", "lrp.z", "lrp.alpha_1_beta_0", "guided_backprop"])
def test_softmax_model_is_analysed_on_logits(name, images):
    with_softmax = small_cnn(softmax=True, seed=3)
    without = small_cnn(softmax=False, seed=3)
    before = [w.copy() for w in with_softmax.get_weights()]
    a = csc_analyzers.create_analyzer(name, with_softmax).analyze(images)
    b = csc_analyzers.create_analyzer(name, without).analyze(images)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # the user's model is unchanged: same weights, still ends in a softmax
    assert all(np.array_equal(x, y) for x, y in zip(before, with_softmax.get_weights()))
    assert with_softmax.layers[-1].activation.__name__ == "softmax"
    probabilities = with_softmax.predict(images, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_logit_model_strips_separate_softmax_layer():
    from tensorflow import keras
    inp = keras.Input((4,))
    h = keras.layers.Dense(3, name="logits")(inp)
    out = keras.layers.Softmax(name="probs")(h)
    model = keras.Model(inp, out)
    stripped = logit_model(model)
    assert stripped.layers[-1].name == "logits"
    assert model.layers[-1].name == "probs"
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    logits = stripped.predict(x, verbose=0)
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, x @ kernel + bias, rtol=1e-5, atol=1e-6)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               rtol=1e-5)
