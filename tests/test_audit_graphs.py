"""The audit's graph modes (``--graph``): ``per-method`` measures one method
for the estimate, then builds each method once on a copy of the model in a
TensorFlow graph of its own and releases it after the method; ``shared``
builds and measures every analyzer in one graph. Both give the same result
files; per-method keeps no analyzer or graph alive, and its estimate
predicts the methods it did not measure."""
import gc
import weakref
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from audit_models import save_in_subprocess

from csc_analyzers.audit import run as audit
from csc_analyzers.experiments.common import ANALYSIS_MODEL

METHODS = "Gradient,LRP a1b0,DeepLIFT Resc."


@pytest.fixture(scope="module")
def cnn32(tmp_path_factory):
    """tests/audit_models.py's 32x32 CNN (10 classes), saved in eager mode."""
    return save_in_subprocess(tmp_path_factory.mktemp("graph_models")) / "cnn32.keras"


def _audit(path, out, graph):
    plan = audit.prepare_audit(path, methods=METHODS, n_images=2, n_vectors=3, graph=graph)
    result = audit.run_audit(plan, out, figures=False)
    return plan, result


def _result_files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*.csv")) if "units" not in p.parts}


def test_per_method_equals_shared_and_releases_every_graph(cnn32, tmp_path, monkeypatch):
    built = []
    original = audit.ModelSource.build

    def tracked(self):
        network = original(self)
        built.append((weakref.ref(network.model), weakref.ref(network.model.inputs[0].graph)))
        return network

    loads = []
    load_model = audit.load_model
    monkeypatch.setattr(audit.ModelSource, "build", tracked)
    monkeypatch.setattr(audit, "load_model", lambda path: loads.append(path) or load_model(path))
    plan, _ = _audit(cnn32, tmp_path / "per_method", "per-method")
    monkeypatch.undo()
    # one copy for the analyzers' constructor checks, one for the measured
    # method (Gradient) and one per method for its check and experiments,
    # built from the model's configuration (the file is read once)
    assert len(built) == len(plan.applicable) + 2 == 5
    assert len(loads) == 1
    gc.collect()
    assert all(model() is None and graph() is None for model, graph in built)
    # the analyzers never lived in the audit's own graph
    assert set(plan.network.analyzer_cache) <= {ANALYSIS_MODEL}
    estimate = plan.estimate
    assert estimate.reference == "Gradient"
    assert [c.predicted_from for c in estimate.costs.values()] == ["", "Gradient", "Gradient"]
    # a predicted cost is the measured one scaled by the registry's relative costs
    gradient, lrp = estimate.costs["Gradient"], estimate.costs["LRP a1b0"]
    relative = {spec.name: spec.cost for spec in plan.applicable}["LRP a1b0"]
    assert lrp.build_s == pytest.approx(gradient.build_s * relative.build)
    assert lrp.map_s == pytest.approx(gradient.map_s * relative.map)
    # every method is built for its experiments: all builds are in the experiments
    assert estimate.experiments_s >= sum(c.build_s for c in estimate.costs.values())
    assert "LRP a1b0 measured" not in estimate.describe()
    assert "Gradient measured on one image" in estimate.describe()
    # the run completed every check (warnings, sanity) in the method's own graph
    assert all(check.final for check in plan.checks)

    shared_plan, _ = _audit(cnn32, tmp_path / "shared", "shared")
    assert not shared_plan.estimate.rebuild
    per_method = _result_files(tmp_path / "per_method")
    shared = _result_files(tmp_path / "shared")
    assert set(per_method) == set(shared) and "verdicts.csv" in per_method
    for name in per_method:
        if name == "verdicts.csv":
            assert per_method[name] == shared[name]
            continue
        a = pd.read_csv(tmp_path / "per_method" / name)
        b = pd.read_csv(tmp_path / "shared" / name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, obj=name)


def test_unknown_graph_mode_is_named(cnn32):
    with pytest.raises(audit.AuditError, match="graph 'one': choose from"):
        audit.prepare_audit(cnn32, methods="Gradient", n_images=1, graph="one")


def test_per_method_failure_and_budget_at_run_time(cnn32, tmp_path, monkeypatch):
    """A method that fails when its turn comes is reported not applicable
    (in the report lines, the checks and verdicts.csv), and a method whose
    experiments no longer fit the budget is dropped with the reason."""
    original = audit.check_method

    def failing(spec, *args, **kwargs):
        if spec.name == "LRP a1b0":
            return audit.MethodCheck(spec, False, "non-finite relevance at layer 'input'",
                                     ("input",))
        return original(spec, *args, **kwargs)

    plan = audit.prepare_audit(cnn32, methods=METHODS, n_images=2, n_vectors=3,
                               time_budget=1e5)
    assert [c.ok for c in plan.checks] == [True, True, True]
    # DeepLIFT Resc.'s experiments now need more than the budget holds
    k = [c.spec.name for c in plan.checks].index("DeepLIFT Resc.")
    plan.checks[k] = replace(plan.checks[k], cost=replace(plan.checks[k].cost, csc_s=1e6))
    monkeypatch.setattr(audit, "check_method", failing)
    lines = []
    result = audit.run_audit(plan, tmp_path / "out", figures=False, report=lines.append)
    by_name = {c.spec.name: c for c in plan.checks}
    assert by_name["Gradient"].ok and by_name["Gradient"].final
    assert not by_name["LRP a1b0"].ok and "non-finite" in by_name["LRP a1b0"].reason
    assert not by_name["DeepLIFT Resc."].ok
    assert by_name["DeepLIFT Resc."].reason.startswith("dropped by --time-budget: its "
                                                       "experiments would take")
    assert [name for name, _ in plan.estimate.dropped] == ["DeepLIFT Resc."]
    assert "audit: LRP a1b0 not applicable: non-finite relevance at layer 'input'" in lines
    assert any(line.startswith("Gradient: done in ") and "peak memory" in line for line in lines)
    verdicts = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    assert set(verdicts["method"]) >= {"Gradient", "LRP a1b0", "DeepLIFT Resc."}
    row = verdicts.set_index("method").loc["LRP a1b0"]
    assert "non-finite" in " ".join(str(v) for v in row.values)
    assert result["verdicts"] is not None


def test_per_method_estimates_patterns_on_a_released_copy(cnn32, monkeypatch):
    """The pattern statistics are computed on a model copy in a graph of its
    own, released after; the patterns are the same as on the audit's model."""
    seen = []
    estimate = audit.estimate_audit_patterns

    def tracked(model, images):
        seen.append((weakref.ref(model), weakref.ref(model.inputs[0].graph)))
        return estimate(model, images)

    monkeypatch.setattr(audit, "estimate_audit_patterns", tracked)
    plan = audit.prepare_audit(cnn32, methods="Gradient,PatternNet", n_images=2, n_vectors=3)
    monkeypatch.undo()
    assert len(seen) == 1
    gc.collect()
    assert seen[0][0]() is None and seen[0][1]() is None
    assert plan.patterns is not None
    own = audit.estimate_audit_patterns(plan.network.model, plan.data.images)[0]
    assert set(own.patterns) == set(plan.patterns.patterns)
    for name, pattern in own.patterns.items():
        np.testing.assert_allclose(plan.patterns.patterns[name], pattern, rtol=1e-5, atol=1e-7)


def test_a_copy_built_in_a_graph_of_its_own_has_the_saved_weights():
    """ModelSource.build feeds the weights into the variables' initialisers:
    the copy predicts what the model predicts, including BatchNormalization's
    moving statistics (non-trainable variables)."""
    from tensorflow import keras

    from csc_analyzers.experiments.tasks import isolated_graph

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.BatchNormalization()(h)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0.5, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    expected = model.predict_on_batch(x)
    saved = model.get_weights()
    source = audit.ModelSource.of(model, "unused.keras", "net", (0.0, 1.0))
    with isolated_graph():
        copy = source.build().model
        np.testing.assert_array_equal(copy.predict_on_batch(x), expected)
        for mine, value in zip(copy.get_weights(), saved):
            np.testing.assert_array_equal(mine, value)
    # the fallback without a default session of the model's graph
    fresh = keras.Model.from_config(model.get_config())
    audit.assign_weights(fresh, saved)
    np.testing.assert_array_equal(fresh.predict_on_batch(x), expected)
    with pytest.raises(ValueError):
        audit.assign_weights(keras.Model.from_config(model.get_config()), saved[:-1])


def test_a_copy_of_a_softmax_model_is_built_from_its_logits_model():
    """ModelSource keeps the logits model: the copy ends before the softmax
    (a fused softmax replaced by a linear layer of the same name) without a
    second stripping, gives the audited network's logits, and the user's
    model still ends in its softmax."""
    from tensorflow import keras

    from csc_analyzers.experiments.tasks import isolated_graph
    from csc_analyzers.logits import ends_in_softmax

    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(4, activation="softmax", name="predictions")(
        keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    x = rng.normal(size=(3, 6, 6, 2)).astype("float32")
    network = audit.audit_network(model, "net", (0.0, 1.0))
    logits = network.model.predict_on_batch(x)
    source = audit.ModelSource.of(network.model, "unused.keras", "net", (0.0, 1.0))
    assert source.config["layers"][-1]["config"]["activation"] == "linear"
    assert source.config == audit.ModelSource.of(model, "unused.keras", "net",
                                                 (0.0, 1.0)).config
    with isolated_graph():
        copy = source.build()
        assert not ends_in_softmax(copy.model)
        assert copy.layers == network.layers and copy.csc_layers == network.csc_layers
        np.testing.assert_array_equal(copy.model.predict_on_batch(x), logits)
    assert ends_in_softmax(model)
    np.testing.assert_allclose(model.predict_on_batch(x).sum(axis=1), 1.0, rtol=1e-6)


def test_an_isolated_graph_runs_without_grappler_on_cpu_and_gives_the_same_maps():
    """session_config turns Grappler off on a machine without a GPU (on for
    a GPU); the maps and CSC relevances of a graph of its own equal those of
    a session with TensorFlow's default configuration up to float rounding."""
    import tensorflow as tf

    from csc_analyzers.experiments.csc import create_method_analyzer, unit_vectors
    from csc_analyzers.experiments.tasks import isolated_graph, session_config
    from csc_analyzers.registry import get_method
    from tensorflow import keras

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert session_config().graph_options.rewrite_options.disable_meta_optimizer == (not has_gpu)
    assert session_config().allow_soft_placement

    inp = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Conv2D(6, 3, activation="relu", name="c2")(h)
    out = keras.layers.Dense(5, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(2)
    model.set_weights([(rng.uniform(0.5, 1.5, v.shape) if "moving_variance" in v.name
                        else rng.normal(0.3, 0.4, v.shape)).astype("float32")
                       for v in model.weights])
    x = rng.uniform(0.0, 1.0, (2, 10, 10, 3)).astype("float32")
    source = audit.ModelSource.of(model, "unused.keras", "net", (0.0, 1.0))

    def results():
        network = source.build()
        out = {}
        for name in ("LRP z+", "DeepLIFT Resc.", "Gradient"):
            analyzer = create_method_analyzer(get_method(name), network)
            out[name, "map"] = analyzer.analyze(x, neuron_selection=[1, 3])
            logits = network.csc_layers[0]
            vectors = unit_vectors(0, 0, 0, 3, analyzer.relevance_shape(logits))
            out[name, "csc"] = analyzer.propagate(x[:1], vectors, logits, ["input"])["input"]
        return out

    with isolated_graph():
        isolated = results()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph).as_default():
        default = results()
    assert set(isolated) == set(default)
    for key, value in isolated.items():
        assert np.abs(value).max() > 0, key
        np.testing.assert_allclose(value, default[key], rtol=1e-5,
                                   atol=1e-6 * np.abs(default[key]).max(), err_msg=str(key))
