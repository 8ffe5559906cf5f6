"""Pattern estimators of Kindermans et al. (2018) from streamed statistics.

Every Dense and Conv2D layer computes ``y = K^T x`` per sample (plus a bias),
with ``K`` the kernel reshaped to ``(n_in, n_out)``; for a convolution the
samples are the input patches at every output position
(:mod:`csc_analyzers.pattern.unfold`). The estimators need only sums over the
samples, accumulated in float64 one batch at a time, so the memory is that of
the sums (the kernels' size, a few times) plus one batch.

``linear``  eq. 9 of the paper: ``a = cov[x] w / (w^T cov[x] w)``, computed as
            ``cov(x, y) / (w^T cov(x, y))`` since ``cov(x, y) = cov[x] w``.
``relu``    the two-component estimator for ReLU neurons (Kindermans et al.
            2018, sec. 4.1), positive regime:
            ``a+ = (E+[x y] - E+[x] E[y]) / (w^T E+[x y] - w^T E+[x] E[y])``,
            where ``E+`` averages over the samples for which the neuron's
            ReLU output is positive and ``E`` over all samples (the form of the
            authors' innvestigate 1.0 implementation). The ReLU is the layer's
            own activation or a ReLU that follows it through BatchNormalization,
            Dropout or linear activations; a layer with no such ReLU (e.g. the
            logit layer, a convolution feeding an ``Add``) gets the linear
            estimator, which the pattern file records per layer.

Both are unchanged by the bias, so ``y`` is computed without it. Neurons with
``w^T cov = 0`` (e.g. never active) get a zero pattern.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from scipy.linalg import blas

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.backend.graph as igraph
import tensorflow as tf
from tensorflow.keras import layers as klayers

from .storage import (PatternSet, atomic_savez, combined_fingerprint, meta_array,
                      model_fingerprints, pattern_layer_weights, pattern_layers,
                      read_meta)
from .unfold import conv_geometry, output_size, patch_rows, patches_at

ESTIMATORS = ("linear", "relu")
STATISTICS_FORMAT = "csc-pattern-statistics/1"

_PASS_THROUGH = (klayers.BatchNormalization, klayers.Dropout)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    ok = denominator != 0
    return np.where(ok, numerator / np.where(ok, denominator, 1.0), 0.0)


def linear_pattern(cov_xy: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Eq. 9: ``A[:, j] = cov(x, y_j) / (w_j^T cov(x, y_j))`` for a kernel
    matrix ``kernel`` (n_in, n_out) and the cross-covariance ``cov_xy``
    (n_in, n_out) of the inputs with the outputs ``y = kernel^T x``."""
    if cov_xy.shape != kernel.shape:
        raise ValueError(f"cov_xy {cov_xy.shape} and kernel {kernel.shape} differ in shape")
    denominator = np.einsum("io,io->o", kernel, cov_xy)
    return _safe_divide(cov_xy, denominator[None, :])


def _is_relu_layer(layer) -> bool:
    """A ReLU / Activation("relu") layer (plain ReLU: no cap, slope or threshold)."""
    if isinstance(layer, klayers.ReLU):
        return (layer.max_value is None and float(layer.negative_slope) == 0.0
                and float(layer.threshold) == 0.0)
    return isinstance(layer, klayers.Activation) and _activation_name(layer) == "relu"


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def _is_linear_activation(layer) -> bool:
    return isinstance(layer, klayers.Activation) and _activation_name(layer) == "linear"


def relu_output_tensors(model) -> dict:
    """``{layer name: tensor or None}``: for every pattern layer the ReLU
    output whose positivity selects the samples of the ``relu`` estimator
    (its own ReLU activation, or a ReLU layer reached through
    BatchNormalization, Dropout or linear activations only)."""
    _layers, execution, _outputs = igraph.trace_model_execution(model)
    consumers: dict = {}
    outputs: dict = {}
    for layer, xs, ys in execution:
        for x in _to_list(xs):
            consumers.setdefault(id(x), []).append((layer, ys))
        outputs.setdefault(layer.name, []).append(ys)
    result = {}
    for layer in pattern_layers(model):
        if len(outputs.get(layer.name, [])) != 1:
            raise ValueError(f"layer {layer.name!r} is applied "
                             f"{len(outputs.get(layer.name, []))} times in model "
                             f"{model.name!r}; patterns need layers applied once")
        tensor = _to_list(outputs[layer.name][0])[0]
        found = tensor if _activation_name(layer) == "relu" else None
        while found is None:
            following = consumers.get(id(tensor), [])
            if len(following) != 1:
                break
            current, ys = following[0]
            tensor = _to_list(ys)[0]
            if _is_relu_layer(current):
                found = tensor
            elif not (isinstance(current, _PASS_THROUGH) or _is_linear_activation(current)):
                break
        result[layer.name] = found
    return result


def _to_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _accumulate(total: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``total += a.T @ b`` in place (BLAS dgemm with beta=1, no temporary);
    ``total`` is a Fortran-ordered float64 matrix, ``a``, ``b`` C-ordered."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    # a.T and b.T are Fortran-ordered views: no copies for BLAS.
    result = blas.dgemm(1.0, a.T, b.T, beta=1.0, c=total, trans_b=True, overwrite_c=True)
    if not np.shares_memory(result, total):
        total[...] = result


def _zeros(shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64, order="F")


class LayerStatistics:
    """Float64 sums over samples (x, y = K^T x) of one layer.

    ``update(x, y, positive)`` adds a chunk of samples: ``x`` (m, n_in), ``y``
    (m, n_out) and, for the two-component estimator, the boolean mask
    ``positive`` (m, n_out) of samples with positive ReLU output.
    """

    FIELDS = ("count", "sum_x", "sum_y", "sum_xy")
    POSITIVE_FIELDS = ("count_pos", "sum_x_pos", "sum_xy_pos")

    def __init__(self, n_in: int, n_out: int, two_component: bool):
        self.two_component = two_component
        self.count = np.zeros((), np.float64)
        self.sum_x = np.zeros(n_in, np.float64)
        self.sum_y = np.zeros(n_out, np.float64)
        self.sum_xy = _zeros((n_in, n_out))
        if two_component:
            self.count_pos = np.zeros(n_out, np.float64)
            self.sum_x_pos = _zeros((n_in, n_out))
            self.sum_xy_pos = _zeros((n_in, n_out))

    @property
    def fields(self) -> tuple:
        return self.FIELDS + (self.POSITIVE_FIELDS if self.two_component else ())

    def update(self, x: np.ndarray, y: np.ndarray, positive: np.ndarray | None = None) -> None:
        if x.shape[0] != y.shape[0] or x.shape[1] != self.sum_x.shape[0] \
                or y.shape[1] != self.sum_y.shape[0]:
            raise ValueError(f"x {x.shape} and y {y.shape} do not match statistics "
                             f"of shape {self.sum_xy.shape}")
        self.count += x.shape[0]
        self.sum_x += x.sum(axis=0)
        self.sum_y += y.sum(axis=0)
        _accumulate(self.sum_xy, x, y)
        if self.two_component:
            if positive is None or positive.shape != y.shape:
                raise ValueError("the two-component estimator needs a mask shaped like y")
            mask = positive.astype(np.float64)
            self.count_pos += mask.sum(axis=0)
            _accumulate(self.sum_x_pos, x, mask)
            _accumulate(self.sum_xy_pos, x, y * mask)

    def pattern(self, kernel: np.ndarray, *, block: int = 256) -> np.ndarray:
        """The float32 pattern matrix (n_in, n_out) for the kernel matrix
        ``kernel``, computed ``block`` output columns at a time (bounded
        temporaries)."""
        if self.count == 0:
            raise ValueError("no samples seen")
        mean_y = self.sum_y / self.count
        mean_x = self.sum_x / self.count
        result = np.empty(kernel.shape, dtype=np.float32)
        for start in range(0, kernel.shape[1], block):
            cols = slice(start, start + block)
            if self.two_component:
                count_pos = self.count_pos[None, cols]
                mean_x_pos = _safe_divide(self.sum_x_pos[:, cols], count_pos)
                mean_xy_pos = _safe_divide(self.sum_xy_pos[:, cols], count_pos)
                cov = mean_xy_pos - mean_x_pos * mean_y[None, cols]
            else:
                cov = self.sum_xy[:, cols] / self.count - np.outer(mean_x, mean_y[cols])
            result[:, cols] = linear_pattern(cov, kernel[:, cols])
        return result

    def arrays(self) -> dict:
        return {name: getattr(self, name) for name in self.fields}

    def load_arrays(self, arrays: dict) -> None:
        for name in self.fields:
            value = np.asarray(arrays[name], dtype=np.float64)
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"statistic {name} has shape {value.shape}, "
                                 f"expected {getattr(self, name).shape}")
            setattr(self, name, np.array(value, dtype=np.float64, order="F"))


def _as_matrix(kernel: np.ndarray) -> np.ndarray:
    return np.asarray(kernel, dtype=np.float64).reshape(-1, kernel.shape[-1])


def kernel_matrix(layer) -> np.ndarray:
    """The layer's kernel as a float64 (n_in, n_out) matrix."""
    return _as_matrix(layer.get_weights()[0])


class PatternEstimator:
    """Streams input batches through ``model`` and accumulates, per Dense and
    Conv2D layer, the statistics of ``estimator`` ("linear" or "relu").

    ``positions_per_image``: for convolutions, use this many output positions
    per image drawn with ``rng`` (``None``: all positions, the default).
    ``max_rows`` bounds the number of patches materialised at once.
    """

    def __init__(self, model, estimator: str = "linear", *, positions_per_image=None,
                 rng: np.random.Generator | None = None, max_rows: int = 1 << 15):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; valid: {ESTIMATORS}")
        if positions_per_image is not None and positions_per_image < 1:
            raise ValueError(f"positions_per_image must be >= 1, got {positions_per_image}")
        if len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; "
                             "pattern estimation supports single-input models")
        self.model = model
        self.estimator = estimator
        self.positions_per_image = positions_per_image
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.max_rows = max_rows
        self.layers = pattern_layers(model)
        if not self.layers:
            raise ValueError(f"model {model.name!r} has no Dense or Conv2D layer")
        weights = pattern_layer_weights(model)
        self.fingerprints = model_fingerprints(model, weights)
        self.kernels = {name: _as_matrix(values[0]) for name, values in weights.items()}
        del weights
        relus = relu_output_tensors(model) if estimator == "relu" else {}
        self.masks = {layer.name: relus.get(layer.name) for layer in self.layers}
        self.layer_estimators = {name: "relu" if self.masks[name] is not None else "linear"
                                 for name in self.kernels}
        self.geometry = {layer.name: conv_geometry(layer) for layer in self.layers
                         if isinstance(layer, klayers.Conv2D)}
        self.stats = {name: LayerStatistics(k.shape[0], k.shape[1],
                                            self.layer_estimators[name] == "relu")
                      for name, k in self.kernels.items()}
        self.batches_seen = 0
        fetches = [layer.input for layer in self.layers]
        fetches += [m for m in self.masks.values() if m is not None]
        # The model input itself cannot be fetched while it is fed.
        self._fed = [any(t is x for x in model.inputs) for t in fetches]
        fetched = [t for t, fed in zip(fetches, self._fed) if not fed]
        self._function = (tf.compat.v1.keras.backend.function(model.inputs, fetched)
                          if fetched else (lambda _inputs: []))

    # -- accumulation ------------------------------------------------------
    def update(self, batch: np.ndarray) -> None:
        """Add one batch of model inputs to the statistics."""
        batch = np.asarray(batch, dtype=np.float32)
        fetched = iter(self._function([batch]))
        values = [batch if fed else next(fetched) for fed in self._fed]
        inputs = dict(zip([layer.name for layer in self.layers], values))
        mask_values = iter(values[len(self.layers):])
        masks = {name: (next(mask_values) > 0 if m is not None else None)
                 for name, m in self.masks.items()}
        for layer in self.layers:
            name = layer.name
            if name in self.geometry:
                self._update_conv(name, inputs[name], masks[name])
            else:
                self._update_dense(name, inputs[name], masks[name])
        self.batches_seen += 1

    def _update_dense(self, name, x, mask):
        kernel = self.kernels[name]
        x = np.asarray(x, dtype=np.float64).reshape(-1, kernel.shape[0])
        positive = None if mask is None else mask.reshape(-1, kernel.shape[1])
        self.stats[name].update(x, x @ kernel, positive)

    def _update_conv(self, name, x, mask):
        kernel, geometry = self.kernels[name], self.geometry[name]
        if self.positions_per_image is not None:
            self._update_conv_sampled(name, x, mask)
            return
        for image, rows, patches in patch_rows(x, max_rows=self.max_rows, **geometry):
            positive = None
            if mask is not None:
                positive = mask[image, rows].reshape(-1, kernel.shape[1])
            self.stats[name].update(patches, patches @ kernel, positive)

    def _update_conv_sampled(self, name, x, mask):
        kernel, geometry = self.kernels[name], self.geometry[name]
        out_h, out_w = output_size(x.shape, **geometry)
        take = min(self.positions_per_image, out_h * out_w)
        xs, positives = [], []
        for image in range(x.shape[0]):
            chosen = self.rng.choice(out_h * out_w, size=take, replace=False)
            rows, cols = np.divmod(chosen, out_w)
            xs.append(patches_at(x[image], rows, cols, **geometry))
            if mask is not None:
                positives.append(mask[image, rows, cols])
        patches = np.concatenate(xs)
        positive = np.concatenate(positives) if mask is not None else None
        self.stats[name].update(patches, patches @ kernel, positive)

    def fit(self, batches: Iterable, *, skip: int = 0, progress=None, checkpoint=None,
            checkpoint_every: int = 0) -> "PatternEstimator":
        """Consume ``batches``; the first ``skip`` batches are passed over (a
        resumed run). With ``checkpoint`` (a path) the statistics are saved
        every ``checkpoint_every`` batches and at the end."""
        for index, batch in enumerate(batches):
            if index < skip:
                continue
            self.update(batch)
            if progress is not None:
                progress.update(1)
            if checkpoint is not None and checkpoint_every and \
                    self.batches_seen % checkpoint_every == 0:
                self.save_statistics(checkpoint)
        if checkpoint is not None:
            self.save_statistics(checkpoint)
        return self

    # -- results -----------------------------------------------------------
    def patterns(self) -> PatternSet:
        """The patterns (kernel-shaped float32 arrays keyed by layer name)."""
        patterns, counts = {}, {}
        for layer in self.layers:
            name = layer.name
            matrix = self.stats[name].pattern(self.kernels[name])
            patterns[name] = matrix.reshape(tuple(layer.kernel.shape))
            counts[name] = int(self.stats[name].count)
        return PatternSet(patterns, self.estimator, counts, dict(self.fingerprints),
                          dict(self.layer_estimators))

    # -- resumable statistics --------------------------------------------
    def save_statistics(self, path) -> Path:
        """Save the accumulators (atomically) so that a run can resume."""
        meta = {"format": STATISTICS_FORMAT, "estimator": self.estimator,
                "batches_seen": self.batches_seen,
                "positions_per_image": self.positions_per_image,
                "model_fingerprint": combined_fingerprint(self.fingerprints),
                "fingerprints": self.fingerprints,
                "layer_estimators": self.layer_estimators,
                "rng_state": self.rng.bit_generator.state}
        arrays = {f"{name}::{field}": value for name, stats in self.stats.items()
                  for field, value in stats.arrays().items()}
        arrays["__meta__"] = meta_array(meta)
        atomic_savez(path, arrays)
        return Path(path)

    def load_statistics(self, path) -> int:
        """Restore accumulators saved by :meth:`save_statistics` for the same
        model and estimator; returns the number of batches they hold."""
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            meta = read_meta(data, path)
            if meta.get("format") != STATISTICS_FORMAT:
                raise ValueError(f"{path}: not a pattern statistics file")
            if meta["estimator"] != self.estimator:
                raise ValueError(f"{path}: statistics of estimator {meta['estimator']!r}, "
                                 f"this run uses {self.estimator!r}")
            if meta.get("positions_per_image") != self.positions_per_image:
                raise ValueError(f"{path}: statistics with positions_per_image="
                                 f"{meta.get('positions_per_image')}, this run uses "
                                 f"{self.positions_per_image}")
            for name, expected in meta["fingerprints"].items():
                actual = self.fingerprints.get(name)
                if actual != expected:
                    raise ValueError(
                        f"{path}: statistics of layer {name!r} belong to other weights "
                        f"(fingerprint {expected}, model {self.model.name!r} has {actual})")
            missing = [name for name in self.stats if name not in meta["fingerprints"]]
            if missing:
                raise ValueError(f"{path}: no statistics for layer(s) {missing}")
            for name, stats in self.stats.items():
                stats.load_arrays({field: data[f"{name}::{field}"] for field in stats.fields})
        self.batches_seen = int(meta["batches_seen"])
        self.rng.bit_generator.state = meta["rng_state"]
        return self.batches_seen


def estimate_patterns(model, batches: Iterable, estimator: str = "linear",
                      **options) -> PatternSet:
    """Patterns of every Dense/Conv2D layer of ``model`` from ``batches`` (an
    iterable of input arrays); ``options`` go to :class:`PatternEstimator`."""
    return PatternEstimator(model, estimator, **options).fit(batches).patterns()
