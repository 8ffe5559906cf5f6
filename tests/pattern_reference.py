"""The NumPy pattern estimator the package used before its statistics moved
into the TF graph: layer inputs fetched per batch, patches unfolded in NumPy,
``y = K^T x`` and every sum in float64 (BLAS dgemm). Kept as the reference
that the fast statistics must reproduce (tests/test_pattern_fast.py)."""
from __future__ import annotations

import numpy as np
from scipy.linalg import blas

import csc_analyzers  # noqa: F401  (graph mode first)
import tensorflow as tf
from tensorflow.keras import layers as klayers

from csc_analyzers.pattern.estimators import _safe_divide, linear_pattern, relu_output_tensors
from csc_analyzers.pattern.storage import pattern_layers
from csc_analyzers.pattern.unfold import conv_geometry, output_size, patch_rows, patches_at


def _accumulate(total, a, b):
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    result = blas.dgemm(1.0, a.T, b.T, beta=1.0, c=total, trans_b=True, overwrite_c=True)
    if not np.shares_memory(result, total):
        total[...] = result


def _zeros(shape):
    return np.zeros(shape, dtype=np.float64, order="F")


class ReferenceStatistics:
    def __init__(self, n_in, n_out, two_component):
        self.two_component = two_component
        self.count = 0.0
        self.sum_x, self.sum_y = np.zeros(n_in), np.zeros(n_out)
        self.sum_xy = _zeros((n_in, n_out))
        if two_component:
            self.count_pos = np.zeros(n_out)
            self.sum_x_pos, self.sum_xy_pos = _zeros((n_in, n_out)), _zeros((n_in, n_out))

    def update(self, x, y, positive=None):
        self.count += x.shape[0]
        self.sum_x += x.sum(axis=0)
        self.sum_y += y.sum(axis=0)
        _accumulate(self.sum_xy, x, y)
        if self.two_component:
            mask = positive.astype(np.float64)
            self.count_pos += mask.sum(axis=0)
            _accumulate(self.sum_x_pos, x, mask)
            _accumulate(self.sum_xy_pos, x, y * mask)

    def pattern(self, kernel):
        mean_y = self.sum_y / self.count
        if self.two_component:
            mean_x_pos = _safe_divide(self.sum_x_pos, self.count_pos[None])
            mean_xy_pos = _safe_divide(self.sum_xy_pos, self.count_pos[None])
            cov = mean_xy_pos - mean_x_pos * mean_y[None]
        else:
            cov = self.sum_xy / self.count - np.outer(self.sum_x / self.count, mean_y)
        return linear_pattern(cov, kernel).astype(np.float32)


class ReferenceEstimator:
    """``fit(batches)`` then ``patterns()`` -> {layer name: kernel-shaped array}."""

    def __init__(self, model, estimator="linear", positions_per_image=None, rng=None):
        self.model, self.positions_per_image = model, positions_per_image
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.layers = pattern_layers(model)
        self.kernels = {layer.name: np.asarray(layer.get_weights()[0], np.float64).reshape(
            -1, layer.get_weights()[0].shape[-1]) for layer in self.layers}
        relus = relu_output_tensors(model) if estimator == "relu" else {}
        self.masks = {layer.name: relus.get(layer.name) for layer in self.layers}
        self.geometry = {layer.name: conv_geometry(layer) for layer in self.layers
                         if isinstance(layer, klayers.Conv2D)}
        self.stats = {name: ReferenceStatistics(*k.shape, self.masks[name] is not None)
                      for name, k in self.kernels.items()}
        fetches = [layer.input for layer in self.layers]
        fetches += [m for m in self.masks.values() if m is not None]
        self._fed = [any(t is x for x in model.inputs) for t in fetches]
        fetched = [t for t, fed in zip(fetches, self._fed) if not fed]
        self._function = tf.compat.v1.keras.backend.function(model.inputs, fetched)

    def fit(self, batches):
        for batch in batches:
            self.update(batch)
        return self

    def update(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        fetched = iter(self._function([batch]))
        values = [batch if fed else next(fetched) for fed in self._fed]
        inputs = dict(zip([layer.name for layer in self.layers], values))
        mask_values = iter(values[len(self.layers):])
        masks = {name: (next(mask_values) > 0 if m is not None else None)
                 for name, m in self.masks.items()}
        for layer in self.layers:
            name, kernel = layer.name, self.kernels[layer.name]
            x, mask = inputs[name], masks[name]
            if name not in self.geometry:
                x = np.asarray(x, np.float64).reshape(-1, kernel.shape[0])
                positive = None if mask is None else mask.reshape(-1, kernel.shape[1])
                self.stats[name].update(x, x @ kernel, positive)
            elif self.positions_per_image is not None:
                self._update_sampled(name, x, mask)
            else:
                for image, rows, patches in patch_rows(x, **self.geometry[name]):
                    positive = None if mask is None else \
                        mask[image, rows].reshape(-1, kernel.shape[1])
                    self.stats[name].update(patches, patches @ kernel, positive)

    def _update_sampled(self, name, x, mask):
        kernel, geometry = self.kernels[name], self.geometry[name]
        out_h, out_w = output_size(x.shape, **geometry)
        take = min(self.positions_per_image, out_h * out_w)
        xs, positives = [], []
        for image in range(x.shape[0]):
            chosen = np.sort(self.rng.choice(out_h * out_w, size=take, replace=False))
            rows, cols = np.divmod(chosen, out_w)
            xs.append(patches_at(x[image], rows, cols, **geometry))
            if mask is not None:
                positives.append(mask[image, rows, cols])
        patches = np.concatenate(xs)
        positive = np.concatenate(positives) if mask is not None else None
        self.stats[name].update(patches, patches @ kernel, positive)

    def patterns(self):
        return {layer.name: self.stats[layer.name].pattern(self.kernels[layer.name]).reshape(
            tuple(layer.kernel.shape)) for layer in self.layers}
