"""deeplift pooling layers that deeplift 0.6.13 lacks or gets wrong, as
subclasses of its classes.

* :class:`MaxPool2D`: deeplift's max pooling with (a) correct shape inference
  (deeplift's ``Pool2D._compute_shape`` swaps the SAME and VALID formulas),
  (b) real positive/negative contributions instead of placeholders of zeros,
  and (c) the option ``mode="interpolate"``, a multiplier rule that keeps
  summation-to-delta for any reference (deeplift's ``"gradient"`` rule keeps
  it only where the reference is constant within each pooling window).
* :class:`AvgPool2D`: deeplift's average pooling with correct shape inference.
* :class:`GlobalAvgPool2D`: the mean over the spatial axes. It is linear, so
  its DeepLIFT rule is the linear rule: multipliers are spread evenly.

Import this module only after ``residual_support._tf`` (the shim imports
deeplift with the TF1 API bound).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode + deeplift import first)

import tensorflow as tf
import deeplift.layers as dl
from deeplift.layers import helper_functions as hf
from deeplift.layers.core import SingleInputMixin, Node

MAXPOOL_MODES = ("interpolate", "gradient")


def _pool_output_length(length, window, stride, padding):
    if padding == "VALID":
        return (length - window) // stride + 1
    return (length + stride - 1) // stride


class _PoolShapeMixin:
    """Output shape of a channels_last 2D pooling layer."""

    def _compute_shape(self, input_shape):
        rows, cols = (_pool_output_length(n, k, s, self.padding)
                      for n, k, s in zip(input_shape[1:3], self.pool_size, self.strides))
        return [None, rows, cols, input_shape[-1]]


class AvgPool2D(_PoolShapeMixin, dl.pooling.AvgPool2D):
    """deeplift's ``AvgPool2D`` with correct shape inference."""


class MaxPool2D(_PoolShapeMixin, dl.pooling.MaxPool2D):
    """deeplift's ``MaxPool2D`` with real contributions and two multiplier rules.

    For a pooling window let ``a`` be the arg-max of the input x and ``b`` the
    arg-max of the reference x0, and d_a, d_b the input deltas there. The output
    delta max(x) - max(x0) = t d_a + (1 - t) d_b with

        t = (x_a - x_b) / ((x_a - x_b) + (x0_b - x0_a))   in [0, 1]

    (t = 1 when the denominator is 0, then d_a = d_b = output delta).

    * ``mode="interpolate"``: multipliers go to ``a`` times t and to ``b``
      times 1 - t; summation-to-delta holds exactly for every reference. Where
      the reference is constant within a window t = 1 and this is deeplift's
      gradient rule.
    * ``mode="gradient"``: deeplift's rule, all multipliers go to ``a``.

    Contributions of the output: the input contributions at ``a`` and ``b``
    mixed with t, 1 - t ("interpolate"); the output delta split by its sign
    ("gradient").
    """

    def __init__(self, mode="interpolate", **kwargs):
        if mode not in MAXPOOL_MODES:
            raise ValueError(f"maxpool mode must be one of {MAXPOOL_MODES}, got {mode!r}")
        super().__init__(maxpool_deeplift_mode=dl.MaxPoolDeepLiftMode.gradient, **kwargs)
        self.mode = mode

    def _argmax(self, inputs):
        _, index = tf.nn.max_pool_with_argmax(
            inputs, ksize=[1] + list(self.pool_size) + [1],
            strides=[1] + list(self.strides) + [1], padding=self.padding,
            include_batch_in_index=True)
        return index

    @staticmethod
    def _gather(values, index):
        return tf.gather(tf.reshape(values, [-1]), index)

    def _scatter(self, updates, index):
        inputs = self._get_input_activation_vars()
        flat = tf.scatter_nd(tf.reshape(index, [-1, 1]), tf.reshape(updates, [-1]),
                             tf.reshape(tf.size(inputs, out_type=tf.int64), [1]))
        return tf.reshape(flat, tf.shape(inputs))

    def _build_routing(self):
        """Arg-max indices at x and x0 and the mixing weight t (see class doc)."""
        x = self._get_input_activation_vars()
        x0 = self._get_input_reference_vars()
        self._index_x, self._index_ref = self._argmax(x), self._argmax(x0)
        rise = self._gather(x, self._index_x) - self._gather(x, self._index_ref)
        drop = self._gather(x0, self._index_ref) - self._gather(x0, self._index_x)
        total = rise + drop
        safe_total = tf.where(total > 0.0, total, tf.ones_like(total))
        self._mix = tf.where(total > 0.0, rise / safe_total, tf.ones_like(total))

    def _build_pos_and_neg_contribs(self):
        if self.mode == "gradient":
            delta = self._get_diff_from_reference_vars()
            return delta * hf.gt_mask(delta, 0.0), delta * hf.lt_mask(delta, 0.0)
        self._build_routing()
        pos_in, neg_in = self._get_input_pos_and_neg_contribs()

        def mixed(values):
            return (self._mix * self._gather(values, self._index_x)
                    + (1.0 - self._mix) * self._gather(values, self._index_ref))
        return mixed(pos_in), mixed(neg_in)

    def _get_mxts_increments_for_inputs(self):
        if self.mode == "gradient":
            return super()._get_mxts_increments_for_inputs()

        def routed(mxts):
            return (self._scatter(self._mix * mxts, self._index_x)
                    + self._scatter((1.0 - self._mix) * mxts, self._index_ref))
        return routed(self.get_pos_mxts()), routed(self.get_neg_mxts())


class GlobalAvgPool2D(SingleInputMixin, Node):
    """Mean over the two spatial axes (channels_last); multipliers are spread
    evenly over the H x W positions."""

    def _compute_shape(self, input_shape):
        return [None, input_shape[-1]]

    def _build_activation_vars(self, input_act_vars):
        return tf.reduce_mean(input_act_vars, axis=[1, 2])

    def _build_pos_and_neg_contribs(self):
        pos, neg = self._get_input_pos_and_neg_contribs()
        return self._build_activation_vars(pos), self._build_activation_vars(neg)

    def _spread(self, mxts):
        inputs = self._get_input_activation_vars()
        rows, cols = inputs.get_shape().as_list()[1:3]
        return tf.ones_like(inputs) * (mxts[:, None, None, :] / float(rows * cols))

    def _get_mxts_increments_for_inputs(self):
        return self._spread(self.get_pos_mxts()), self._spread(self.get_neg_mxts())
