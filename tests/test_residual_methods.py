"""Every LRP / Deep Taylor / gradient-type method runs on a small ResNet with
BatchNormalization, Add, separate ReLU layers, padding, pooling and dropout."""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.registry import ALL_METHODS
from residual_nets import small_resnet

pytestmark = pytest.mark.slow

SMALL_KWARGS = {"smoothgrad": {"augment_by_n": 4}, "integrated_gradients": {"steps": 4},
                "smoothgrad.seeded": {"augment_by_n": 4, "noise_scale": 0.3, "seed": 0},
                "deep_taylor.bounded": {"low": -3.0, "high": 3.0}}
INNVESTIGATE = ["gradient", "guided_backprop", "deconvnet", "smoothgrad",
                "integrated_gradients", "deep_taylor", "deep_taylor.bounded", "lrp.z",
                "lrp.epsilon", "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.z_plus",
                "lrp.z_plus_fast", "lrp.sequential_preset_a"]


def _cases():
    """(analyzer key, kwargs): innvestigate's names and the registry's methods
    that exist now, other than pattern and DeepLIFT methods (own issues)."""
    cases = {name: SMALL_KWARGS.get(name, {}) for name in INNVESTIGATE}
    cases["lrp.alpha_beta"] = {"alpha": 5, "beta": 4}
    for spec in ALL_METHODS:
        if spec.needs_patterns or spec.analyzer.startswith("deep_lift"):
            continue
        if spec.analyzer in csc_analyzers.analyzers and spec.analyzer not in cases:
            kwargs = dict(spec.analyzer_kwargs((-3.0, 3.0)))
            kwargs.update(SMALL_KWARGS.get(spec.analyzer, {}))
            cases[spec.analyzer] = kwargs
    return sorted(cases.items())


# one analyzer per rule family runs by default; the others are marked heavy
DEFAULT = {"gradient", "guided_backprop", "smoothgrad.seeded", "deep_taylor.bounded", "lrp.z",
           "lrp.alpha_1_beta_0", "lrp.alpha_beta", "lrp.cmp_alpha_1_beta_0", "rectgrad"}


@pytest.mark.parametrize("name,kwargs", [
    pytest.param(*case, id=case[0], marks=() if case[0] in DEFAULT else pytest.mark.heavy)
    for case in _cases()])
def test_method_runs_on_small_resnet(name, kwargs):
    model = small_resnet(seed=2)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    result = csc_analyzers.create_analyzer(name, model, **kwargs).analyze(x)
    assert result.shape == x.shape
    assert np.all(np.isfinite(result)) and np.abs(result).sum() > 0
