"""Keras -> deeplift conversion: output equality, errors, graph growth, API."""
import numpy as np
import pytest

import csc_analyzers
from csc_analyzers.methods.deeplift_convert import UnsupportedLayerError
from csc_analyzers.methods.deeplift_wrapper import DeepLiftAnalyzer
from csc_analyzers.injection import session
from deeplift_nets import cifar_like_net, logits_of, separate_activations_net, small_resnet

from tensorflow import keras

NETS = {"cifar": cifar_like_net, "resnet": small_resnet, "activations": separate_activations_net}


def _inputs(model, n, seed):
    shape = (n,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


INNER = {"cifar": ["conv2", "pool1", "flatten", "fc6"],
         "resnet": ["pad", "bn1", "pool1", "block1_add", "block2_out", "gap"],
         "activations": ["conv1", "act1", "relu2", "avg", "act3"]}


@pytest.mark.parametrize("net", sorted(NETS))
def test_converted_model_outputs_keras_logits(net):
    model = NETS[net](seed=1)
    x = _inputs(model, 4, seed=2)
    analyzer = csc_analyzers.create_analyzer("deep_lift.wrapper", model)
    expected = logits_of(model, x)
    got = analyzer.predict(x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    names = INNER[net]
    ours = analyzer.forward(x, names)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    for name, keras_value in zip(names, probe.predict(x, verbose=0)):
        scale = np.abs(keras_value).max()
        assert np.abs(ours[name] - keras_value).max() <= 1e-4 * scale, name


def test_unsupported_layer_is_named_before_anything_is_built():
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inp)
    h = keras.layers.LayerNormalization(name="my_norm")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    graph = session().graph
    before = len(graph.get_operations())
    with pytest.raises(UnsupportedLayerError, match="'my_norm'.*LayerNormalization"):
        csc_analyzers.create_analyzer("deep_lift.wrapper", model)
    assert len(graph.get_operations()) == before


def test_unsupported_option_is_named():
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, dilation_rate=2, name="dilated")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    with pytest.raises(UnsupportedLayerError, match="'dilated'.*dilation_rate"):
        DeepLiftAnalyzer(model)


def test_repeated_analyses_do_not_grow_the_graph():
    model = cifar_like_net(seed=5)
    analyzer = csc_analyzers.create_analyzer(
        "deep_lift.wrapper", model, nonlinear_mode="reveal_cancel", reference=("blur", 1.0),
        neuron_selection_mode="index")
    x = _inputs(model, 2, seed=6)
    first = analyzer.analyze(x, neuron_selection=3)
    graph = session().graph
    count = len(graph.get_operations())
    v = np.random.default_rng(7).normal(size=(2, 10)).astype(np.float32)
    for i in range(50):
        result = analyzer.analyze(x, neuron_selection=i % 10)
        analyzer.propagate(x[:1], v, "fc7", ["input", "conv3"])
    assert len(graph.get_operations()) == count
    np.testing.assert_allclose(analyzer.analyze(x, neuron_selection=3), first, rtol=1e-6)
    assert result.shape == x.shape


def test_neuron_selection_modes_agree():
    model = separate_activations_net(seed=8)
    x = _inputs(model, 3, seed=9)
    top = logits_of(model, x).argmax(axis=1)
    indexed = DeepLiftAnalyzer(model, neuron_selection_mode="index")
    np.testing.assert_allclose(DeepLiftAnalyzer(model).analyze(x), indexed.analyze(x, top),
                               rtol=1e-5, atol=1e-7)
    all_at_once = DeepLiftAnalyzer(model, neuron_selection_mode="all").analyze(x)
    summed = sum(indexed.analyze(x, k) for k in range(5))
    np.testing.assert_allclose(all_at_once, summed, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="neuron_selection"):
        DeepLiftAnalyzer(model).analyze(x, neuron_selection=1)
    with pytest.raises(ValueError, match="neuron_selection"):
        indexed.analyze(x, neuron_selection=5)


def test_bad_arguments_are_named():
    model = separate_activations_net()
    with pytest.raises(ValueError, match="nonlinear_mode"):
        DeepLiftAnalyzer(model, nonlinear_mode="gradient")
    with pytest.raises(ValueError, match="reference"):
        DeepLiftAnalyzer(model, reference="mean")
    analyzer = DeepLiftAnalyzer(model)
    with pytest.raises(ValueError, match=r"x must have shape"):
        analyzer.analyze(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(KeyError, match="nope"):
        analyzer.propagate(np.zeros((1, 10, 10, 3)), np.zeros((1, 5)), "nope")
    with pytest.raises(ValueError, match="relevance for layer 'fc2'"):
        analyzer.propagate(np.zeros((1, 10, 10, 3)), np.zeros((1, 4)), "fc2")


def test_paper_configurations_run_through_the_registry(cnn, images):
    from csc_analyzers.registry import PAPER_METHODS
    specs = [s for s in PAPER_METHODS if s.analyzer == "deep_lift.wrapper"]
    assert [s.name for s in specs] == ["DeepLIFT Rev.C.", "DeepLIFT Resc.", "DeepLIFT Abla."]
    results = {}
    for spec in specs:
        analyzer = csc_analyzers.create_analyzer(spec.analyzer, cnn,
                                                 **spec.analyzer_kwargs((-3.0, 3.0)))
        results[spec.name] = analyzer.analyze(images)
        v = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
        out = analyzer.propagate(images[:1], v, "fc1", ["input", "conv1"])
        assert out["input"].shape == (5,) + images.shape[1:]
        assert out["conv1"].shape == (5, 6, 6, 4)
    assert not np.allclose(results["DeepLIFT Resc."], results["DeepLIFT Abla."])


@pytest.mark.parametrize("mode", ["rescale", "reveal_cancel"])
def test_kernel_parts_are_built_once_per_dense_layer(mode):
    """A run reading every layer computes W+ and W- of a Dense kernel once
    (each would be a weight-sized temporary: 411 MB for VGG-16's fc1)."""
    from residual_support.deeplift_layers import Dense

    model = cifar_like_net(seed=8)
    analyzer = DeepLiftAnalyzer(model, nonlinear_mode=mode, neuron_selection_mode="index")
    x = _inputs(model, 1, seed=9)
    v = np.random.default_rng(10).normal(size=(2, 10)).astype(np.float32)
    layers = [name for name in analyzer.injection_layers() if name != "fc7"]
    analyzer.propagate(x, v, "fc7", layers)
    dense = [node for node in analyzer.graph_model.get_name_to_layer().values()
             if isinstance(node, Dense)]
    assert dense
    ops = session().graph.get_operations()
    for node in dense:
        handle = node.kernel_weight.variable.handle
        reads = [op.outputs[0] for op in ops
                 if op.type == "ReadVariableOp" and op.inputs[0] is handle]
        consumers = [c.type for read in reads for c in read.consumers()]
        assert consumers.count("Relu") == 1 and consumers.count("Minimum") == 1, consumers
        assert "Mul" not in consumers, consumers
