"""Gradient averages: seeded SmoothGrad and Integrated Gradients.

Both average the gradient of the explained logit over a set of inputs derived
from the image ``x`` (section 5 of the paper: they are not modified-backprop
methods):

* SmoothGrad (Smilkov et al., 2017): ``mean_i grad f_k(x + e_i)`` with
  ``e_i ~ N(0, noise_scale^2 I)``, ``i = 1..augment_by_n``. Each image gets
  its own noise, drawn from a generator seeded by ``(seed, image key)``
  (:meth:`SeededSmoothGrad.noise`): the key is the image id the caller gives
  (``image_ids=``), else :func:`image_key` of the image's content. The same
  image (id) gets the same noise in any call, process or shard, different
  images get independent noise, and :meth:`GradientAverage.propagate`
  averages over exactly the noisy inputs of :meth:`GradientAverage.analyze`.
  ``noise_scale`` is an absolute standard deviation (the registry passes
  0.15 x input width).
* Integrated Gradients (Sundararajan et al., 2017): ``(x - x0) * mean_t grad
  f_k(x0 + t (x - x0))`` with ``t = i / steps``, ``i = 0..steps-1``
  (the left Riemann sum of innvestigate's ``IntegratedGradients``).

The averaged inputs of all images of a call are evaluated in chunks of
``batch_size`` inputs (by default about 2**21 input values per chunk, at most
256 inputs; in ``propagate`` of one image, ``batch_size`` inputs per vector;
of several images, ``batch_size`` backward rows: inputs times vectors)
instead of one batch of ``batch * steps`` images, which does not fit in
memory for ImageNet networks.

The class k is chosen on the clean input (``neuron_selection_mode``
"max_activation") or given (``"index"``, ``analyze(x, neuron_selection=k)``),
and kept for every averaged input; ``"all"`` averages the gradient of the sum
of all outputs, as innvestigate's wrappers do.

Both are innvestigate analyzers (subclasses of innvestigate's ``AnalyzerBase``):
``save()`` / ``save_npz()`` store the model, the neuron selection mode and
every constructor argument, and ``load`` / ``load_npz`` (here the project's
:func:`csc_analyzers.load_analyzer`) rebuild the same class with the same
numbers.
"""
from __future__ import annotations

import operator
import zlib
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from innvestigate.analyzer.base import AnalyzerBase
from innvestigate.analyzer.gradient_based import Gradient

from ..injection import INPUT, InjectionMixin, LayerNames, broadcast_inputs, session

tf1 = tf.compat.v1


def image_key(image) -> int:
    """The noise key of an image without an id: ``zlib.crc32`` of its float32
    values in C order (``np.ascontiguousarray(image, np.float32).tobytes()``),
    the same in every process."""
    return zlib.crc32(np.ascontiguousarray(image, dtype=np.float32).tobytes())


class InjectedGradient(InjectionMixin, Gradient):
    """innvestigate's Gradient with relevance injection."""


def _load(class_name: str, state: dict):
    from ..factory import load_analyzer
    return load_analyzer(class_name, state)


def _load_npz(fname):
    from ..factory import load_analyzer_npz
    return load_analyzer_npz(fname)


class GradientAverage(AnalyzerBase, ABC):
    """Average of the gradient over inputs derived from each image.

    Subclasses define :meth:`_points` (the inputs for one image) and may
    define :meth:`_finish` (applied to the averaged input gradient). A
    subclass whose inputs depend on an image id sets ``takes_image_ids`` and
    defines :meth:`_image_keys`. Extra keyword arguments go to innvestigate's
    ``Gradient`` (e.g. ``postprocess``).
    """

    #: True if ``analyze`` / ``propagate`` use ``image_ids`` (one per image).
    takes_image_ids = False

    load = staticmethod(_load)
    load_npz = staticmethod(_load_npz)

    def __init__(self, model, neuron_selection_mode: str = "max_activation",
                 batch_size: int | None = None, disable_model_checks: bool = False,
                 **gradient_kwargs):
        if neuron_selection_mode not in ("max_activation", "index", "all"):
            raise ValueError(
                f"neuron_selection_mode must be 'max_activation', 'index' or 'all', "
                f"got {neuron_selection_mode!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        super().__init__(model, neuron_selection_mode=neuron_selection_mode,
                         disable_model_checks=disable_model_checks)
        self._gradient_kwargs = dict(gradient_kwargs)
        self._input_shape = tuple(model.input_shape[1:])
        if None in self._input_shape:
            raise ValueError(
                f"model {model.name!r} needs a fully specified input shape, "
                f"got {model.input_shape}")
        if batch_size is None:
            batch_size = min(256, max(1, 2 ** 21 // int(np.prod(self._input_shape))))
        self._batch_size = int(batch_size)
        self._gradient = InjectedGradient(
            model, neuron_selection_mode="all" if neuron_selection_mode == "all" else "index",
            disable_model_checks=disable_model_checks, **gradient_kwargs)
        self._one_image_graphs = {}

    def _get_state(self) -> dict:
        state = super()._get_state()
        state.update({"batch_size": self._batch_size,
                      "gradient_kwargs": dict(self._gradient_kwargs)})
        return state

    @classmethod
    def _state_to_kwargs(cls, state: dict) -> dict:
        batch_size = state.pop("batch_size")
        gradient_kwargs = state.pop("gradient_kwargs")
        kwargs = super()._state_to_kwargs(state)
        kwargs.update(gradient_kwargs)
        kwargs["batch_size"] = batch_size
        return kwargs

    @property
    def _subanalyzer(self):
        """The wrapped gradient analyzer (innvestigate's name for a wrapper's
        inner analyzer): its graph reads the model's own variables."""
        return self._gradient

    @abstractmethod
    def _points(self, x: np.ndarray, key) -> np.ndarray:
        """The inputs, shape ``(m,) + x.shape``, whose gradients are averaged
        for image ``x`` with key ``key`` (from :meth:`_image_keys`)."""

    def _image_keys(self, X: np.ndarray, image_ids) -> list:
        """One key per image of ``X`` for :meth:`_points` (None: not used)."""
        if image_ids is not None:
            raise TypeError(f"{type(self).__name__} takes no image_ids: its averaged "
                            "inputs depend on the image only")
        return [None] * len(X)

    def _finish(self, x: np.ndarray, mean_gradient: np.ndarray) -> np.ndarray:
        return mean_gradient

    # -- analysis -----------------------------------------------------------
    def _check_input(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.shape[1:] != self._input_shape:
            raise ValueError(
                f"input has shape {X.shape}, model {self._model.name!r} expects "
                f"(batch,) + {self._input_shape}")
        return X

    def _classes(self, X: np.ndarray, neuron_selection):
        """The explained output per image; None for mode "all" (every output)."""
        if self._neuron_selection_mode == "all":
            if neuron_selection is not None:
                raise ValueError("neuron_selection is only used with "
                                 "neuron_selection_mode 'index'")
            return None
        if self._neuron_selection_mode == "index":
            if neuron_selection is None:
                raise ValueError("neuron_selection_mode 'index' needs neuron_selection")
            return np.broadcast_to(np.asarray(neuron_selection).ravel(), (len(X),))
        if neuron_selection is not None:
            raise ValueError("neuron_selection is only used with neuron_selection_mode 'index'")
        return np.argmax(self._model.predict_on_batch(X), axis=1)

    def analyze(self, X, neuron_selection=None, image_ids=None) -> np.ndarray:
        """The averaged-gradient map of each image in ``X`` (``image_ids``:
        one per image, for subclasses with ``takes_image_ids``)."""
        X = self._check_input(X)
        keys = self._image_keys(X, image_ids)
        classes = self._classes(X, neuron_selection)
        points = np.concatenate([self._points(x, key) for x, key in zip(X, keys)])
        m = len(points) // len(X)  # averaged inputs per image
        owners = np.repeat(np.arange(len(X)), m)
        totals = np.zeros(X.shape, dtype=np.float64)
        for start in range(0, len(points), self._batch_size):
            rows = slice(start, start + self._batch_size)
            selection = {} if classes is None else {"neuron_selection": classes[owners[rows]]}
            gradients = self._gradient.analyze(points[rows], **selection)
            for owner in np.unique(owners[rows]):
                totals[owner] += gradients[owners[rows] == owner].sum(axis=0)
        return np.stack([self._finish(x, (t / m).astype(np.float32)) for x, t in zip(X, totals)])

    # -- relevance injection ------------------------------------------------
    def injection_layers(self) -> list:
        return self._gradient.injection_layers()

    def relevance_shape(self, layer: str) -> tuple:
        return self._gradient.relevance_shape(layer)

    def forward(self, x, layers):
        return self._gradient.forward(x, layers)

    def propagate(self, x: np.ndarray, relevance: np.ndarray, from_layer: str,
                  to_layers: Sequence[str] | str = (INPUT,), image_ids=None) -> dict:
        """The gradient backprop of ``relevance`` injected at ``from_layer``,
        averaged over the same inputs as :meth:`analyze` (the ``"input"``
        entry gets the same final step as :meth:`analyze`). Same signature
        and shapes as :meth:`csc_analyzers.injection.InjectionMixin.propagate`;
        ``image_ids`` as in :meth:`analyze`, one per image of ``x`` (not per
        vector).

        With one image for all vectors (CSC), each vector's backward pass is
        summed over each chunk of averaged inputs in the graph (see
        :meth:`_one_image_sums`); otherwise every (input, vector) pair is a
        row of the wrapped gradient analyzer's ``propagate``."""
        relevance = np.asarray(relevance, dtype=np.float32)
        images = self._check_input(x)
        keys = self._image_keys(images, image_ids)
        x = broadcast_inputs(images, relevance.shape[0])
        if isinstance(to_layers, str):
            to_layers = [to_layers]
        names = LayerNames(self._model)
        # b = 1 (one image for all vectors) or one image per vector
        b = len(images)
        points = np.stack([self._points(sample, key) for sample, key in zip(images, keys)],
                          axis=1)  # (m, b) + shape
        m = len(points)
        points = points.reshape((m * b,) + x.shape[1:])
        if b == 1:
            totals = self._one_image_sums(points, relevance, from_layer, to_layers)
        else:
            totals = self._row_sums(points, b, relevance, from_layer, to_layers)
        result = {}
        for key, total in totals.items():
            mean = (total / m).astype(np.float32)
            if names.resolve(key) == INPUT:
                mean = np.stack([self._finish(sample, g) for sample, g in zip(x, mean)])
            result[key] = mean
        return result

    def _row_sums(self, points, b, relevance, from_layer, to_layers) -> dict:
        """Per layer, the backprop of every vector summed over the averaged
        inputs: ``points`` holds m inputs for each of the ``b`` images (b
        divides the n vectors), run as rows of the wrapped analyzer."""
        n = len(relevance)
        m = len(points) // b
        groups = max(1, self._batch_size // n)  # whole groups of n vectors per chunk
        totals = None
        for start in range(0, m, groups):
            k = min(groups, m - start)
            tiled = np.tile(relevance, (k,) + (1,) * (relevance.ndim - 1))
            rows = points[start * b:(start + k) * b]
            values = self._gradient.propagate(rows, tiled, from_layer, to_layers)
            sums = {key: v.reshape((k, n) + v.shape[1:]).sum(axis=0, dtype=np.float64)
                    for key, v in values.items()}
            totals = sums if totals is None else {key: totals[key] + sums[key] for key in sums}
        return totals

    def _one_image_sums(self, points, relevance, from_layer, to_layers) -> dict:
        """As :meth:`_row_sums` for the m averaged inputs of ONE image: for
        each vector v_i and each chunk of up to ``batch_size`` inputs, one
        session run computes ``sum over the chunk of d(v_i . y_from)/d y_to``
        (the gradient analyzer's relevance of ``to`` when v_i is injected at
        ``from``). The graph holds one backward pass and is built once per
        (from, to) layers, whatever the number of vectors: the check, the
        growth measurement and CSC share it. Per vector the forward pass is
        run again, and the chunks are as large as :meth:`analyze`'s
        (ResNet50V2 at 224 px, 64 steps, 5 vectors: 29 s per image against
        36 s for one forward pass per chunk of 2 inputs with a backward pass
        per vector, and a 5-vector graph that took 20 s to build)."""
        key = (from_layer, tuple(to_layers))
        if key not in self._one_image_graphs:
            self._one_image_graphs[key] = self._build_one_image_sums(from_layer, to_layers)
        vector, sums = self._one_image_graphs[key]
        model_input = self._gradient.forward_tensor(INPUT)
        totals = [[0.0] * len(sums) for _ in relevance]
        for start in range(0, len(points), self._batch_size):
            chunk = points[start:start + self._batch_size]
            for i, v in enumerate(relevance):
                values = session().run(sums, feed_dict={model_input: chunk, vector: v})
                totals[i] = [total + value.astype(np.float64)
                             for total, value in zip(totals[i], values)]
        return {name: np.stack([per_vector[j] for per_vector in totals])
                for j, name in enumerate(to_layers)}

    def _build_one_image_sums(self, from_layer, to_layers):
        """The placeholder for one vector at ``from_layer`` and, for each of
        ``to_layers``, the tensor (layer shape) of the gradients of
        ``v . y_from`` with respect to that layer's output, summed over the
        fed inputs (zeros for a layer ``from_layer`` does not depend on)."""
        gradient = self._gradient
        source = gradient.forward_tensor(from_layer)
        targets = [gradient.forward_tensor(name) for name in to_layers]
        with session().graph.as_default():
            vector = tf1.placeholder(source.dtype, tuple(source.shape[1:]),
                                     name="gradient_average_vector")
            grads = tf.gradients(source, targets,
                                 grad_ys=tf.broadcast_to(vector, tf.shape(source)))
            sums = [tf.zeros(tf.shape(t)[1:], t.dtype) if g is None
                    else tf.reduce_sum(g, axis=0) for t, g in zip(targets, grads)]
        return vector, sums


def _key(value, what: str) -> int:
    """A non-negative integer (a seed or image id), or ValueError naming ``what``."""
    try:
        key = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}") from None
    if key < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(key)


class SeededSmoothGrad(GradientAverage):
    """SmoothGrad with per-image seeded noise: for the image with key ``key``
    the ``augment_by_n`` noisy inputs are ``x + e`` with

        e = np.random.default_rng([seed, key]).normal(
                0.0, noise_scale, size=(augment_by_n,) + input_shape).astype(np.float32)

    (:meth:`noise`). ``key`` is the image's id from ``image_ids=`` of
    :meth:`analyze` / :meth:`propagate` (one non-negative integer per image),
    else :func:`image_key` of the image; a call without ids equals a call
    with ``image_ids=[image_key(x) for x in X]``. ``noise_scale`` is the
    absolute standard deviation."""

    takes_image_ids = True

    def __init__(self, model, augment_by_n: int = 50, noise_scale: float = 1.0,
                 seed: int = 0, **kwargs):
        if int(augment_by_n) < 1:
            raise ValueError(f"augment_by_n must be >= 1, got {augment_by_n!r}")
        if float(noise_scale) < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale!r}")
        self._seed = _key(seed, "seed")
        super().__init__(model, **kwargs)
        self._augment_by_n = int(augment_by_n)
        self._noise_scale = float(noise_scale)

    def _get_state(self) -> dict:
        state = super()._get_state()
        state.update({"augment_by_n": self._augment_by_n, "noise_scale": self._noise_scale,
                      "seed": self._seed})
        return state

    @classmethod
    def _state_to_kwargs(cls, state: dict) -> dict:
        extra = {key: state.pop(key) for key in ("augment_by_n", "noise_scale", "seed")}
        kwargs = super()._state_to_kwargs(state)
        kwargs.update(extra)
        return kwargs

    def noise(self, key: int) -> np.ndarray:
        """The noise added to the image with key ``key`` (see the class docstring)."""
        rng = np.random.default_rng([self._seed, _key(key, "image id")])
        shape = (self._augment_by_n,) + self._input_shape
        return rng.normal(0.0, self._noise_scale, size=shape).astype(np.float32)

    def _image_keys(self, X, image_ids) -> list:
        if image_ids is None:
            return [image_key(x) for x in X]
        ids = list(np.asarray(image_ids, dtype=object).ravel())
        if len(ids) != len(X):
            raise ValueError(f"got {len(ids)} image_ids for {len(X)} images; "
                             "give one id per image")
        return [_key(i, "image id") for i in ids]

    def _points(self, x, key):
        return x[None] + self.noise(key)


class IntegratedGradients(GradientAverage):
    """Integrated Gradients with ``steps`` points from ``reference_inputs``
    (scalar or array of the input shape) to the image."""

    def __init__(self, model, steps: int = 64, reference_inputs=0.0, **kwargs):
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps!r}")
        super().__init__(model, **kwargs)
        self._steps = int(steps)
        self._reference = np.broadcast_to(
            np.asarray(reference_inputs, dtype=np.float32), self._input_shape)

    def _get_state(self) -> dict:
        state = super()._get_state()
        state.update({"steps": self._steps, "reference_inputs": np.array(self._reference)})
        return state

    @classmethod
    def _state_to_kwargs(cls, state: dict) -> dict:
        extra = {key: state.pop(key) for key in ("steps", "reference_inputs")}
        kwargs = super()._state_to_kwargs(state)
        kwargs.update(extra)
        return kwargs

    def _points(self, x, key):
        t = np.arange(self._steps, dtype=np.float32) / self._steps
        t = t.reshape((-1,) + (1,) * x.ndim)
        return self._reference[None] + t * (x - self._reference)[None]

    def _finish(self, x, mean_gradient):
        return (x - self._reference) * mean_gradient
