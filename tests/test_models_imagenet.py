"""VGG-16 and ResNet-50: random-weight builds, the paper's layer names, preprocessing,
and the offline error for missing ImageNet weights."""
import numpy as np
import pytest
from tensorflow.keras import layers as klayers

from csc_analyzers.injection import LayerNames
from csc_analyzers.models import imagenet, load_network


@pytest.fixture(scope="module")
def vgg16():
    return load_network("vgg16", weights=None)


@pytest.fixture(scope="module")
def resnet50():
    return load_network("resnet50", weights=None)


def _resolves(net, friendly):
    resolved = LayerNames(net.model).resolve(friendly)
    return resolved == "input" or net.model.get_layer(resolved) is not None


@pytest.mark.slow
def test_vgg16_paper_names(vgg16):
    net = vgg16
    assert net.weights == "random" and net.n_classes == 1000
    for friendly in set(net.layers) | set(net.csc_layers) | set(net.sanity_layers):
        assert _resolves(net, friendly), friendly
    assert net.csc_layers == ("fc3", "fc1", "conv4_3", "conv3_3", "conv2_2")
    assert net.sanity_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_3",
                                 "conv5_1", "conv5_3", "fc1", "fc3")
    assert len([n for n in net.layers if n.startswith("conv")]) == 13
    assert net.layer("conv4_3").name == "block4_conv3"
    assert net.layer("fc3").output_shape == (None, 1000)
    assert net.layer("fc3").activation.__name__ == "linear"
    assert net.model.layers[-1].activation.__name__ == "softmax"
    assert net.layers[-1] == "fc3"


@pytest.mark.slow
def test_resnet50_paper_names(resnet50):
    net = resnet50
    for friendly in set(net.layers) | set(net.csc_layers) | set(net.sanity_layers):
        assert _resolves(net, friendly), friendly
    assert net.csc_layers == ("dense", "block5_1", "block4_2", "block3_4", "block3_2",
                              "block2_2")
    assert net.sanity_layers == ("conv1", "block2_2", "block3_1", "block3_3", "block4_1",
                                 "block4_6", "block5_2", "dense")
    blocks = [n for n in net.layers if n.startswith("block")]
    assert len(blocks) == 3 + 4 + 6 + 3
    for name in blocks:  # each block name is the ReLU right after an Add
        layer = net.layer(name)
        assert isinstance(layer, klayers.Activation) and layer.activation.__name__ == "relu"
        assert isinstance(layer._inbound_nodes[0].inbound_layers, klayers.Add)
    assert isinstance(net.layer("conv1"), klayers.Conv2D)
    assert isinstance(net.layer("conv3_1s"), klayers.Conv2D)
    assert net.layer("conv3_1s").strides == (2, 2)
    assert net.layer("conv2_1a").output_shape == (None, 56, 56, 64)
    assert isinstance(net.layer("avgpool"), klayers.GlobalAveragePooling2D)
    assert net.layer("dense").output_shape == (None, 1000)
    assert net.model.layers[-1].activation.__name__ == "softmax"


def test_caffe_preprocessing_matches_keras():
    from tensorflow.keras.applications import vgg16 as kvgg16

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    ours = imagenet.preprocess(images)
    reference = kvgg16.preprocess_input(images.astype(np.float32).copy())
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    low, high = imagenet.INPUT_RANGE
    assert ours.min() >= low - 1e-3 and ours.max() <= high + 1e-3
    with pytest.raises(ValueError, match="N x H x W x 3"):
        imagenet.preprocess(images[0])


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_offline_imagenet_weights_error_names_the_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    file_name = imagenet.WEIGHT_FILES[name][0]
    if any(p.is_file() for p in imagenet.keras_cache_candidates(file_name)):
        pytest.skip("ImageNet weights are cached on this machine")
    with pytest.raises(FileNotFoundError) as info:
        load_network(name, weights="imagenet", download=False)
    message = str(info.value)
    assert file_name in message and str(tmp_path / ".keras" / "models") in message
    monkeypatch.setenv(imagenet.OFFLINE_ENV, "1")  # the environment switch also stops it
    with pytest.raises(FileNotFoundError, match=file_name):
        imagenet.imagenet_weights_path(name, download=True)
