"""The audit's graph modes (``--graph``): ``per-method`` builds each method on
a copy of the model in a TensorFlow graph of its own and releases it after
the method, ``shared`` builds every analyzer once in one graph. Both give the
same result files; per-method keeps no analyzer or graph alive, and its
estimate counts each analyzer's second build."""
import gc
import weakref

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
    # one copy per method for its probe and one for its experiments, built from
    # the model's configuration (the file is read once)
    assert len(built) == 2 * len(plan.applicable) == 6
    assert len(loads) == 1
    gc.collect()
    assert all(model() is None and graph() is None for model, graph in built)
    # the analyzers never lived in the audit's own graph
    assert set(plan.network.analyzer_cache) <= {ANALYSIS_MODEL}
    assert plan.estimate.rebuild
    assert plan.estimate.experiments_s >= sum(c.build_s for c in plan.estimate.costs.values())
    assert "each method in a graph of its own" in plan.estimate.describe()

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
