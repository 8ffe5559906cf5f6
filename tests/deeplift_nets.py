"""Small Keras networks for the DeepLIFT tests, with random weights from a seed."""
import numpy as np

import csc_analyzers  # noqa: F401  (graph mode before any model)
from tensorflow import keras
from tensorflow.keras import layers


def _randomize(model, rng, bias_scale=0.1):
    """He-scaled normal kernels, small random biases; BN layers get
    non-trivial statistics (some gammas negative)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, layers.BatchNormalization):
            n = weights[0].shape[0]
            gamma = rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n, p=[0.2, 0.8])
            beta = rng.normal(0, 0.2, n)
            mean = rng.normal(0, 0.5, n)
            var = rng.uniform(0.5, 2.0, n)
            layer.set_weights([w.astype("float32") for w in (gamma, beta, mean, var)])
            continue
        kernel = weights[0]
        fan_in = int(np.prod(kernel.shape[:-1]))
        new = [rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape)]
        new += [rng.normal(0, bias_scale, w.shape) for w in weights[1:]]
        layer.set_weights([w.astype("float32") for w in new])
    return model


def cifar_like_net(seed=0, softmax=True):
    """conv-relu-conv-relu-pool-conv-relu-conv-relu-pool-fc-relu-dropout-fc-relu-fc
    on 16x16x3 inputs (the paper's CIFAR net, smaller)."""
    inp = keras.Input((16, 16, 3), name="image")
    h = layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(name="pool1")(h)
    h = layers.Conv2D(12, 3, padding="same", activation="relu", name="conv3")(h)
    h = layers.Conv2D(12, 3, activation="relu", name="conv4")(h)
    h = layers.MaxPooling2D(name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(24, activation="relu", name="fc5")(h)
    h = layers.Dropout(0.5, name="dropout")(h)
    h = layers.Dense(16, activation="relu", name="fc6")(h)
    out = layers.Dense(10, activation="softmax" if softmax else None, name="fc7")(h)
    model = keras.Model(inp, out, name="cifar_like")
    model._csc_layer_aliases = {"logits": "fc7"}
    return _randomize(model, np.random.default_rng(seed))


def _block(h, filters, stride, name):
    shortcut = h
    h = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(h)
    h = layers.BatchNormalization(name=f"{name}_bn1")(h)
    h = layers.Activation("relu", name=f"{name}_relu1")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    h = layers.BatchNormalization(name=f"{name}_bn2")(h)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    h = layers.Add(name=f"{name}_add")([h, shortcut])
    return layers.ReLU(name=f"{name}_out")(h)


def small_resnet(seed=0, softmax=True):
    """ZeroPadding-conv-BN-ReLU-MaxPool, two residual blocks (identity and
    projection shortcut), GlobalAveragePooling, Dense, on 16x16x3 inputs."""
    inp = keras.Input((16, 16, 3), name="image")
    h = layers.ZeroPadding2D(((1, 2), (2, 1)), name="pad")(inp)
    h = layers.Conv2D(8, 3, name="conv1")(h)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(name="relu1")(h)
    h = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(h)
    h = _block(h, 8, 1, "block1")
    h = _block(h, 12, 2, "block2")
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    out = layers.Dense(10, activation="softmax" if softmax else None, name="dense")(h)
    model = keras.Model(inp, out, name="small_resnet")
    return _randomize(model, np.random.default_rng(seed))


def separate_activations_net(seed=0):
    """Sequential model with Activation / ReLU layers, average pooling and a
    separate softmax layer."""
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        layers.Conv2D(6, 3, name="conv1"),
        layers.Activation("relu", name="act1"),
        layers.Conv2D(6, 3, name="conv2"),
        layers.ReLU(name="relu2"),
        layers.AveragePooling2D(name="avg"),
        layers.Flatten(name="flatten"),
        layers.Dense(12, name="fc1"),
        layers.Activation("relu", name="act3"),
        layers.Dense(5, name="fc2"),
        layers.Activation("softmax", name="softmax"),
    ], name="separate_activations")
    return _randomize(model, np.random.default_rng(seed))


def logits_of(model, x):
    """Keras logits: the output of the layer before the softmax."""
    from csc_analyzers.logits import logit_model
    return logit_model(model).predict(x, verbose=0)
