"""SmoothGrad and Integrated Gradients that run on networks with BatchNormalization.

innvestigate's ``AugmentReduceBase`` wrappers build their graph by calling
the inner analyzer's Keras model on augmented input tensors; Keras cannot
re-apply a gradient graph that reads BatchNormalization variables (it fails
with "Cannot convert ... dtype([('resource', 'u1')])"). :class:`AugmentInNumpyMixin`
does the augmentation and the reduction in numpy around the inner
analyzer's own graph instead, in chunks of ``chunk_size`` samples:

- SmoothGrad: mean of the gradients at ``x + noise``, noise N(0, noise_scale^2)
  drawn from ``np.random.default_rng(seed)`` (innvestigate's layer ignores
  ``noise_scale`` and uses standard deviation 1);
- Integrated Gradients: ``(x - x0) * mean_k grad(x0 + k/n (x - x0))`` for
  k = 0..n-1, as innvestigate's ``PathIntegrator``.

``neuron_selection_mode`` "all" averages the inner gradient of the sum of all
outputs, as innvestigate's wrappers do; ``seed`` and ``chunk_size`` are saved
by ``save()``.
"""
from __future__ import annotations

from . import _tf  # noqa: F401  (graph mode first)

import numpy as np
from innvestigate.analyzer.wrapper import GaussianSmoother, PathIntegrator


class AugmentInNumpyMixin:
    """Put before innvestigate's ``GaussianSmoother`` / ``PathIntegrator``
    subclasses (SmoothGrad, IntegratedGradients)."""

    def __init__(self, model, *args, seed=None, chunk_size: int = 16, **kwargs):
        if not isinstance(self, (GaussianSmoother, PathIntegrator)):
            raise TypeError(f"{type(self).__name__}: AugmentInNumpyMixin needs "
                            "GaussianSmoother or PathIntegrator after it in the bases")
        self._seed = seed
        self._chunk_size = int(chunk_size)
        super().__init__(model, *args, **kwargs)

    def create_analyzer_model(self):
        self._subanalyzer.create_analyzer_model()

    def _get_state(self):
        state = super()._get_state()
        state.update({"seed": self._seed, "chunk_size": self._chunk_size})
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        seed, chunk_size = state.pop("seed", None), state.pop("chunk_size", 16)
        kwargs = super()._state_to_kwargs(state)
        kwargs.update({"seed": seed, "chunk_size": chunk_size})
        return kwargs

    def _samples(self, x: np.ndarray) -> np.ndarray:
        """The ``augment_by_n`` inputs for one input ``x`` (shape (n,) + x.shape)."""
        n = self._augment_by_n
        if isinstance(self, GaussianSmoother):
            rng = self._rng
            return x[None] + rng.normal(0.0, self._noise_scale, (n,) + x.shape).astype(x.dtype)
        reference = np.broadcast_to(np.asarray(self._reference_inputs, x.dtype), x.shape)
        alphas = (np.arange(n, dtype=x.dtype) / n).reshape((n,) + (1,) * x.ndim)
        return reference[None] + alphas * (x - reference)[None]

    def _finish(self, mean_analysis: np.ndarray, x: np.ndarray) -> np.ndarray:
        if isinstance(self, GaussianSmoother):
            return mean_analysis
        reference = np.broadcast_to(np.asarray(self._reference_inputs, x.dtype), x.shape)
        return mean_analysis * (x - reference)

    def analyze(self, X, neuron_selection=None):
        X = np.asarray(X, dtype=np.float32)
        self._rng = np.random.default_rng(self._seed)
        if not self._subanalyzer._analyzer_model_done:
            self.create_analyzer_model()
        mode = self._neuron_selection_mode
        if mode == "all":  # the inner gradient of the sum of all outputs
            if neuron_selection is not None:
                raise ValueError("neuron_selection is only used with "
                                 "neuron_selection_mode='index'")
            indices = [None] * len(X)
        elif mode == "max_activation":
            if neuron_selection is not None:
                raise ValueError("neuron_selection is only used with "
                                 "neuron_selection_mode='index'")
            indices = np.argmax(self._subanalyzer._model.predict(X, verbose=0), axis=1)
        else:
            if neuron_selection is None:
                raise ValueError("neuron_selection_mode 'index' needs neuron_selection")
            indices = np.broadcast_to(np.asarray(neuron_selection).ravel(), (len(X),))
        results = []
        for x, index in zip(X, indices):
            samples = self._samples(x)
            total = np.zeros_like(x, dtype=np.float64)
            for start in range(0, len(samples), self._chunk_size):
                chunk = samples[start:start + self._chunk_size]
                selection = {} if index is None else {
                    "neuron_selection": np.repeat(index, len(chunk))}
                grads = self._subanalyzer.analyze(chunk, **selection)
                total += np.asarray(grads, np.float64).sum(axis=0)
            results.append(self._finish((total / len(samples)).astype(np.float32), x))
        return np.stack(results)


__all__ = ["AugmentInNumpyMixin"]
