"""Plain numpy versions of small Keras networks, for reference implementations
of the attribution rules in the tests.

:func:`layers_of` turns a Keras model made of Conv2D (stride 1, "valid" or
"same"), MaxPooling2D (2x2, stride 2), Flatten, Dropout and Dense layers
(activation ``relu`` or linear) into a list of steps acting on flattened
(row-major, channels last) vectors of a batch:

* ``Linear``: ``z = a @ matrix.T + bias``; a convolution is written out as its
  (outputs x inputs) matrix, so every rule has one numpy form for Dense and Conv2D;
* ``ReLU``;
* ``MaxPool``: ``windows`` holds, per output unit, the flat input indices of
  its pooling window (row-major inside the window).

Nothing here calls TensorFlow: the matrices are built from the kernels with
index arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tensorflow import keras


@dataclass
class Linear:
    matrix: np.ndarray  # (outputs, inputs)
    bias: np.ndarray    # (outputs,)

    def __call__(self, a):
        return a @ self.matrix.T + self.bias


@dataclass
class ReLU:
    def __call__(self, a):
        return np.maximum(a, 0.0)


@dataclass
class MaxPool:
    windows: np.ndarray  # (outputs, window size) flat input indices

    def argmax(self, a):
        """Flat input index of each window's maximum (first one on ties)."""
        picked = np.argmax(a[:, self.windows], axis=2)  # (batch, outputs)
        return self.windows[np.arange(len(self.windows))[None, :], picked]

    def __call__(self, a):
        return a[:, self.windows].max(axis=2)


def conv_matrix(kernel: np.ndarray, in_shape: tuple, padding: str) -> tuple:
    """The (outputs x inputs) matrix of a stride-1 2D convolution (channels
    last) and its output shape."""
    kh, kw, cin, cout = kernel.shape
    h, w, c = in_shape
    if c != cin:
        raise ValueError(f"kernel has {cin} input channels, input has {c}")
    if padding == "valid":
        top = left = 0
        oh, ow = h - kh + 1, w - kw + 1
    elif padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        oh, ow = h, w
    else:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    matrix = np.zeros((oh * ow * cout, h * w * c))
    for i in range(oh):
        for j in range(ow):
            rows = (i * ow + j) * cout + np.arange(cout)
            for di in range(kh):
                for dj in range(kw):
                    y, x = i + di - top, j + dj - left
                    if 0 <= y < h and 0 <= x < w:
                        cols = (y * w + x) * c + np.arange(c)
                        matrix[np.ix_(rows, cols)] += kernel[di, dj].T
    return matrix, (oh, ow, cout)


def pool_windows(in_shape: tuple, size: int = 2) -> tuple:
    """Flat input indices of each output unit's window of a size x size,
    stride-size, "valid" max pooling, and the output shape."""
    h, w, c = in_shape
    oh, ow = h // size, w // size
    windows = np.zeros((oh * ow * c, size * size), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            for ch in range(c):
                windows[(i * ow + j) * c + ch] = [((i * size + di) * w + (j * size + dj)) * c + ch
                                                  for di in range(size) for dj in range(size)]
    return windows, (oh, ow, c)


def layers_of(model) -> list:
    """The steps of ``model`` (see the module docstring), float64."""
    steps = []
    shape = tuple(model.input_shape[1:])
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
            continue
        if isinstance(layer, keras.layers.Flatten):
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(layer, keras.layers.MaxPooling2D):
            if tuple(layer.pool_size) != (2, 2) or tuple(layer.strides) != (2, 2):
                raise ValueError(f"{layer.name}: only 2x2 pooling with stride 2")
            windows, shape = pool_windows(shape)
            steps.append(MaxPool(windows))
            continue
        kernel, bias = [w.astype(np.float64) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.Conv2D):
            if tuple(layer.strides) != (1, 1):
                raise ValueError(f"{layer.name}: only stride 1")
            matrix, shape = conv_matrix(kernel, shape, layer.padding)
            bias = np.tile(bias, shape[0] * shape[1])
        elif isinstance(layer, keras.layers.Dense):
            matrix, shape = kernel.T, (kernel.shape[1],)
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) not supported")
        steps.append(Linear(matrix, bias))
        activation = layer.activation.__name__
        if activation == "relu":
            steps.append(ReLU())
        elif activation != "linear":
            raise ValueError(f"{layer.name}: activation {activation!r} not supported")
    return steps


def forward(steps, x) -> list:
    """Inputs of every step and the output: ``[a_0 = x, a_1, ..., a_n]``."""
    acts = [np.asarray(x, np.float64).reshape(len(x), -1)]
    for step in steps:
        acts.append(step(acts[-1]))
    return acts


def random_weights(model, seed: int, scale: float = None):
    """He-scaled normal kernels (or N(0, scale) for all weights) and small biases."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if scale is not None:
            weights.append(rng.normal(0, scale, w.shape))
        elif w.ndim == 1:
            weights.append(rng.normal(0, 0.1, w.shape))
        else:
            weights.append(rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[:-1])), w.shape))
    model.set_weights([w.astype("float32") for w in weights])
    return model
