"""Gradient-averaging methods (SmoothGrad, Integrated Gradients) follow the
in-place randomisation of the sanity check without rebuilding their graph."""
import numpy as np

from conftest import small_cnn
from csc_analyzers.experiments.common import ModelNetwork, analysis_model, build_analyzer
from csc_analyzers.experiments.randomization import Randomizer
from csc_analyzers.experiments.sanity import run_sanity, weight_sync
from csc_analyzers.registry import get_method


def test_gradient_averages_read_the_models_variables(images, tmp_path):
    network = ModelNetwork(name="tiny", model=small_cnn(softmax=True), input_range=(-3.0, 3.0))
    specs = [get_method("SmoothGrad"), get_method("Integrated Gradients")]
    before = [w.copy() for w in network.model.get_weights()]
    store = run_sanity(network, images, np.array([0, 1]), [0, 1], specs, tmp_path)
    assert len(store.table()) == 2 * 2 * len(network.sanity_layers) * 4
    assert all(np.array_equal(a, b) for a, b in zip(before, network.model.get_weights()))
    model = analysis_model(network)
    analyzer = build_analyzer(specs[0], model, network)
    original = analyzer.analyze(images[:1], neuron_selection=[0])
    sync = weight_sync(analyzer, specs[0].name, model)
    with Randomizer(model, seed=0) as randomizer:
        randomizer.set_randomized([layer.name for layer in model.layers if layer.weights])
        sync()
        changed = analyzer.analyze(images[:1], neuron_selection=[0])
    assert not np.allclose(original, changed)
