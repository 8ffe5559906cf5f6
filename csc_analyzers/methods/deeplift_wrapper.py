"""DeepLIFT (Shrikumar et al., 2017) on any tf.keras CNN or ResNet, through the
``deeplift`` package, with the analyzer interface of innvestigate.

The paper (section 2.2, eq. 12-13) describes DeepLIFT as backpropagating
finite differences to a reference x0: multipliers m_l are chained through the
layers (Rescale or RevealCancel at the nonlinearities, the linear rule eq. 13
at Dense/Conv2D), and the relevance of a layer is the multiplier times the
layer's difference from reference,

    r^DL_l(x, x0) = m+_l * dh+_l + m-_l * dh-_l,   dh+_l + dh-_l = h_l(x) - h_l(x0),

so that the relevance of the explained logit is f_k(x) - f_k(x0) and every
layer's relevance sums to it (summation-to-delta).

:class:`DeepLiftAnalyzer` builds the deeplift graph ONCE per analyzer in the
Keras TF1 graph and session (see :mod:`.deeplift_convert`); the
input, the reference and the output multipliers are fed, so repeated
``analyze`` / ``propagate`` calls add no operations. The graph holds its own
copy of the model's weights; after the Keras weights change in place (e.g. the
sanity check's randomisation), :meth:`DeepLiftAnalyzer.sync_weights` re-loads
them into the existing graph variables.

Relevance injection (``propagate``), precisely: the injected vectors ``v`` are
the MULTIPLIERS of layer k (both m+_k and m-_k set to v, as the paper's code
did); the values returned for a layer l are its CONTRIBUTIONS r^DL_l above,
i.e. multipliers times delta. For every mode (Rescale, RevealCancel, the
ablation) the multipliers depend on x and x0 but not on v, so ``propagate``
is linear in v. Reading layer k itself returns v times its delta, not v.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from residual_support import _tf  # noqa: F401  (graph mode + deeplift import first)

import tensorflow as tf

from residual_support.deeplift_layers import MultiplierSource
from .deeplift_convert import NONLINEAR_MODES, check_model, convert
from ..injection import INPUT, LayerNames, broadcast_inputs, session
from ..serialization import load_analyzer, load_analyzer_npz

tf1 = tf.compat.v1

NEURON_SELECTION_MODES = ("max_activation", "index", "all")


def _check_reference(reference):
    if isinstance(reference, str):
        if reference != "zeros":
            raise ValueError(f"reference must be 'zeros', ('blur', sigma) or an array, "
                             f"got {reference!r}")
        return reference
    if isinstance(reference, tuple) and len(reference) == 2 and reference[0] == "blur":
        sigma = float(reference[1])
        if sigma <= 0:
            raise ValueError(f"blur reference needs sigma > 0, got {sigma}")
        return ("blur", sigma)
    return np.asarray(reference, dtype=np.float32)


def reference_for(x: np.ndarray, reference) -> np.ndarray:
    """The reference x0 for the inputs ``x``: zeros, a Gaussian blur of each
    image over its two spatial axes (``("blur", sigma)``), or a user array
    broadcast to ``x``'s shape (shape of ``x``, of one input, or batch 1)."""
    if isinstance(reference, str):
        return np.zeros_like(x)
    if isinstance(reference, tuple):
        if x.ndim != 4:
            raise ValueError(f"a blurred reference needs images (N, H, W, C), got shape {x.shape}")
        sigma = reference[1]
        return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0)).astype(np.float32)
    try:
        return np.broadcast_to(reference, x.shape).astype(np.float32)
    except ValueError:
        raise ValueError(f"reference of shape {reference.shape} does not broadcast to "
                         f"the input shape {x.shape}") from None


class DeepLiftAnalyzer:
    """DeepLIFT Rescale / RevealCancel and the paper's ablation.

    ``model``: a tf.keras model (a final softmax is dropped);
    ``nonlinear_mode``: ``"rescale"`` or ``"reveal_cancel"``;
    ``cross_mxts``: ``False`` for the decoupled ablation (DeepLIFT Abla.);
    ``reference``: ``"zeros"``, ``("blur", sigma)`` or an array;
    ``neuron_selection_mode``: ``"max_activation"`` (the largest logit per
    input), ``"index"`` (``analyze(x, neuron_selection=k)``) or ``"all"``
    (multipliers 1 on every logit: contributions sum to the summed logit
    differences); ``batch_size``: inputs per session run;
    ``maxpool_mode``: see :class:`residual_support.deeplift_pooling.MaxPool2D`.
    The model is checked here; the graph is built on first use.
    """

    def __init__(self, model, nonlinear_mode: str = "rescale", cross_mxts: bool = True,
                 reference="zeros", neuron_selection_mode: str = "max_activation",
                 batch_size: int = 32, maxpool_mode: str = "interpolate",
                 layer_aliases=None):
        if nonlinear_mode not in NONLINEAR_MODES:
            raise ValueError(f"nonlinear_mode must be one of {sorted(NONLINEAR_MODES)}, "
                             f"got {nonlinear_mode!r}")
        if neuron_selection_mode not in NEURON_SELECTION_MODES:
            raise ValueError(f"neuron_selection_mode must be one of {NEURON_SELECTION_MODES}, "
                             f"got {neuron_selection_mode!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model
        self._nonlinear_mode = nonlinear_mode
        self._cross_mxts = bool(cross_mxts)
        self._reference = _check_reference(reference)
        self._neuron_selection_mode = neuron_selection_mode
        self._batch_size = int(batch_size)
        self._maxpool_mode = maxpool_mode
        self._names = LayerNames(model, layer_aliases)
        self._layer_aliases = dict(layer_aliases or {})
        check_model(model)
        self._converted = None

    # -- save / load (innvestigate's analyzer interface) ----------------------

    load = staticmethod(load_analyzer)
    load_npz = staticmethod(load_analyzer_npz)

    def _get_state(self) -> dict:
        return {"model_json": self._model.to_json(), "model_weights": self._model.get_weights(),
                "nonlinear_mode": self._nonlinear_mode, "cross_mxts": self._cross_mxts,
                "reference": self._reference, "neuron_selection_mode": self._neuron_selection_mode,
                "batch_size": self._batch_size, "maxpool_mode": self._maxpool_mode,
                "layer_aliases": dict(self._layer_aliases)}

    @classmethod
    def _state_to_kwargs(cls, state: dict) -> dict:
        kwargs = dict(state)
        model = tf.keras.models.model_from_json(kwargs.pop("model_json"))
        model.set_weights(kwargs.pop("model_weights"))
        return {"model": model, **kwargs}

    def save(self) -> tuple:
        """``(class name, state)`` for :func:`csc_analyzers.load_analyzer`."""
        return type(self).__name__, self._get_state()

    def save_npz(self, fname) -> None:
        """:meth:`save` into a numpy file (read it with ``load_npz``)."""
        class_name, state = self.save()
        np.savez(fname, class_name=class_name, state=state)

    # -- graph ---------------------------------------------------------------

    def _ensure_graph(self) -> None:
        if self._converted is not None:
            return
        sess = session()
        with sess.graph.as_default():
            converted = convert(self._model, nonlinear_mode=self._nonlinear_mode,
                                cross_mxts=self._cross_mxts, maxpool_mode=self._maxpool_mode)
            logits = converted.output_node.get_activation_vars()
            if len(logits.shape) != 2:
                raise ValueError(f"model {self._model.name!r} must output a vector per input "
                                 f"(logits), got shape {logits.shape}")
            n_out = int(logits.shape[1])
            mode = self._neuron_selection_mode

            def target(activations):
                if mode == "max_activation":
                    default = tf.one_hot(tf.argmax(activations, axis=1), n_out)
                else:
                    default = tf.ones_like(activations)
                return tf1.placeholder_with_default(default, [None, n_out], name="deeplift_target")

            source = MultiplierSource(target, name="deeplift_target_source", verbose=False)
            source.set_inputs(converted.output_node)
            source.build_fwd_pass_vars()
            converted.input_node.update_mxts()
            converted.initialize(sess)
        self._source = source
        self._n_out = n_out
        self._converted = converted

    def sync_weights(self, layers=None) -> None:
        """Make the deeplift graph compute with the Keras model's current
        weights: every kernel, bias and BatchNormalization parameter held in
        the graph is re-loaded from its Keras layer (two session runs, no new
        graph operations); with ``layers`` (Keras layer names) only those
        layers' parameters, e.g. the layers a randomisation step changed.
        Before the graph is built there is nothing to do: it is built from the
        weights current at first use."""
        if self._converted is None:
            return
        self._converted.sync(self._model, session(), layers)

    @property
    def graph_model(self):
        """The deeplift ``GraphModel`` (built on first access)."""
        self._ensure_graph()
        return self._converted.graph_model

    def _node(self, name: str):
        resolved = self._names.resolve(name)
        nodes = self._converted.nodes
        if resolved not in nodes:
            raise KeyError(f"layer {name!r} has no DeepLIFT node; available: {sorted(nodes)}")
        return nodes[resolved]

    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        expected = tuple(self._converted.input_node.get_shape()[1:])
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (n,) + {expected}, got {x.shape}")
        return x

    def _run(self, fetches, x, extra_feeds=None, reference=None):
        """Run ``fetches`` in batches; ``extra_feeds``: tensor -> array with
        the batch axis first (sliced like ``x``); ``reference``: overrides the
        analyzer's reference."""
        extra_feeds = extra_feeds or {}
        reference = self._reference if reference is None else _check_reference(reference)
        x0 = reference_for(x, reference)
        node = self._converted.input_node
        results = []
        for start in range(0, len(x), self._batch_size):
            batch = slice(start, start + self._batch_size)
            feed = {node.get_activation_vars(): x[batch], node.get_reference_vars(): x0[batch]}
            for tensor, values in extra_feeds.items():
                feed[tensor] = values[batch]
            results.append(session().run(fetches, feed_dict=feed))
        return [np.concatenate([r[i] for r in results]) for i in range(len(fetches))]

    # -- public API ------------------------------------------------------------

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The logits f(x) computed by the deeplift model."""
        self._ensure_graph()
        x = self._check_x(x)
        return self._run([self._converted.output_node.get_activation_vars()], x)[0]

    def forward(self, x: np.ndarray, layers: Iterable[str]) -> dict:
        """Activations of ``layers`` (Keras names, aliases, ``"input"``) for ``x``."""
        self._ensure_graph()
        x = self._check_x(x)
        keys = list(layers)
        values = self._run([self._node(k).get_activation_vars() for k in keys], x)
        return dict(zip(keys, values))

    def _target(self, x, neuron_selection) -> dict:
        if self._neuron_selection_mode != "index":
            if neuron_selection is not None:
                raise ValueError("neuron_selection is only accepted with "
                                 "neuron_selection_mode='index'")
            return {}
        if neuron_selection is None:
            raise ValueError("neuron_selection_mode='index' needs neuron_selection")
        index = np.asarray(neuron_selection, dtype=np.int64).reshape(-1)
        if index.size == 1:
            index = np.repeat(index, len(x))
        if (np.ndim(neuron_selection) > 1 or index.size != len(x)
                or index.min() < 0 or index.max() >= self._n_out):
            raise ValueError(f"neuron_selection must be an index in [0, {self._n_out}) or one "
                             f"per input, got {neuron_selection!r}")
        return {self._source.get_pos_mxts(): np.eye(self._n_out, dtype=np.float32)[index]}

    def analyze(self, x: np.ndarray, neuron_selection=None, *, reference=None) -> np.ndarray:
        """DeepLIFT contributions of the input units to the selected logit,
        shape of ``x``; they sum to f_k(x) - f_k(x0) per input. ``reference``
        (same forms as in the constructor) overrides the analyzer's reference
        for this call; the graph is the same."""
        self._ensure_graph()
        x = self._check_x(x)
        feeds = self._target(x, neuron_selection)
        fetch = self._converted.input_node.get_target_contrib_vars()
        return self._run([fetch], x, feeds, reference)[0]

    def injection_layers(self) -> list:
        """Names (Keras layer names and ``"input"``) usable in :meth:`propagate`."""
        self._ensure_graph()
        return list(self._converted.nodes)

    def relevance_shape(self, layer: str) -> tuple:
        """Shape (without batch) of the multipliers / contributions of ``layer``."""
        self._ensure_graph()
        return tuple(int(d) for d in self._node(layer).get_activation_vars().shape[1:])

    def propagate(self, x: np.ndarray, relevance: np.ndarray, from_layer: str,
                  to_layers: Sequence[str] | str = (INPUT,), *, reference=None) -> dict:
        """Set the multipliers of ``from_layer`` to each vector of ``relevance``
        (shape ``(n,) + output shape``) and return the contributions (multiplier
        times delta, see the module docstring) of ``to_layers``, each of shape
        ``(n,) + layer shape``. ``x`` has batch 1 (broadcast) or n;
        ``reference`` overrides the analyzer's reference for this call."""
        self._ensure_graph()
        if isinstance(to_layers, str):
            to_layers = [to_layers]
        source = self._node(from_layer)
        targets = [self._node(name) for name in to_layers]
        relevance = np.asarray(relevance, dtype=np.float32)
        expected = self.relevance_shape(from_layer)
        if relevance.shape[1:] != expected:
            raise ValueError(f"relevance for layer {from_layer!r} must have shape (n,) + "
                             f"{expected}, got {relevance.shape}")
        x = self._check_x(broadcast_inputs(x, relevance.shape[0]))
        feeds = {source.get_pos_mxts(): relevance, source.get_neg_mxts(): relevance}
        fetches = [node.get_target_contrib_vars() for node in targets]
        values = self._run(fetches, x, feeds, reference)
        return dict(zip(to_layers, values))
