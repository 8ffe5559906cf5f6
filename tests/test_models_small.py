"""The paper's CIFAR net and the small ResNet: architecture, names, shapes."""
import numpy as np
import pytest
from tensorflow.keras import layers as klayers

from csc_analyzers.injection import LayerNames
from csc_analyzers.models import cifar_net, load_network, small_resnet

PAPER_CIFAR_NET = [
    # name, layer class, output shape (without batch), parameters
    ("input", klayers.InputLayer, (32, 32, 3), 0),
    ("conv1", klayers.Conv2D, (32, 32, 32), 3 * 3 * 3 * 32 + 32),
    ("relu1", klayers.Activation, (32, 32, 32), 0),
    ("conv2", klayers.Conv2D, (32, 32, 64), 3 * 3 * 32 * 64 + 64),
    ("relu2", klayers.Activation, (32, 32, 64), 0),
    ("pool2", klayers.MaxPooling2D, (16, 16, 64), 0),
    ("conv3", klayers.Conv2D, (16, 16, 128), 3 * 3 * 64 * 128 + 128),
    ("relu3", klayers.Activation, (16, 16, 128), 0),
    ("conv4", klayers.Conv2D, (16, 16, 128), 3 * 3 * 128 * 128 + 128),
    ("relu4", klayers.Activation, (16, 16, 128), 0),
    ("pool4", klayers.MaxPooling2D, (8, 8, 128), 0),
    ("flatten", klayers.Flatten, (8192,), 0),
    ("dropout5", klayers.Dropout, (8192,), 0),
    ("fc5", klayers.Dense, (1024,), 8192 * 1024 + 1024),
    ("relu5", klayers.Activation, (1024,), 0),
    ("dropout6", klayers.Dropout, (1024,), 0),
    ("fc6", klayers.Dense, (10,), 1024 * 10 + 10),
    ("softmax", klayers.Activation, (10,), 0),
]


def test_cifar_net_is_the_papers_architecture():
    model = cifar_net.build()
    assert [layer.name for layer in model.layers] == [row[0] for row in PAPER_CIFAR_NET]
    for layer, (name, cls, shape, params) in zip(model.layers, PAPER_CIFAR_NET):
        assert isinstance(layer, cls), name
        out = layer.output_shape[0] if isinstance(layer.output_shape, list) else layer.output_shape
        assert tuple(out[1:]) == shape, name
        assert layer.count_params() == params, name
    assert model.count_params() == sum(row[3] for row in PAPER_CIFAR_NET) == 8_640_714
    for i in range(1, 5):
        conv = model.get_layer(f"conv{i}")
        assert conv.kernel_size == (3, 3) and conv.padding == "same"
        assert conv.activation.__name__ == "linear"
        assert model.get_layer(f"relu{i}").activation.__name__ == "relu"
    assert model.get_layer("dropout5").rate == 0.5 and model.get_layer("dropout6").rate == 0.5
    assert model.get_layer("softmax").activation.__name__ == "softmax"
    assert tuple(cifar_net.LAYERS) == tuple(row[0] for row in PAPER_CIFAR_NET[:-1])


def test_cifar_net_relu_layers_compute_relu(rng):
    from tensorflow import keras

    model = cifar_net.build()
    probe = keras.Model(model.input, [model.get_layer("conv2").output,
                                      model.get_layer("relu2").output])
    pre, post = probe.predict(rng.uniform(size=(2, 32, 32, 3)).astype("float32"), verbose=0)
    np.testing.assert_allclose(post, np.maximum(pre, 0), atol=1e-6)


def _consumers(model, layer):
    return [node.outbound_layer for node in layer._outbound_nodes
            if node.outbound_layer in model.layers]


def test_small_resnet_structure():
    model = small_resnet.build()
    convs = [layer for layer in model.layers if isinstance(layer, klayers.Conv2D)]
    for conv in convs:  # BatchNormalization after every convolution
        consumers = _consumers(model, conv)
        assert len(consumers) == 1 and isinstance(consumers[0], klayers.BatchNormalization)
    adds = [layer for layer in model.layers if isinstance(layer, klayers.Add)]
    assert len(adds) == len(small_resnet.WIDTHS) * small_resnet.BLOCKS_PER_STAGE
    for add in adds:  # Add then ReLU
        (after,) = _consumers(model, add)
        assert isinstance(after, klayers.Activation) and after.activation.__name__ == "relu"
    projections = [c for c in convs if c.name.endswith("s")]
    assert len(projections) == len(small_resnet.WIDTHS) - 1  # stage 2 keeps identity
    identity = [add for add in adds
                if not any(isinstance(node.inbound_layers, list)
                           and any(isinstance(src, klayers.BatchNormalization)
                                   and src.name.endswith("s_bn")
                                   for src in node.inbound_layers)
                           for node in add._inbound_nodes)]
    assert len(identity) == len(adds) - len(projections)
    assert isinstance(model.get_layer("avgpool"), klayers.GlobalAveragePooling2D)
    assert isinstance(model.get_layer("dense"), klayers.Dense)
    assert model.layers[-1].activation.__name__ == "softmax"
    assert len(small_resnet.WIDTHS) >= 3


@pytest.mark.parametrize("name", ["cifar-net", "small-resnet"])
def test_random_small_networks_resolve_every_friendly_name(name):
    net = load_network(name, weights=None)
    assert net.weights == "random"
    assert net.model._csc_layer_aliases == net.aliases
    names = LayerNames(net.model)
    for friendly in set(net.layers) | set(net.csc_layers) | set(net.sanity_layers):
        resolved = names.resolve(friendly)
        assert resolved == "input" or net.model.get_layer(resolved) is not None
    assert net.layers[0] == "input"
    assert net.layers[-1] in ("fc6", "dense")
    assert net.n_classes == len(net.class_names) == 10
    assert net.input_range == (0.0, 1.0)
    x = net.preprocess(np.full((1, 32, 32, 3), 255, np.uint8))
    assert x.dtype == np.float32 and x.max() == 1.0
    if name == "cifar-net":
        assert net.csc_layers == ("fc6", "fc5", "conv4", "conv3", "conv2")
    else:
        assert net.layer("block4_2").name == "block4_2_out"


def test_unknown_network_and_missing_weights_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown network"):
        load_network("alexnet")
    with pytest.raises(FileNotFoundError, match="no cached weights"):
        load_network("cifar-net", cache_dir=tmp_path, train_if_missing=False)
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        load_network("small-resnet", weights=str(tmp_path / "nothere.h5"))
