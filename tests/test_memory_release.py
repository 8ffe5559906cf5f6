"""A run of three methods in one process releases each method's graph when
its task ends: after every task, no TF graph, Keras model or analyzer of a
finished method is alive (counted with the garbage collector), while the
same three methods run through the long-lived analyzer cache keep all
three. The units written equal those of the direct experiment function."""
import gc

import numpy as np
import pytest
import tensorflow as tf
from innvestigate.analyzer.base import AnalyzerBase

from csc_analyzers.methods.deeplift_wrapper import DeepLiftAnalyzer
from csc_analyzers.experiments.csc import run_csc
from csc_analyzers.experiments.executors import run_tasks
from csc_analyzers.experiments.store import ResultStore
from csc_analyzers.experiments.tasks import ExperimentInputs, NetworkSource, plan_tasks
from csc_analyzers.models import load_network
from csc_analyzers.registry import select_methods

METHODS = "LRP a1b0,Gradient,DeepLIFT Resc."


def live(kind) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


def census() -> dict:
    return {"graphs": live(tf.Graph), "models": live(tf.keras.Model),
            "analyzers": live((AnalyzerBase, DeepLiftAnalyzer))}


@pytest.fixture(scope="module")
def network():
    return load_network("cifar-net", weights=None, seed=3, progress=False)


@pytest.fixture(scope="module")
def images(network):
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)


def test_each_finished_method_leaves_no_graph_model_or_analyzer(network, images, tmp_path):
    specs = select_methods(METHODS)
    inputs = [ExperimentInputs("csc", [0, 1], images)]
    tasks = plan_tasks(network, NetworkSource("cifar-net", weights=None, seed=3), specs, inputs,
                       out=tmp_path, seed=1, n_vectors=2)
    assert [task.spec.name for task in tasks] == [s.name for s in specs]
    before = census()
    after = []
    run_tasks(tasks, on_task=lambda task: after.append(census()))
    assert after == [before] * 3, (before, after)
    # the control: the same methods through the network's analyzer cache keep
    # their graphs (one analyzer and one logit model more per method)
    cached = load_network("cifar-net", weights=None, seed=3, progress=False)
    base = census()
    run_csc(cached, specs, images, out_dir=tmp_path / "cached", n_vectors=2, seed=1)
    grown = census()
    assert grown["analyzers"] >= base["analyzers"] + 3
    # and the units are the same, byte for byte
    for key in [("cifar-net", spec.name, i) for spec in specs for i in (0, 1)]:
        assert ResultStore(tmp_path, "csc").path(key).read_bytes() == \
            ResultStore(tmp_path / "cached", "csc").path(key).read_bytes(), key


def test_tasks_cover_the_shard_units_in_blocks_sharing_the_images(network, images, tmp_path):
    from csc_analyzers.experiments.common import unit_keys
    from csc_analyzers.experiments.store import Shard

    specs = select_methods(METHODS)
    many = np.concatenate([images, images[:1]])  # ids 0, 1, 2
    inputs = [ExperimentInputs("csc", [0, 1, 2], many),
              ExperimentInputs("random_logit", [0, 1, 2], many, np.array([1, 2, 3]))]
    shard = Shard(1, 2)
    tasks = plan_tasks(network, NetworkSource("cifar-net", weights=None, seed=3), specs, inputs,
                       out=tmp_path, seed=1, shard=shard, block_size=1)
    for experiment in ("csc", "random_logit"):
        planned = [("cifar-net", task.spec.name, i) for task in tasks for part in task.parts
                   if part.experiment == experiment for i in part.image_ids]
        assert planned == shard.select(unit_keys("cifar-net", specs, [0, 1, 2])), experiment
    for task in tasks:
        assert task.n_units == len(task.parts)  # one image per part with block_size 1
        for part in task.parts:
            k = part.image_ids[0]
            assert np.shares_memory(part.images, many)  # a view, not a copy
            np.testing.assert_array_equal(part.images[0], many[k])
            if part.experiment == "random_logit":
                assert int(part.labels[0]) == k + 1


def _swish_gradient_in_isolated_graph():
    """A small swish network built and differentiated in a graph of its own
    (Keras' swish is ``tf.nn.silu``, a ``tf.custom_gradient`` function)."""
    from csc_analyzers.experiments.tasks import isolated_graph

    with isolated_graph():
        inputs = tf.keras.Input((8,))
        hidden = tf.keras.layers.Dense(16, activation="swish")(inputs)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(hidden))
        gradient = tf.gradients(model.outputs[0][:, 0], model.inputs[0])[0]
        session = tf.compat.v1.keras.backend.get_session()
        session.run(tf.compat.v1.global_variables_initializer())
        value = session.run(gradient, {model.inputs[0]: np.ones((2, 8), np.float32)})
    assert np.all(np.isfinite(value)) and np.any(value != 0)


def test_a_released_graph_with_custom_gradients_is_freed(monkeypatch):
    from csc_analyzers.experiments import tasks

    # one gradient registered outside the graphs (say, by the user) is kept
    @tf.custom_gradient
    def outer(x):
        return tf.identity(x), lambda dy: dy

    outer(tf.constant(1.0))
    registered = tasks._custom_gradient_names()
    assert registered
    _swish_gradient_in_isolated_graph()
    before = census()
    for _ in range(2):
        _swish_gradient_in_isolated_graph()
    assert census() == before
    assert tasks._custom_gradient_names() == registered
    # the control: with the registry left alone every graph stays alive
    monkeypatch.setattr(tasks, "_forget_custom_gradients", lambda before: None)
    _swish_gradient_in_isolated_graph()
    kept = census()
    assert kept["graphs"] > before["graphs"]
    assert len(tasks._custom_gradient_names()) > len(registered)
