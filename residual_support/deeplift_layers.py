"""deeplift layers that deeplift 0.6.13 lacks, as subclasses of its classes.

* :class:`Add`, :class:`ZeroPad2D`: the residual network layers. Both are
  linear, so their DeepLIFT rule is the plain linear rule: contributions pass
  through the layer like activations, and multipliers are the transposed map
  (broadcast, crop).
* :class:`GraphWeight`: every weight-dependent array of a converted model
  (kernels, biases, BatchNormalization parameters) is held ONCE in the TF1
  graph as a variable (deeplift embeds numpy arrays as a new constant at every
  use, ~20 copies of a kernel per layer, which does not fit VGG-16 into a
  graph). A graph weight may remember its :class:`WeightSource`, the Keras
  layer and the function of that layer's weights that produced it, so that
  :meth:`GraphWeight.sync_all` re-loads the arrays after the Keras weights
  change, in one session run and without new graph operations.
* :class:`Dense` and :class:`Conv2D`: deeplift's linear layers with kernel and
  bias as graph weights and with the option ``cross_mxts``. ``cross_mxts=True``
  is deeplift's linear rule; ``cross_mxts=False`` is the decoupled ablation of
  the paper (section 2.2, eq. 13, "DeepLIFT Ablation"): an input unit with
  a positive delta receives only the positive multipliers through the positive
  weights, a unit with a negative delta only the negative multipliers through
  the positive weights; the two cross terms through the negative weights are
  dropped. Units with a zero delta keep the average rule.
* :class:`BatchNormalization`: deeplift's batch normalization over the last
  axis with gamma, beta, mean and variance as graph weights.
* :class:`Concat`: concatenation along the last axis (linear: each input gets
  its slice of the multipliers).

The pooling layers are in :mod:`residual_support.deeplift_pooling`.

Import this module only after ``residual_support._tf`` (the shim imports
deeplift with the TF1 API bound).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode + deeplift import first)

import tensorflow as tf
import deeplift.layers as dl
from deeplift.layers import helper_functions as hf
from deeplift.layers.core import ListInputMixin, Node, SingleInputMixin

tf1 = tf.compat.v1


@dataclass(frozen=True)
class WeightSource:
    """Where a graph weight comes from: the Keras layer named ``layer`` and
    ``derive``, the function of that layer's ``get_weights()`` list that gives
    the array (e.g. ``operator.itemgetter(1)`` for a bias)."""

    layer: str
    derive: Callable

    def value(self, weights_by_layer: dict) -> np.ndarray:
        """The array for the layer weights in ``weights_by_layer``
        (Keras layer name -> list of arrays)."""
        if self.layer not in weights_by_layer:
            raise KeyError(f"no weights of layer {self.layer!r} given")
        return np.asarray(self.derive(weights_by_layer[self.layer]), dtype=np.float32)


class GraphWeight:
    """A numpy array held once in the TF1 graph as a non-trainable variable.

    The variable is kept out of the global-variables collection (Keras does not
    try to initialise it) and is initialised by feeding the array through a
    placeholder, so the array is not embedded into the graph definition.
    Running the initializer again with another array re-loads the variable
    without adding operations. ``source`` (a :class:`WeightSource`, optional)
    says which Keras layer's weights the array is derived from.
    """

    def __init__(self, array, name, source: WeightSource | None = None):
        array = np.asarray(array, dtype=np.float32)
        self.array = array
        self.source = source
        self.shape = array.shape
        self.placeholder = tf1.placeholder(tf.float32, array.shape, name=f"{name}_init")
        self.variable = tf1.Variable(self.placeholder, trainable=False, collections=[],
                                     name=name)

    @staticmethod
    def load_all(pairs, session) -> None:
        """Set each variable of ``(graph weight, array)`` ``pairs`` to its array,
        in one session run; an array of the wrong shape raises ValueError
        naming the variable and its source layer before anything is assigned."""
        pairs = [(w, np.asarray(a, dtype=np.float32)) for w, a in pairs]
        for weight, array in pairs:
            if array.shape != weight.shape:
                origin = f" (from layer {weight.source.layer!r})" if weight.source else ""
                raise ValueError(f"graph weight {weight.variable.name!r}{origin} has shape "
                                 f"{weight.shape}, got an array of shape {array.shape}")
        if pairs:
            session.run([w.variable.initializer for w, _ in pairs],
                        feed_dict={w.placeholder: a for w, a in pairs})

    @staticmethod
    def initialize_all(weights, session) -> None:
        """Initialise the variables of ``weights`` with the arrays they were
        built from, in one session run; the arrays are then released."""
        weights = [w for w in weights if w.array is not None]
        GraphWeight.load_all([(w, w.array) for w in weights], session)
        for weight in weights:
            weight.array = None

    @staticmethod
    def sync_all(weights, weights_by_layer: dict, session) -> None:
        """Re-load every variable of ``weights`` from its source in
        ``weights_by_layer`` (Keras layer name -> ``get_weights()`` list), in
        one session run. A weight without a source raises ValueError."""
        unsourced = [w.variable.name for w in weights if w.source is None]
        if unsourced:
            raise ValueError(f"graph weights {unsourced} do not know the Keras layer they "
                             "come from; they cannot be synchronised")
        GraphWeight.load_all([(w, w.source.value(weights_by_layer)) for w in weights], session)


def _graph_weight(array, name, suffix, sources):
    source = (sources or {}).get(suffix)
    return GraphWeight(array, _name(name, suffix), source)


def _name(name, suffix):
    return f"{name}_{suffix}".replace("/", "_")


class LinearRuleMixin:
    """The DeepLIFT linear rule for inputs split by the sign of their delta.

    With p, n the positive / negative multipliers of the outputs, W+ / W- the
    positive / negative parts of the kernel and ``T`` the transposed linear map:

    * delta > 0:  T(p, W+) + T(n, W-)   (``cross_mxts=False``: T(p, W+))
    * delta < 0:  T(n, W+) + T(p, W-)   (``cross_mxts=False``: T(n, W+))
    * delta = 0:  T((p + n) / 2, W)

    The input's positive and negative multipliers are the same tensor.

    W+ and W- are built once per layer and shared by the multipliers and the
    positive / negative contributions (:meth:`_build_pos_and_neg_contribs`,
    deeplift's terms): a session run computes each once. deeplift builds
    them anew for every term, which for VGG-16's fc1 (411 MB per copy)
    held several GB of kernel copies in a run reading every layer.
    """

    cross_mxts = True

    def _transpose(self, mxts, kernel):
        """``kernel^T mxts`` for this layer type (Dense and Conv2D define it)."""
        raise NotImplementedError

    def _linear(self, x, kernel):
        """``kernel x`` without bias for this layer type (Dense and Conv2D define it)."""
        raise NotImplementedError

    def _kernel_parts(self) -> tuple:
        """``(W+, W-)``: the kernel's positive and negative parts (tensors
        built on first use, then reused)."""
        if "_kernel_parts_built" not in self.__dict__:
            self._kernel_parts_built = (tf.nn.relu(self.kernel), tf.minimum(self.kernel, 0.0))
        return self._kernel_parts_built

    def _build_pos_and_neg_contribs(self):
        """deeplift's contributions split by sign: with d+ / d- the positive /
        negative parts of the input delta, ``pos = W+ d+ + W- d-`` and
        ``neg = W+ d- + W- d+``."""
        delta = self._get_input_diff_from_reference_vars()
        d_pos, d_neg = delta * hf.gt_mask(delta, 0.0), delta * hf.lt_mask(delta, 0.0)
        k_pos, k_neg = self._kernel_parts()
        pos_contribs = self._linear(d_pos, k_pos) + self._linear(d_neg, k_neg)
        neg_contribs = self._linear(d_neg, k_pos) + self._linear(d_pos, k_neg)
        return pos_contribs, neg_contribs

    def _linear_mxts_increments(self):
        pos, neg = self.get_pos_mxts(), self.get_neg_mxts()
        delta = self._get_input_diff_from_reference_vars()
        k_pos, k_neg = self._kernel_parts()
        into_positive = self._transpose(pos, k_pos)
        into_negative = self._transpose(neg, k_pos)
        if self.cross_mxts:
            into_positive = into_positive + self._transpose(neg, k_neg)
            into_negative = into_negative + self._transpose(pos, k_neg)
        increments = (hf.gt_mask(delta, 0.0) * into_positive
                      + hf.lt_mask(delta, 0.0) * into_negative
                      + hf.eq_mask(delta, 0.0) * self._transpose(0.5 * (pos + neg), self.kernel))
        return increments, increments


def _hold_kernel_and_bias(node, sources):
    """Replace the numpy kernel and bias of a deeplift linear node by graph
    weights (``sources``: optional dict ``"kernel"`` / ``"bias"`` ->
    :class:`WeightSource`)."""
    node.kernel_weight = _graph_weight(node.kernel, node.name, "kernel", sources)
    node.bias_weight = _graph_weight(node.bias, node.name, "bias", sources)
    node.kernel = node.kernel_weight.variable
    node.bias = node.bias_weight.variable
    node.graph_weights = [node.kernel_weight, node.bias_weight]


class Dense(LinearRuleMixin, dl.core.Dense):
    """deeplift's ``Dense`` with kernel and bias as graph weights and ``cross_mxts``.

    deeplift's own multiplier method transposes the kernel with numpy's ``.T``,
    which a graph tensor lacks; the rule is therefore always taken from
    :class:`LinearRuleMixin` (identical terms for ``cross_mxts=True``).
    """

    def __init__(self, kernel, bias, cross_mxts=True, sources=None, **kwargs):
        # deeplift's constructor copies the kernel twice (np.array, astype): seconds
        # for VGG-16's fc1; it gets empty arrays and the weights are set here
        super().__init__(kernel=np.zeros((0, 0), np.float32), bias=np.zeros(0, np.float32),
                         dense_mxts_mode=dl.DenseMxtsMode.Linear, **kwargs)
        self.kernel = np.asarray(kernel, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.cross_mxts = bool(cross_mxts)
        _hold_kernel_and_bias(self, sources)

    def _compute_shape(self, input_shape):
        return (None, int(self.kernel.shape[1]))

    def _transpose(self, mxts, kernel):
        return tf.matmul(mxts, kernel, transpose_b=True)

    def _linear(self, x, kernel):
        return tf.matmul(x, kernel)

    def _get_mxts_increments_for_inputs(self):
        return self._linear_mxts_increments()


class Conv2D(LinearRuleMixin, dl.convolutional.Conv2D):
    """deeplift's ``Conv2D`` (channels_last) with kernel and bias as graph
    weights; ``cross_mxts=True`` uses deeplift's own multiplier method."""

    def __init__(self, kernel, bias, strides, padding, cross_mxts=True, sources=None,
                 **kwargs):
        super().__init__(kernel=np.asarray(kernel, np.float32),
                         bias=np.asarray(bias, np.float32), strides=tuple(strides),
                         padding=padding, data_format="channels_last",
                         conv_mxts_mode=dl.ConvMxtsMode.Linear, **kwargs)
        self.cross_mxts = bool(cross_mxts)
        _hold_kernel_and_bias(self, sources)

    def _build_activation_vars(self, input_act_vars):
        return self._compute_conv_without_bias(x=input_act_vars, kernel=self.kernel) + self.bias

    def _transpose(self, mxts, kernel):
        return tf1.nn.conv2d_transpose(
            value=mxts, filter=kernel,
            output_shape=tf.shape(self.inputs.get_activation_vars()),
            strides=[1] + list(self.strides) + [1], padding=self.padding)

    def _linear(self, x, kernel):
        return self._compute_conv_without_bias(x=x, kernel=kernel)

    def _get_mxts_increments_for_inputs(self):
        if self.cross_mxts:
            return super()._get_mxts_increments_for_inputs()
        return self._linear_mxts_increments()


class BatchNormalization(dl.normalization.BatchNormalization):
    """deeplift's ``BatchNormalization`` over the last axis, inference mode,

        y = gamma * (x - mean) / sqrt(var + epsilon) + beta,

    with gamma, beta, mean and var as graph weights (``sources``: optional
    dict ``"gamma"``, ``"beta"``, ``"mean"``, ``"var"`` -> :class:`WeightSource`).
    Contributions and multipliers are deeplift's (scaling by
    gamma / sqrt(var + epsilon), split by the sign of gamma).
    """

    def __init__(self, gamma, beta, mean, var, epsilon, sources=None, **kwargs):
        arrays = {key: np.asarray(value, np.float32)
                  for key, value in dict(gamma=gamma, beta=beta, mean=mean, var=var).items()}
        super().__init__(axis=-1, epsilon=float(epsilon), **arrays, **kwargs)
        self.graph_weights = []
        for key, array in arrays.items():
            weight = _graph_weight(array, self.name, key, sources)
            setattr(self, key, weight.variable)
            self.graph_weights.append(weight)

    def _build_activation_vars(self, input_act_vars):
        # the parameters have the length of the last axis and broadcast over the others
        self.reshaped_mean, self.reshaped_var = self.mean, self.var
        self.reshaped_gamma, self.reshaped_beta = self.gamma, self.beta
        return tf.nn.batch_normalization(input_act_vars, mean=self.mean, variance=self.var,
                                         offset=self.beta, scale=self.gamma,
                                         variance_epsilon=self.epsilon)


class Add(ListInputMixin, Node):
    """Element-wise sum of inputs of equal shape (a residual connection).

    Contributions add up; every input receives the output's multipliers.
    """

    def _compute_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        if len(set(shapes)) != 1:
            raise ValueError(f"Add layer {self.name!r} needs inputs of equal shape, got {shapes}")
        return list(shapes[0])

    def _build_activation_vars(self, input_act_vars):
        return tf.add_n(list(input_act_vars))

    def _build_pos_and_neg_contribs(self):
        contribs = self._get_input_pos_and_neg_contribs()
        return (tf.add_n([pos for pos, _ in contribs]),
                tf.add_n([neg for _, neg in contribs]))

    def _get_mxts_increments_for_inputs(self):
        count = len(self.inputs)
        return [self.get_pos_mxts()] * count, [self.get_neg_mxts()] * count


class Concat(ListInputMixin, Node):
    """Concatenation along the last axis; each input receives its slice of
    the output's multipliers."""

    def _compute_shape(self, input_shape):
        shapes = [list(s) for s in input_shape]
        return shapes[0][:-1] + [sum(int(s[-1]) for s in shapes)]

    def _build_activation_vars(self, input_act_vars):
        return tf.concat(list(input_act_vars), axis=-1)

    def _build_pos_and_neg_contribs(self):
        contribs = self._get_input_pos_and_neg_contribs()
        return (tf.concat([pos for pos, _ in contribs], axis=-1),
                tf.concat([neg for _, neg in contribs], axis=-1))

    def _get_mxts_increments_for_inputs(self):
        sizes = [int(x.get_shape()[-1]) for x in self._get_input_activation_vars()]
        return (tf.split(self.get_pos_mxts(), sizes, axis=-1),
                tf.split(self.get_neg_mxts(), sizes, axis=-1))


class ZeroPad2D(SingleInputMixin, Node):
    """Zero padding of rows and columns (channels_last),
    ``padding=((top, bottom), (left, right))``. The reference is padded with
    zeros as well, so padded units have a zero delta; multipliers are cropped."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        (self.top, self.bottom), (self.left, self.right) = padding

    def _compute_shape(self, input_shape):
        return [None, input_shape[1] + self.top + self.bottom,
                input_shape[2] + self.left + self.right, input_shape[3]]

    def _build_activation_vars(self, input_act_vars):
        return tf.pad(input_act_vars, [[0, 0], [self.top, self.bottom],
                                       [self.left, self.right], [0, 0]])

    def _build_pos_and_neg_contribs(self):
        pos, neg = self._get_input_pos_and_neg_contribs()
        return self._build_activation_vars(pos), self._build_activation_vars(neg)

    def _crop(self, mxts):
        rows, cols = self._get_input_activation_vars().get_shape().as_list()[1:3]
        return mxts[:, self.top:self.top + rows, self.left:self.left + cols, :]

    def _get_mxts_increments_for_inputs(self):
        return self._crop(self.get_pos_mxts()), self._crop(self.get_neg_mxts())


class MultiplierSource(SingleInputMixin, Node):
    """Identity node on top of the explained layer whose multipliers are a
    given tensor (``mxts``, shape of the explained layer's output).

    The explained layer receives ``mxts`` as its positive and negative
    multipliers, which deeplift then propagates down to the input.
    """

    def __init__(self, mxts_fn, **kwargs):
        super().__init__(**kwargs)
        self._mxts_fn = mxts_fn

    def _compute_shape(self, input_shape):
        return input_shape

    def _build_activation_vars(self, input_act_vars):
        return input_act_vars

    def _build_pos_and_neg_contribs(self):
        return self._get_input_pos_and_neg_contribs()

    def _initialize_mxts(self):
        if not hasattr(self, "_source_mxts"):
            self._source_mxts = self._mxts_fn(self.get_activation_vars())
        self._pos_mxts = self._source_mxts
        self._neg_mxts = self._source_mxts

    def _get_mxts_increments_for_inputs(self):
        return self.get_pos_mxts(), self.get_neg_mxts()
