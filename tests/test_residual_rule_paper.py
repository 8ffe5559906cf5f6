"""``residual_rule="paper"``: the analyzer's own rule through Add and BN and
innvestigate's z-rule through average pooling, as the paper's code
(``monkey_patch_lrp_resnet.py`` replaced only the Add and BN reverse layers).

On the small ResNet both pooling layers (average pooling, then global average
pooling) sit after the last block's ReLU, so every contribution there is
non-negative: an alpha-beta rule passes alpha times what the z-rule passes,
and everything below is linear in the relevance. The ``"analyzer"`` map is
therefore exactly alpha**2 times the ``"paper"`` map."""
import numpy as np
import pytest

import csc_analyzers
from residual_nets import small_resnet

CASES = [("lrp.alpha_1_beta_0", {}, 1.0), ("lrp.alpha_2_beta_1", {}, 2.0),
         ("lrp.alpha_beta", {"alpha": 5, "beta": 4}, 5.0)]


@pytest.fixture
def net():
    model = small_resnet(seed=0)
    x = np.random.default_rng(7).normal(size=(2, 12, 12, 3)).astype("float32")
    return model, x


@pytest.mark.parametrize("name,kwargs,alpha", CASES)
def test_paper_rule_is_the_analyzer_rule_with_z_through_pooling(net, name, kwargs, alpha):
    model, x = net
    maps = {rule: csc_analyzers.create_analyzer(name, model, residual_rule=rule, **kwargs)
            .analyze(x).astype(np.float64) for rule in ("analyzer", "paper")}
    assert np.abs(maps["paper"]).max() > 0
    np.testing.assert_allclose(maps["analyzer"], alpha ** 2 * maps["paper"],
                               rtol=2e-4, atol=1e-6 * np.abs(maps["analyzer"]).max())


def test_paper_rule_is_recorded_and_named_in_errors(net):
    model, _ = net
    analyzer = csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model,
                                             residual_rule="paper")
    assert analyzer._residual_rule == "paper"
    with pytest.raises(ValueError, match="'paper': the analyzer's own rule through Add and BN"):
        csc_analyzers.create_analyzer("lrp.alpha_2_beta_1", model, residual_rule="zennit")
