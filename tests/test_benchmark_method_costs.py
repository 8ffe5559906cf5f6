"""scripts/benchmark_method_costs.py: the registry's relative costs are the
geometric mean over models of each method's measured cost over Gradient's."""
import math

import numpy as np
import pytest
from audit_models import save_in_subprocess
from PIL import Image
from script_loader import load_script

from csc_analyzers.registry import get_method

bench = load_script("benchmark_method_costs")


def test_relative_costs_are_geometric_means_over_models():
    measured = {
        "a": {"Gradient": {"build_s": 10.0, "csc_s": 1.0, "map_s": 0.5, "memory_gib": 1.0},
              "IG": {"build_s": 40.0, "csc_s": 20.0, "map_s": 10.0, "memory_gib": 2.0}},
        "b": {"Gradient": {"build_s": 20.0, "csc_s": 2.0, "map_s": 1.0, "memory_gib": 2.0},
              "IG": {"build_s": 20.0, "csc_s": 10.0, "map_s": 40.0, "memory_gib": 8.0},
              "X": {"error": "not applicable"}},
    }
    relative = bench.relative_costs(measured)
    assert relative["IG"]["build_s"] == pytest.approx(math.sqrt(4.0 * 1.0))
    assert relative["IG"]["csc_s"] == pytest.approx(math.sqrt(20.0 * 5.0))
    assert relative["IG"]["map_s"] == pytest.approx(math.sqrt(20.0 * 40.0))
    assert relative["IG"]["memory_gib"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert relative["Gradient"]["build_s"] == pytest.approx(1.0)
    assert relative["X"] == {"build_s": None, "csc_s": None, "map_s": None,
                             "memory_gib": None}


def test_measures_each_method_alone(tmp_path):
    path = save_in_subprocess(tmp_path) / "cnn32.keras"
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / "a.png")
    specs = [get_method(name) for name in ("Gradient", "LRP-z", "SmoothGrad")]
    found = bench.measure_model(path, images, "unit", specs, n_vectors=3, seed=0)
    assert list(found) == ["Gradient", "LRP-z", "SmoothGrad"]
    for name, row in found.items():
        assert row["build_s"] > 0 and row["map_s"] > 0 and row["memory_gib"] >= 0, name
    assert found["SmoothGrad"]["csc_s"] == 0 and found["LRP-z"]["csc_s"] > 0
