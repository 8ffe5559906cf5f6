"""Layers seen as linear maps ``z = W x + b``, for the rules in :mod:`rules`.

A view gives, for a list of input tensors, the linear part computed with
the weights ``W`` ("all"), their positive part ``W+`` ("pos"), their
negative part ``W-`` ("neg"), their squares ("square") or ones ("flat"),
without bias; :meth:`LinearView.bias` gives ``b`` (or None). Every view
reads the layer's weight *variables*, so an analyzer built once follows
later changes of the weights (randomisation).

- :class:`KernelView`: Dense / Conv layers (channels last).
- :class:`AddView`: ``Add`` is a 1x1 convolution over the concatenated
  inputs whose kernel stacks identity matrices: ``W`` = [I I ... I] >= 0.
- :class:`PoolView`: average pooling, a convolution with equal positive
  weights; for the normalised rules the weight scale cancels.
- :class:`BatchNormView`: inference-mode batch normalisation, the
  per-channel affine map ``k x + b`` with ``k = gamma / sqrt(var + eps)``
  and ``b = beta - mean * k``.
- :class:`AffineView`: ``Rescaling`` (``k = scale``, ``b = offset``) and
  ``Normalization`` (``k = 1 / max(sqrt(var), eps)``, ``b = -mean k``; with
  ``invert=True`` ``k = max(sqrt(var), eps)``, ``b = mean``), per channel
  (or one scalar) like BatchNormalization; :func:`affine_view` picks the view.
- :class:`DepthwiseView`: ``DepthwiseConv2D``; its kernel holds exactly the
  non-zero weights of the equivalent (block-diagonal) convolution, so the
  parts W+, W-, W**2 of the depthwise kernel are those of that convolution.
- :class:`SeparableView`: ``SeparableConv2D`` as ONE linear map, the
  Conv2D with kernel ``K[h, w, c, o] = sum_j D[h, w, c, j] P[c m + j, o]``
  (depthwise kernel D with depth multiplier m, pointwise kernel P): every
  part (W+, W-, ...) is taken of K, not of D and P separately.
- :class:`SubtractView`: ``Subtract``, ``W = [I, -I]``, no bias.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

import innvestigate.backend.graph as igraph
import numpy as np
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers as klayers

PARTS = ("all", "pos", "neg", "square", "flat")


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"unknown weight part {part!r}; valid: {PARTS}")


class LinearView:
    """A layer as ``z = W x + b`` (see the module docstring)."""

    def __call__(self, xs: list, part: str):
        """``W_part x`` without bias (a tensor), or None if ``W_part`` is zero."""
        raise NotImplementedError

    def bias(self):
        """The bias ``b`` broadcastable to the output, or None."""
        return None


def _positive(w):
    return tf.nn.relu(w)


def _negative(w):
    return tf.minimum(w, 0.0)


_TRANSFORMS = {
    "all": lambda w: w,
    "pos": _positive,
    "neg": _negative,
    "square": lambda w: w * w,
    "flat": tf.ones_like,
}


class KernelView(LinearView):
    """A Dense or Conv layer (channels last) without its activation."""

    def __init__(self, layer):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"layer {layer.name!r}: only channels_last is supported")
        self._layer = layer
        self._copies = {}

    def __call__(self, xs, part):
        _check_part(part)
        if part not in self._copies:
            kernel = _TRANSFORMS[part](self._layer.kernel)
            self._copies[part] = igraph.copy_layer_wo_activation(
                self._layer, keep_bias=False, weights=[kernel],
                name_template=f"residual_{part}_%s")
        return self._copies[part](xs[0])

    def bias(self):
        return self._layer.bias if getattr(self._layer, "use_bias", False) else None


class AddView(LinearView):
    """``Add``: identity weights from every input, no bias."""

    def __call__(self, xs, part):
        _check_part(part)
        if part == "neg":
            return None
        return tf.add_n(list(xs))


class PoolView(LinearView):
    """Average pooling (local or global): equal positive weights, no bias.

    "square" and "flat" return the pooled input too: with equal weights the
    normalised W**2 and flat rules do not depend on the weights' scale.
    """

    def __init__(self, layer):
        self._layer = layer

    def __call__(self, xs, part):
        _check_part(part)
        if part == "neg":
            return None
        return self._layer(xs[0])


class BatchNormView(LinearView):
    """Inference-mode BatchNormalization as ``k x + b`` per channel."""

    def __init__(self, layer):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if len(axes) != 1:
            raise ValueError(f"layer {layer.name!r}: BatchNormalization over several "
                             f"axes {axes} is not supported")
        self._layer = layer
        self._rank = len(layer.get_input_shape_at(0))
        self._axis = axes[0] % self._rank

    def _broadcast(self, v):
        rank, axis = self._rank, self._axis
        if axis == rank - 1:
            return v
        shape = [1] * rank
        shape[axis] = -1
        return tf.reshape(v, shape)

    def scale(self):
        layer = self._layer
        inv = tf.math.rsqrt(layer.moving_variance + layer.epsilon)
        return inv * layer.gamma if layer.scale else inv

    def shift(self):
        layer = self._layer
        shift = -layer.moving_mean * self.scale()
        return shift + layer.beta if layer.center else shift

    def __call__(self, xs, part):
        _check_part(part)
        x = xs[0]
        k = _TRANSFORMS[part](self.scale())
        return x * self._broadcast(k)

    def bias(self):
        return self._broadcast(self.shift())


def _conv_options(layer) -> dict:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer {layer.name!r}: only channels_last is supported")
    return dict(strides=tuple(layer.strides), padding=layer.padding,
                data_format="channels_last", dilation_rate=tuple(layer.dilation_rate))


class DepthwiseView(LinearView):
    """``DepthwiseConv2D`` (channels last) without its activation."""

    def __init__(self, layer):
        self._layer = layer
        self._options = _conv_options(layer)

    def __call__(self, xs, part):
        _check_part(part)
        kernel = _TRANSFORMS[part](self._layer.depthwise_kernel)
        return keras.backend.depthwise_conv2d(xs[0], kernel, **self._options)

    def bias(self):
        return self._layer.bias if self._layer.use_bias else None


def separable_kernel(depthwise, pointwise):
    """The Conv2D kernel (h, w, c, o) of a separable convolution with
    depthwise kernel (h, w, c, m) and pointwise kernel (1, 1, c m, o)."""
    h, w, c, m = depthwise.shape
    pointwise = tf.reshape(pointwise, (int(c), int(m), -1))
    return tf.einsum("hwcm,cmo->hwco", depthwise, pointwise)


class SeparableView(LinearView):
    """``SeparableConv2D`` (channels last) as one Conv2D (module docstring)."""

    def __init__(self, layer):
        self._layer = layer
        self._options = _conv_options(layer)
        self._kernel = None

    def __call__(self, xs, part):
        _check_part(part)
        if self._kernel is None:
            self._kernel = separable_kernel(self._layer.depthwise_kernel,
                                            self._layer.pointwise_kernel)
        return keras.backend.conv2d(xs[0], _TRANSFORMS[part](self._kernel), **self._options)

    def bias(self):
        return self._layer.bias if self._layer.use_bias else None


class AffineView(LinearView):
    """An elementwise affine map ``k x + b`` (``k``, ``b`` broadcastable)."""

    def __init__(self, scale, shift=None):
        self._scale = scale
        self._shift = shift

    def __call__(self, xs, part):
        _check_part(part)
        return xs[0] * _TRANSFORMS[part](self._scale)

    def bias(self):
        return self._shift


def affine_view(layer) -> LinearView:
    """The view of a BatchNormalization, Rescaling or Normalization layer."""
    if isinstance(layer, klayers.BatchNormalization):
        return BatchNormView(layer)
    if isinstance(layer, klayers.Rescaling):
        scale = tf.constant(np.asarray(layer.scale, dtype=np.float32))
        offset = np.asarray(layer.offset, dtype=np.float32)
        return AffineView(scale, tf.constant(offset) if np.any(offset != 0) else None)
    if isinstance(layer, klayers.Normalization):
        spread = tf.maximum(tf.sqrt(layer.variance), keras.backend.epsilon())
        if layer.invert:
            return AffineView(spread, layer.mean)
        scale = 1.0 / spread
        return AffineView(scale, -layer.mean * scale)
    raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) is not an affine layer")


class SubtractView(LinearView):
    """``Subtract``: ``x1 - x2``, i.e. W = [I, -I], no bias."""

    def __call__(self, xs, part):
        _check_part(part)
        first, second = xs
        if part == "all":
            return first - second
        if part == "pos":
            return first + 0.0 * second
        if part == "neg":
            return 0.0 * first - second
        return first + second


__all__ = ["LinearView", "KernelView", "AddView", "PoolView", "BatchNormView", "PARTS",
           "DepthwiseView", "SeparableView", "AffineView", "SubtractView", "affine_view",
           "separable_kernel"]
