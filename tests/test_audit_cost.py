"""The audit's cost estimate, time budget, progress, per-method warnings and
its command line checked before TensorFlow is imported."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tensorflow import keras

from csc_analyzers.audit import checks as audit_checks, run as audit
from csc_analyzers.audit.checks import MethodCost, check_method
from csc_analyzers.audit.cost import Progress, predict_cost, predict_peak
from csc_analyzers.registry import ALL_METHODS, get_method

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "audit.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV,
                          capture_output=True, text=True, timeout=120)


# -- command line ---------------------------------------------------------------------

def test_methods_comma_says_no_method_was_given(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "m.keras"),
                             "--methods", ","], env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "argument --methods: ',': no method given" in result.stderr
    assert "Traceback" not in result.stderr


def test_parser_module_does_not_import_tensorflow():
    result = _python(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("audit_cli", {str(SCRIPT)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = module.parse_args(["m.keras", "--methods", "Gradient, LRP-z",
                                  "--time-budget", "20m", "--n-vectors", "3"])
        print(args.methods, args.time_budget, args.n_vectors)
        for bad in (["m.keras", "--methods", "Gradient,LRP-q"], ["m.keras", "--n-vectors", "1"],
                    ["m.keras", "--time-budget", "soon"], ["m.keras", "--methods", " , "]):
            try:
                module.parse_args(bad)
            except SystemExit as stop:
                print("EXIT", stop.code)
        print("TF", "tensorflow" in sys.modules, "csc_analyzers" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "Gradient,LRP-z 1200.0 3"
    assert lines[1:5] == ["EXIT 2"] * 4
    assert lines[5] == "TF False False"
    assert "unknown method 'LRP-q'; valid names: all, extra, GuidedBP" in result.stderr
    assert "--n-vectors: invalid positive_int" not in result.stderr
    assert "1: must be >= 2" in result.stderr
    assert "'soon': give a positive duration" in result.stderr


def _script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("audit_script_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_choices_equal_the_package_ones():
    script = _script()
    assert script.PREPROCESSING == audit.PREPROCESSING
    assert script.GRAPH_MODES == audit.GRAPH_MODES
    assert script.method_names() == [spec.name for spec in ALL_METHODS]
    assert [script.duration(t) for t in ("90", "90s", "2m", "1.5h")] == [90, 90, 120, 5400]


# -- estimate and budget -------------------------------------------------------------

def relu_cnn(activation="relu", seed=0, depth=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation=activation, name="conv1")(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    for k in range(depth):
        h = keras.layers.Dense(16, activation="relu", name=f"fc{k}")(h)
    out = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inp, out, name=f"net_{activation}")
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def plan_data(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, 8, 8, 3)).astype(np.float32)
    raw = (images * 255).astype(np.uint8)
    return audit.AuditData(raw, images, [str(i) for i in range(n)], source="test")


def test_probe_measures_each_method(rng):
    network = audit.audit_network(relu_cnn(), "net", (0.0, 1.0))
    data = plan_data(network.model)
    specs = [get_method("Gradient"), get_method("SmoothGrad")]
    checks, estimate = audit.check_and_probe(specs, network, data, patterns=None, table=None,
                                             seed=0, n_vectors=3, started=time.time())
    assert [c.ok for c in checks] == [True, True]
    gradient, smooth = estimate.costs["Gradient"], estimate.costs["SmoothGrad"]
    assert gradient.csc_s > 0 and smooth.csc_s == 0  # SmoothGrad is left out of CSC
    assert gradient.maps_per_image == 3  # random logit 2, sanity 1 (original shared), no composites
    assert smooth.map_s > 0 and gradient.map_s > 0
    assert estimate.total_s == pytest.approx(estimate.elapsed_s + estimate.experiments_s
                                             + estimate.report_s)
    assert estimate.fixed_s > 0  # the sanity check copies the weights out
    # the check computes the first image's CSC unit: three more per method
    assert gradient.run_s(4) == pytest.approx(4 * gradient.per_image_s - gradient.csc_s)
    assert estimate.experiments_s == pytest.approx(estimate.fixed_s + 4 * (
        gradient.per_image_s + smooth.per_image_s) - gradient.csc_s)
    assert estimate.rss_bytes > 50 * 2**20
    text = estimate.describe()
    assert "Gradient: analyzer" in text and "peak memory" in text


def test_time_budget_drops_what_does_not_fit(monkeypatch):
    """Fixed per-image costs: Gradient 1 s, LRP-z 100 s, LRP a1b0 1 s; 4 images
    (the first image's CSC unit is the check's) and a 60 s budget keep
    Gradient and LRP a1b0 and drop LRP-z, naming it."""
    per_image = {"Gradient": 1.0, "LRP-z": 100.0, "LRP a1b0": 1.0}

    def fixed(spec, *args, **kwargs):
        return MethodCost(build_s=0.1, csc_s=per_image[spec.name], map_s=0.0,
                          maps_per_image=2, rss_bytes=1)

    monkeypatch.setattr(audit_checks, "probe_cost", fixed)
    network = audit.audit_network(relu_cnn(), "net", (0.0, 1.0))
    data = plan_data(network.model)
    specs = [get_method(name) for name in per_image]
    lines = []
    checks, estimate = audit.check_and_probe(specs, network, data, patterns=None, table=None,
                                             seed=0, n_vectors=2,
                                             started=time.time(),
                                             time_budget=60.0, report=lines.append)
    assert [c.ok for c in checks] == [True, False, True]
    assert checks[1].reason == "dropped by --time-budget"
    assert list(estimate.costs) == ["Gradient", "LRP a1b0"]
    assert estimate.dropped[0][0] == "LRP-z"
    assert "its experiments would take ~300 s" in estimate.dropped[0][1]
    assert "dropped LRP-z (its experiments would take ~300 s" in estimate.describe()
    assert "LRP-z" not in network.analyzer_cache and "Gradient" in network.analyzer_cache
    assert len(lines) == 3 and lines[1].startswith("[2/3] LRP-z: not applicable")


def test_predicted_cost_scales_the_measured_one():
    """A method's predicted cost is the reference's measured cost times the
    ratio of their registry relative costs, part by part."""
    gradient, ig, smooth = (get_method(n) for n in ("Gradient", "Integrated Gradients",
                                                    "SmoothGrad"))
    measured = MethodCost(build_s=10.0, csc_s=1.0, map_s=0.5, maps_per_image=4,
                          rss_bytes=3 * 2**30)
    cost = predict_cost(ig, gradient, measured, sanity=True, composites=True)
    assert cost.build_s == pytest.approx(10.0 * ig.cost.build)
    assert cost.csc_s == pytest.approx(1.0 * ig.cost.csc)
    assert cost.map_s == pytest.approx(0.5 * ig.cost.map)
    assert cost.maps_per_image == 5 and cost.predicted_from == "Gradient"
    assert predict_cost(smooth, gradient, measured, sanity=False, composites=False).csc_s == 0
    # measured on IG, predicted for Gradient: the inverse ratio
    back = predict_cost(gradient, ig, cost, sanity=True, composites=True)
    assert back.build_s == pytest.approx(10.0) and back.map_s == pytest.approx(0.5)
    # the peak: the base plus the heaviest method's growth
    base, peak = 1 * 2**30, 2 * 2**30
    assert predict_peak([gradient], gradient, base, peak) == peak
    assert predict_peak([gradient, ig], gradient, base, peak) == pytest.approx(
        base + 2**30 * ig.cost.memory, rel=1e-9)
    assert ig.cost.memory > 1.0  # IG's chunks of averaged inputs need more than Gradient


def test_per_method_measures_gradient_and_predicts_the_others():
    """check_and_predict builds only the reference (Gradient, even when not
    first), checks the rest without a graph build, predicts their costs and
    drops what the budget cannot hold."""
    model = relu_cnn()
    network = audit.audit_network(model, "net", (0.0, 1.0))
    data = plan_data(model)
    source = audit.ModelSource.of(model, "unused.keras", "net", (0.0, 1.0))
    specs = [get_method(name) for name in ("LRP a1b0", "Gradient", "SmoothGrad")]
    lines = []
    checks, estimate = audit.check_and_predict(specs, source, network, data, patterns=None,
                                               table=None, seed=0, n_vectors=3,
                                               started=time.time(), report=lines.append)
    assert [c.ok for c in checks] == [True, True, True]
    assert not any(c.final for c in checks)  # completed when each method runs
    assert estimate.reference == "Gradient" and estimate.rebuild
    assert lines == [lines[0]] and lines[0].startswith("Gradient: measured: analyzer")
    measured = estimate.costs["Gradient"]
    assert measured.predicted_from == "" and measured.build_s > 0
    for name in ("LRP a1b0", "SmoothGrad"):
        assert estimate.costs[name].predicted_from == "Gradient"
    assert estimate.costs["LRP a1b0"].build_s == pytest.approx(
        measured.build_s * get_method("LRP a1b0").cost.build)
    # nothing was built in the audit's own graph
    assert not network.analyzer_cache
    # a budget that holds Gradient's experiments but not the predicted LRP a1b0's
    need = measured.build_s + measured.run_s(4)
    _, tight = audit.check_and_predict(specs[1:2] + specs[:1], source, network, data,
                                       patterns=None, table=None, seed=0, n_vectors=3,
                                       started=time.time(),
                                       time_budget=need * 1.2 + audit.REPORT_S + 10.0)
    assert list(tight.costs) in (["Gradient"], ["Gradient", "LRP a1b0"])


def test_per_method_refuses_before_the_estimate_what_a_constructor_refuses():
    """innvestigate's GuidedBP refuses a swish network in its constructor: the
    refusal comes before the estimate (a final check, no predicted cost)."""
    model = relu_cnn(activation="swish")
    network = audit.audit_network(model, "net", (0.0, 1.0))
    source = audit.ModelSource.of(model, "unused.keras", "net", (0.0, 1.0))
    specs = [get_method(name) for name in ("GuidedBP", "Gradient")]
    checks, estimate = audit.check_and_predict(specs, source, network, plan_data(model),
                                               patterns=None, table=None, seed=0,
                                               n_vectors=3, started=time.time())
    assert not checks[0].ok and checks[0].final
    assert "only specified for networks with ReLU activations" in checks[0].reason
    assert "conv1" in checks[0].layers
    assert list(estimate.costs) == ["Gradient"]


def test_per_method_reference_falls_back_when_it_fails(monkeypatch):
    """Gradient failing when built makes it not applicable and the next
    method the measured reference."""
    original = audit.check_method

    def failing(spec, *args, **kwargs):
        if spec.name == "Gradient":
            return audit.MethodCheck(spec, False, "non-finite relevance at layer 'input'")
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(audit, "check_method", failing)
    model = relu_cnn()
    network = audit.audit_network(model, "net", (0.0, 1.0))
    source = audit.ModelSource.of(model, "unused.keras", "net", (0.0, 1.0))
    specs = [get_method(name) for name in ("SmoothGrad", "Gradient", "LRP-z")]
    checks, estimate = audit.check_and_predict(specs, source, network, plan_data(model),
                                               patterns=None, table=None, seed=0,
                                               n_vectors=3, started=time.time())
    assert [c.ok for c in checks] == [True, False, True]
    assert checks[1].final and "non-finite" in checks[1].reason
    # SmoothGrad is left out of CSC, so LRP-z is measured before it
    assert estimate.reference == "LRP-z"
    assert estimate.costs["SmoothGrad"].predicted_from == "LRP-z"


def test_progress_extrapolates_from_weighted_units():
    lines = []
    bar = Progress({"csc": [1.0, 1.0], "random_logit": [2.0, 2.0]}, every=0.0,
                   write=lines.append)
    for experiment in ("csc", "csc", "random_logit", "random_logit"):
        bar.unit(experiment)()
    assert [line.split(",")[0] for line in lines] == [f"progress: {k}/4 units"
                                                       for k in range(1, 5)]
    assert lines[-1].endswith("~0 s left")
    assert bar.done_w == pytest.approx(6.0)


# -- warnings -------------------------------------------------------------------------

def test_relu_warnings_shown_for_tanh_network(rng):
    network = audit.audit_network(relu_cnn("tanh"), "tanh_net", (0.0, 1.0))
    image = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    ab = check_method(get_method("LRP a1b0"), network, image)
    grad = check_method(get_method("Gradient"), network, image)
    assert ab.ok and grad.ok
    assert any("the paper's analysis assumes ReLU networks" in w and "'conv1' (tanh)" in w
               for w in ab.warnings)
    assert not grad.warnings


def test_explosion_warning_in_audit_check(rng, monkeypatch):
    from csc_analyzers import model_input

    network = audit.audit_network(relu_cnn(depth=6, seed=3), "deep", (0.0, 1.0))
    image = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    monkeypatch.setattr(model_input, "EXPLOSION_BOUND", 10.0)
    a5b4 = check_method(get_method("LRP a5b4"), network, image)
    assert a5b4.ok
    notes = [w for w in a5b4.warnings if w.startswith("relevance explodes")]
    assert len(notes) == 1 and "(bound 10)" in notes[0] and "first exceeds the bound at layer" \
        in notes[0]


@pytest.mark.parametrize("name", ["LRP a5b4", "Integrated Gradients", "DeepLIFT Resc."])
def test_check_measures_the_growth_as_relevance_growth_does(name, rng, monkeypatch):
    """The check's growth warning equals a separate relevance_growth call.
    Integrated Gradients' growth reads the input only, one of the check's
    layers: its seed rides in the check's one propagation as one more vector
    (the separate call cost 14 s on ResNet50V2 at 224 px). The others' growth reads every
    layer: it runs on its own in batch 1, and the check's propagation reads
    only the check's layers."""
    from csc_analyzers import model_input

    network = audit.audit_network(relu_cnn(depth=6, seed=3), "deep", (0.0, 1.0))
    image = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    monkeypatch.setattr(model_input, "EXPLOSION_BOUND", 10.0)
    calls, built = [], []
    create = audit_checks.create_method_analyzer

    def counted(*args, **kwargs):
        analyzer = create(*args, **kwargs)
        built.append(analyzer)
        propagate = type(analyzer).propagate
        analyzer.propagate = lambda x, v, f, to, **k: calls.append((len(v), list(to))) or \
            propagate(analyzer, x, v, f, to, **k)
        return analyzer

    monkeypatch.setattr(audit_checks, "create_method_analyzer", counted)
    check = check_method(get_method(name), network, image)
    assert check.ok
    lower = list(network.layers[:-1])
    if name == "Integrated Gradients":
        assert calls == [(3, lower)]
    else:
        assert calls[0] == (2, lower) and len(calls) == 2 and calls[1][0] == 1
        assert set(calls[1][1]) > set(lower)
    analyzer = built[0]
    del analyzer.propagate
    target = int(np.argmax(network.model.predict_on_batch(image[None])[0]))
    ratios, first = model_input.relevance_growth(analyzer, image[None], target=target,
                                                 bound=10.0)
    explodes = [w for w in check.warnings if w.startswith("relevance explodes")]
    if first is None:
        assert not explodes
    else:
        assert explodes == [model_input.explosion_message(ratios, first, 10.0)]
    if name == "LRP a5b4":
        assert first is not None  # the case that names a layer is covered
    if name == "Integrated Gradients":
        assert list(ratios) == ["input", network.csc_layers[0]]


def test_check_of_a_method_left_out_of_csc_explains_a_map(rng, monkeypatch):
    """SmoothGrad is left out of CSC: its check explains the predicted class
    (its experiments use maps only) instead of propagating to every layer,
    and a non-finite map still makes it not applicable."""
    network = audit.audit_network(relu_cnn(depth=3, seed=1), "net", (0.0, 1.0))
    image = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    calls, built = [], []
    create = audit_checks.create_method_analyzer

    def counted(*args, **kwargs):
        analyzer = create(*args, **kwargs)
        built.append(analyzer)
        propagate, analyze = type(analyzer).propagate, type(analyzer).analyze
        analyzer.propagate = lambda *a, **k: calls.append("propagate") or propagate(
            analyzer, *a, **k)
        analyzer.analyze = lambda *a, **k: calls.append("analyze") or analyze(analyzer, *a, **k)
        return analyzer

    monkeypatch.setattr(audit_checks, "create_method_analyzer", counted)
    smooth = check_method(get_method("SmoothGrad"), network, image)
    assert smooth.ok and calls == ["analyze"]
    calls.clear()
    assert check_method(get_method("Gradient"), network, image).ok
    assert calls == ["propagate"]

    network = audit.audit_network(relu_cnn(depth=3, seed=1), "net", (0.0, 1.0))
    built.clear()

    def nan_maps(*args, **kwargs):
        analyzer = create(*args, **kwargs)
        analyzer.analyze = lambda x, **k: np.full(np.shape(x), np.nan, np.float32)
        return analyzer

    monkeypatch.setattr(audit_checks, "create_method_analyzer", nan_maps)
    broken = check_method(get_method("SmoothGrad"), network, image)
    assert not broken.ok and broken.reason == "non-finite relevance at layer 'input'"


@pytest.mark.parametrize("name", ["LRP-z", "Integrated Gradients", "DeepLIFT Resc."])
def test_check_computes_the_first_images_csc_unit(name, rng, tmp_path, monkeypatch):
    """With n_vectors, the check propagates the CSC unit's own vectors and
    returns its rows: equal to the unit CSC computes, and stored by run_csc
    as given (one propagation fewer per method). Integrated Gradients'
    growth seed rides as one more vector without changing the unit."""
    from csc_analyzers.experiments.csc import make_plan, run_csc, unit_rows
    from csc_analyzers.experiments.store import ResultStore

    network = audit.audit_network(relu_cnn(depth=2, seed=5), "net", (0.0, 1.0))
    images = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    spec = get_method(name)
    check = check_method(spec, network, images[0], seed=7, n_vectors=3, image_id=0)
    assert check.ok and check.csc_unit
    plan = make_plan(network, [spec])
    analyzer = audit_checks.create_method_analyzer(spec, network)
    alone = unit_rows(analyzer, images[:1], network, plan, image_id=0, method=spec.name,
                      n_vectors=3, seed=7, exact_max_dim=0)
    assert list(check.csc_unit) == alone
    # no unit computed twice: image 0 comes from the check, image 1 from CSC
    calls = []
    propagate = type(analyzer).propagate
    monkeypatch.setattr(type(analyzer), "propagate",
                        lambda self, x, *a, **k: calls.append(len(x)) or propagate(self, x, *a,
                                                                                   **k))
    given = run_csc(network, [spec], images, out_dir=tmp_path / "given", n_vectors=3, seed=7,
                    exact_max_dim=0, computed={(spec.name, 0): list(check.csc_unit)})
    assert len(calls) == 1
    fresh = run_csc(network, [spec], images, out_dir=tmp_path / "fresh", n_vectors=3, seed=7,
                    exact_max_dim=0)
    assert len(calls) == 3
    for part in ("table", "histograms"):
        assert given[part].equals(fresh[part])
    raw = [ResultStore(tmp_path / d, "csc").table() for d in ("given", "fresh")]
    assert raw[0].equals(raw[1])


def test_check_with_known_logits_runs_no_forward_pass(rng, monkeypatch):
    """Given the image's logits (the audit's data), the check of a method
    whose growth is measured makes the same warnings without running the
    model's forward graph (a new graph's first run: ~1.5 s on ResNet50V2)."""
    from csc_analyzers import model_input

    network = audit.audit_network(relu_cnn(depth=6, seed=3), "deep", (0.0, 1.0))
    image = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    logits = network.model.predict_on_batch(image[None])[0]
    monkeypatch.setattr(model_input, "EXPLOSION_BOUND", 10.0)
    spec = get_method("LRP a5b4")
    expected = check_method(spec, network, image, n_vectors=3)
    assert any(w.startswith("relevance explodes") for w in expected.warnings)
    forward = []
    owner = next(k for k in type(network.model).__mro__ if "predict_on_batch" in vars(k))
    predict = owner.predict_on_batch

    def counted(self, *args, **kwargs):
        forward.append(self.name)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(owner, "predict_on_batch", counted)
    known = check_method(spec, network, image, n_vectors=3, image_logits=logits)
    assert not forward
    assert known.warnings == expected.warnings and known.csc_unit == expected.csc_unit
    assert list(known.csc_unit) == list(expected.csc_unit)
