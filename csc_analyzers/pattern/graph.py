"""The statistics of every pattern layer in one TensorFlow graph.

One ``session.run`` per batch runs the model's forward pass and adds, for
every Dense / Conv2D layer, the batch's sums to float64 accumulator
variables, so that no layer input leaves the graph. For a convolution the
sums over its input patches (``X^T R`` with ``R`` the per-position right-hand
side) are one ``Conv2DBackpropFilter`` of the layer's input with ``R``: no
patch matrix is materialised, and the cost is that of the layer's forward
convolution times the number of columns of ``R`` over the number of output
channels (2 for the two-component estimator).

Precision. The per-batch products run in float32 and are added to the
float64 sums. To keep their rounding far below the covariances the
estimators need, the layer input ``x`` and the pre-activation
``z = K^T x + b`` are centred before the products by fixed per-channel
values (their means over the first batch, kept with the sums): the sums are
those of ``x' = x - c`` and ``y' = z - d``. The covariances are unchanged by
the centring except for a known term of the two-component estimator
(:class:`~csc_analyzers.pattern.estimators.LayerStatistics`). Padding is
applied explicitly before the centring, so that padded entries are ``-c``
like every other centred entry.
"""
from __future__ import annotations

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf

F64 = tf.float64


def preactivation(layer, x, output):
    """``K^T x + b`` of ``layer`` as a tensor: its output when the activation
    is linear, the input of its ``Relu`` op for a fused ReLU, otherwise
    computed again from ``x``."""
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if activation == "linear":
        return output
    if activation == "relu" and output.op.type == "Relu":
        return output.op.inputs[0]
    if hasattr(layer, "convolution_op"):
        z = layer.convolution_op(x, layer.kernel)
    else:
        z = tf.tensordot(x, layer.kernel, axes=[[x.shape.rank - 1], [0]])
    return tf.nn.bias_add(z, layer.bias) if getattr(layer, "use_bias", False) else z


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple:
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _sum64(tensor, axes):
    """Sum over ``axes`` (leading axes, the batch first) as float64: float32
    within each sample of the batch (at most an image's positions), float64
    across the batch."""
    inner = [a for a in axes if a != 0]
    if inner:
        tensor = tf.reduce_sum(tensor, axis=inner, keepdims=True)
    return tf.reduce_sum(tf.cast(tensor, F64), axis=axes)


class _Products:
    """``X'^T R`` over the samples of one layer, with ``X' = X - c`` its
    input (patches for a convolution) centred by ``center`` (per input
    channel)."""

    def __init__(self, layer, x, geometry, center):
        self.layer, self.geometry = layer, geometry
        if geometry is None:  # Dense: samples are all leading positions
            self.x = tf.reshape(x, [-1, int(x.shape[-1])])
            self.xc = self.x - center
            return
        if any(d is None for d in x.shape[1:]):
            raise ValueError(f"layer {layer.name!r}: pattern statistics need a fixed input "
                             f"shape, got {tuple(x.shape)}")
        (kh, kw), (sh, sw), (dh, dw) = (geometry["kernel_size"], geometry["strides"],
                                        geometry["dilation_rate"])
        if geometry["padding"] == "same":
            pads = [(0, 0), _same_padding(int(x.shape[1]), kh, sh, dh),
                    _same_padding(int(x.shape[2]), kw, sw, dw), (0, 0)]
            x = tf.pad(x, pads)
        self.xc = x - center

    def __call__(self, right):
        """``sum over samples of x'^T right`` as float64 (n_in, k); ``right``
        has the layer output's shape with k channels."""
        if self.geometry is None:
            right = tf.reshape(right, [-1, int(right.shape[-1])])
            return tf.cast(tf.matmul(self.xc, right, transpose_a=True), F64)
        g = self.geometry
        k = int(right.shape[-1])
        shape = [*g["kernel_size"], int(self.xc.shape[-1]), k]
        products = tf.compat.v1.nn.conv2d_backprop_filter(
            self.xc, tf.constant(shape), right, strides=[1, *g["strides"], 1],
            padding="VALID", dilations=[1, *g["dilation_rate"], 1])
        return tf.cast(tf.reshape(products, [-1, k]), F64)


def centers(layer, x, output):
    """Per-channel means of the layer's input and pre-activation over a batch
    (the centring of :func:`layer_sums`)."""
    z = preactivation(layer, x, output)
    return (tf.reduce_mean(x, axis=list(range(x.shape.rank - 1))),
            tf.reduce_mean(z, axis=list(range(z.shape.rank - 1))))


def layer_sums(layer, x, output, mask, geometry, center_x, center_z, weight=None) -> dict:
    """The float64 sums of one batch for ``layer`` of the centred
    ``x' = x - center_x`` and ``y' = K^T x + b - center_z``, keyed as the
    :class:`~csc_analyzers.pattern.estimators.LayerStatistics` fields except
    that ``products`` holds ``[sum_x_pos, sum_xy_pos]`` (two-component) or
    ``[sum_xy, sum_x]`` (linear) side by side.
    ``mask`` is the ReLU output selecting the positive regime (``None``: the
    linear estimator), ``weight`` an optional per-sample weight (0/1 for
    sampled positions) shaped like the output without its channel axis."""
    z = preactivation(layer, x, output)
    rank = z.shape.rank
    axes = list(range(rank - 1))
    yc = z - center_z
    products = _Products(layer, x, geometry, center_x)
    w = None if weight is None else tf.cast(weight, z.dtype)[..., None]
    n_out = int(z.shape[-1])
    weighted = yc if w is None else yc * w
    count = _sum64(w, axes + [rank - 1]) if w is not None else \
        tf.cast(tf.size(z) // n_out, F64)
    sums = {"count": count, "sum_y": _sum64(weighted, axes)}
    if mask is not None:
        positive = tf.cast(mask > 0, z.dtype)
        if w is not None:
            positive = positive * w
        my = yc * positive
        sums.update(count_pos=_sum64(positive, axes), sum_y_pos=_sum64(my, axes),
                    products=products(tf.concat([positive, my], axis=-1)))
    else:
        ones = tf.ones_like(z[..., :1]) if w is None else w
        sums["products"] = products(tf.concat([weighted, ones], axis=-1))
    return sums


class Accumulators:
    """Float64 variables holding the running sums, updated in the graph."""

    def __init__(self, shapes: dict, session):
        self.session = session
        self.variables = {}
        for key, shape in shapes.items():
            dtype = tf.float32 if key[1].startswith("center") else F64
            self.variables[key] = tf.compat.v1.Variable(
                tf.zeros(shape, dtype), dtype=dtype, trainable=False,
                use_resource=True, name="pattern_" + "_".join(key).replace(":", "_"))
        self._placeholders = {key: tf.compat.v1.placeholder(v.dtype, v.shape)
                              for key, v in self.variables.items()}
        self._assign = tf.group(*[v.assign(self._placeholders[key])
                                  for key, v in self.variables.items()])
        session.run([v.initializer for v in self.variables.values()])

    def update_op(self, deltas: dict):
        """One op adding ``deltas`` (same keys) to the variables."""
        return tf.group(*[self.variables[key].assign_add(delta, read_value=False)
                          for key, delta in deltas.items()])

    def assign_op(self, values: dict):
        """One op setting variables (keys of ``values``) to tensors."""
        return tf.group(*[self.variables[key].assign(value, read_value=False)
                          for key, value in values.items()])

    def read(self) -> dict:
        keys = list(self.variables)
        return dict(zip(keys, self.session.run([self.variables[k] for k in keys])))

    def write(self, values: dict) -> None:
        self.session.run(self._assign, {
            self._placeholders[key]: np.asarray(value, self.variables[key].dtype.as_numpy_dtype)
            for key, value in values.items()})
