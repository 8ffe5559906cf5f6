"""Small residual networks for the residual_support tests."""
import numpy as np
from tensorflow import keras
from tensorflow.keras import layers as klayers


def _relu(h, name, separate):
    if separate:
        return klayers.ReLU(name=name)(h)
    return klayers.Activation("relu", name=name)(h)


def _block(h, filters, stride, name, separate_relu):
    """conv-BN-ReLU-conv-BN + shortcut (projection conv-BN if the shape changes), Add, ReLU."""
    shortcut = h
    if stride != 1 or h.shape[-1] != filters:
        shortcut = klayers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(h)
        shortcut = klayers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    h = klayers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(h)
    h = klayers.BatchNormalization(name=f"{name}_bn1")(h)
    h = _relu(h, f"{name}_relu1", separate_relu)
    h = klayers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    h = klayers.BatchNormalization(name=f"{name}_bn2")(h)
    h = klayers.Add(name=f"{name}_add")([h, shortcut])
    return _relu(h, f"{name}_out", not separate_relu)


def small_resnet(seed=0, *, zero_shifts=False, positive_scales=False, size=12, n_classes=5,
                 softmax=False):
    """A 3-stage ResNet on ``size`` x ``size`` x 3 inputs: padded stem conv-BN-ReLU,
    an identity block, two projection blocks (stride 2), average pooling, GAP,
    Dropout, Dense. Weights and BN statistics (mean, variance, gamma, beta)
    are random from ``seed``; ``zero_shifts`` sets every bias and every BN
    shift ``beta - mean * gamma / sqrt(var + eps)`` to zero; ``positive_scales``
    draws every BN gamma positive."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((size, size, 3), name="image")
    h = klayers.ZeroPadding2D(1, name="pad")(inp)
    h = klayers.Conv2D(4, 3, name="stem_conv")(h)
    h = klayers.BatchNormalization(name="stem_bn")(h)
    h = klayers.ReLU(name="stem_relu")(h)
    h = _block(h, 4, 1, "stage1", separate_relu=True)
    h = _block(h, 8, 2, "stage2", separate_relu=False)
    h = _block(h, 8, 2, "stage3", separate_relu=True)
    h = klayers.AveragePooling2D(1, name="avg")(h)
    h = klayers.GlobalAveragePooling2D(name="gap")(h)
    h = klayers.Dropout(0.5, name="drop")(h)
    out = klayers.Dense(n_classes, activation="softmax" if softmax else None, name="logits")(h)
    model = keras.Model(inp, out, name="small_resnet")
    randomize(model, rng, zero_shifts=zero_shifts, positive_scales=positive_scales)
    return model


def randomize(model, rng, *, zero_shifts=False, positive_scales=False):
    """Random kernels (He-scaled), biases and non-trivial BN statistics
    (gamma of random sign unless ``positive_scales``)."""
    for layer in model.layers:
        if isinstance(layer, klayers.BatchNormalization):
            c = layer.gamma.shape[0]
            sign = np.ones(c) if positive_scales else rng.choice([-1.0, 1.0], c)
            gamma = sign * rng.uniform(0.5, 1.5, c)
            mean = rng.normal(0, 0.5, c)
            var = rng.uniform(0.5, 2.0, c)
            beta = rng.normal(0, 0.3, c)
            if zero_shifts:
                beta = mean * gamma / np.sqrt(var + layer.epsilon)
            layer.set_weights([w.astype("float32") for w in (gamma, beta, mean, var)])
        elif hasattr(layer, "kernel"):
            kernel = layer.kernel.shape
            fan_in = int(np.prod(kernel[:-1]))
            weights = [rng.normal(0, np.sqrt(2.0 / fan_in), kernel)]
            if layer.use_bias:
                bias = np.zeros(kernel[-1]) if zero_shifts else rng.normal(0, 0.1, kernel[-1])
                weights.append(bias)
            layer.set_weights([w.astype("float32") for w in weights])


def randomize_bn(model, rng):
    """Random non-trivial statistics and affine parameters for every BN layer."""
    for layer in model.layers:
        if isinstance(layer, klayers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c).astype("float32"),
                               rng.normal(0, 0.2, c).astype("float32"),
                               rng.normal(0, 0.2, c).astype("float32"),
                               rng.uniform(0.5, 2.0, c).astype("float32")])
