"""Pattern estimators of Kindermans et al. (2018) from streamed statistics.

Every Dense and Conv2D layer computes ``y = K^T x`` per sample (plus a bias),
with ``K`` the kernel reshaped to ``(n_in, n_out)``; for a convolution the
samples are the input patches at every output position
(:mod:`csc_analyzers.pattern.unfold`). The estimators need only sums over the
samples, accumulated in float64 one batch at a time (in the graph of
:mod:`csc_analyzers.pattern.graph`, one ``session.run`` per batch for all
layers), so the memory is that of the sums (the kernels' size, two or three
times) plus one batch.

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

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.backend.graph as igraph
import tensorflow as tf
from tensorflow.keras import layers as klayers

from .storage import (PatternSet, atomic_savez, combined_fingerprint, meta_array,
                      model_fingerprints, pattern_layer_weights, pattern_layers,
                      read_meta)
from .graph import Accumulators, centers, layer_sums
from .unfold import conv_geometry

ESTIMATORS = ("linear", "relu")
STATISTICS_FORMAT = "csc-pattern-statistics/2"

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


class LayerStatistics:
    """Float64 sums over the samples of one layer, of the centred input
    ``x' = x - center_x`` and pre-activation ``y' = K^T x + b - center_y``.

    ``center_x`` (per input channel; tiled over the kernel positions of a
    convolution) and ``center_y`` (per output) are fixed before the first
    batch. Linear estimator: ``count``, ``sum_x``, ``sum_y`` and ``sum_xy``
    (``sum x' y'^T``). Two-component estimator: ``count``, ``sum_y`` and,
    over the samples with positive ReLU output of each neuron,
    ``count_pos``, ``sum_y_pos``, ``sum_x_pos`` and ``sum_xy_pos``. A sample
    of a convolution is one input patch; with sampled positions only the
    sampled patches count.

    The linear estimator's covariance is the same for any centring; the
    two-component one is ``E+[x'y'] - E+[x'] E[y'] - c (E[y'] - E+[y'])``,
    the ``x, y`` form of the module docstring.
    """

    LINEAR_FIELDS = ("center_x", "center_y", "count", "sum_x", "sum_y", "sum_xy")
    TWO_COMPONENT_FIELDS = ("center_x", "center_y", "count", "sum_y", "count_pos",
                            "sum_y_pos", "sum_x_pos", "sum_xy_pos")

    def __init__(self, n_in: int, n_out: int, two_component: bool, n_channels=None):
        self.two_component = two_component
        n_channels = n_in if n_channels is None else n_channels
        if n_in % n_channels:
            raise ValueError(f"{n_in} inputs are not a whole number of {n_channels} channels")
        self.shapes = {"center_x": (n_channels,), "center_y": (n_out,), "count": (),
                       "sum_x": (n_in,), "sum_y": (n_out,), "sum_xy": (n_in, n_out),
                       "count_pos": (n_out,), "sum_y_pos": (n_out,),
                       "sum_x_pos": (n_in, n_out), "sum_xy_pos": (n_in, n_out)}
        for name in self.fields:
            setattr(self, name, np.zeros(self.shapes[name], np.float64))

    @property
    def fields(self) -> tuple:
        return self.TWO_COMPONENT_FIELDS if self.two_component else self.LINEAR_FIELDS

    @property
    def product_fields(self) -> tuple:
        """The matrix sums, in the order the statistics graph computes them
        side by side (vectors become one column)."""
        return ("sum_x_pos", "sum_xy_pos") if self.two_component else ("sum_xy", "sum_x")

    def accumulator_shapes(self) -> dict:
        """Shapes of the graph's accumulators: the fields, with the matrix
        sums joined as ``products``."""
        shapes = {f: self.shapes[f] for f in self.fields if f not in self.product_fields}
        n_in, n_out = self.shapes["sum_xy"]
        shapes["products"] = (n_in, 2 * n_out if self.two_component else n_out + 1)
        return shapes

    def set_accumulators(self, values: dict) -> None:
        """Set the fields from accumulator values (:meth:`accumulator_shapes`)."""
        n_out = self.shapes["sum_y"][0]
        first, second = self.product_fields
        for field, value in values.items():
            if field == "products":
                setattr(self, first, np.ascontiguousarray(value[:, :n_out]))
                setattr(self, second, np.ascontiguousarray(
                    value[:, n_out:] if self.two_component else value[:, n_out]))
            else:
                setattr(self, field, value)

    def accumulators(self) -> dict:
        """The fields as accumulator values (inverse of :meth:`set_accumulators`)."""
        first, second = (getattr(self, f) for f in self.product_fields)
        values = {f: getattr(self, f) for f in self.fields if f not in self.product_fields}
        values["products"] = np.concatenate([first, second if second.ndim == 2
                                             else second[:, None]], axis=1)
        return values

    def pattern(self, kernel: np.ndarray, *, block: int = 256) -> np.ndarray:
        """The float32 pattern matrix (n_in, n_out) for the kernel matrix
        ``kernel``, computed ``block`` output columns at a time (bounded
        temporaries)."""
        if self.count == 0:
            raise ValueError("no samples seen")
        mean_y = self.sum_y / self.count
        center_x = np.tile(self.center_x, kernel.shape[0] // len(self.center_x))
        result = np.empty(kernel.shape, dtype=np.float32)
        for start in range(0, kernel.shape[1], block):
            cols = slice(start, start + block)
            if self.two_component:
                count_pos = self.count_pos[None, cols]
                mean_x_pos = _safe_divide(self.sum_x_pos[:, cols], count_pos)
                mean_xy_pos = _safe_divide(self.sum_xy_pos[:, cols], count_pos)
                mean_y_pos = _safe_divide(self.sum_y_pos[cols], self.count_pos[cols])
                cov = (mean_xy_pos - mean_x_pos * mean_y[None, cols]
                       - np.outer(center_x, mean_y[cols] - mean_y_pos))
                cov[:, self.count_pos[cols] == 0] = 0.0  # never active: zero pattern
            else:
                mean_x = self.sum_x / self.count
                cov = self.sum_xy[:, cols] / self.count - np.outer(mean_x, mean_y[cols])
            result[:, cols] = linear_pattern(cov, kernel[:, cols])
        return result

    def arrays(self) -> dict:
        return {name: getattr(self, name) for name in self.fields}

    def load_arrays(self, arrays: dict) -> None:
        for name in self.fields:
            value = np.asarray(arrays[name], dtype=np.float64)
            if value.shape != self.shapes[name]:
                raise ValueError(f"statistic {name} has shape {value.shape}, "
                                 f"expected {self.shapes[name]}")
            setattr(self, name, np.array(value, dtype=np.float64))


def _as_matrix(kernel: np.ndarray) -> np.ndarray:
    return np.asarray(kernel, dtype=np.float64).reshape(-1, kernel.shape[-1])


def kernel_matrix(layer) -> np.ndarray:
    """The layer's kernel as a float64 (n_in, n_out) matrix."""
    return _as_matrix(layer.get_weights()[0])


class PatternEstimator:
    """Streams input batches through ``model`` and accumulates, per Dense and
    Conv2D layer, the statistics of ``estimator`` ("linear" or "relu").

    Every batch is one ``session.run`` of a graph that holds the forward pass
    and every layer's sums (:mod:`csc_analyzers.pattern.graph`); the sums
    live in float64 variables until :meth:`patterns` or a checkpoint reads
    them.

    ``positions_per_image``: for convolutions, count only this many output
    positions per image, drawn with ``rng`` (``None``: all positions, the
    default). ``chunk``: images per session run; the float32 products of a
    run sum over its samples (a run of 64 CIFAR images sums 65,536 patches
    per convolution), so smaller chunks round less.
    """

    def __init__(self, model, estimator: str = "linear", *, positions_per_image=None,
                 rng: np.random.Generator | None = None, chunk: int = 16):
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = int(chunk)
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
        self.stats = {layer.name: LayerStatistics(
            *self.kernels[layer.name].shape, self.layer_estimators[layer.name] == "relu",
            int(layer.input.shape[-1])) for layer in self.layers}
        self.batches_seen = 0
        self._build_graph()

    def _build_graph(self) -> None:
        sess = tf.compat.v1.keras.backend.get_session()
        shapes, deltas, initial, self._weights = {}, {}, {}, {}
        for layer in self.layers:
            name = layer.name
            for field, shape in self.stats[name].accumulator_shapes().items():
                shapes[(name, field)] = shape
        self._accumulators = Accumulators(shapes, sess)
        variables = self._accumulators.variables
        for layer in self.layers:
            name = layer.name
            weight = None
            if self.positions_per_image is not None and name in self.geometry:
                out_shape = tuple(int(d) for d in layer.output.shape[1:3])
                weight = tf.compat.v1.placeholder(tf.float32, (None,) + out_shape,
                                                  name=f"pattern_positions_{name}")
                self._weights[name] = weight
            center_x, center_y = variables[(name, "center_x")], variables[(name, "center_y")]
            sums = layer_sums(layer, layer.input, layer.output, self.masks[name],
                              self.geometry.get(name), center_x, center_y, weight)
            deltas.update({(name, field): value for field, value in sums.items()})
            mean_x, mean_y = centers(layer, layer.input, layer.output)
            initial.update({(name, "center_x"): mean_x, (name, "center_y"): mean_y})
        update = self._update_op = self._accumulators.update_op(deltas)
        feeds = [self.model.inputs[0]] + list(self._weights.values())
        self._run = sess.make_callable(update, feeds)
        self._center = sess.make_callable(self._accumulators.assign_op(initial),
                                          [self.model.inputs[0]])
        self._centred = False

    # -- accumulation ------------------------------------------------------
    def _position_weights(self, n_images: int) -> list:
        """Per sampled convolution, a 0/1 map of the positions drawn for each
        image (drawn layer by layer, image by image)."""
        maps = []
        for layer in self.layers:
            if layer.name not in self._weights:
                continue
            out_h, out_w = (int(d) for d in layer.output.shape[1:3])
            take = min(self.positions_per_image, out_h * out_w)
            chosen = np.zeros((n_images, out_h * out_w), np.float32)
            for image in range(n_images):
                chosen[image, self.rng.choice(out_h * out_w, size=take, replace=False)] = 1
            maps.append(chosen.reshape(n_images, out_h, out_w))
        return maps

    def update(self, batch: np.ndarray) -> None:
        """Add one batch of model inputs to the statistics (``chunk`` images
        per session run)."""
        batch = np.asarray(batch, dtype=np.float32)
        if not self._centred:  # the first batch fixes the centring
            self._center(batch)
            self._centred = True
        weights = self._position_weights(len(batch))
        for start in range(0, len(batch), self.chunk):
            part = slice(start, start + self.chunk)
            self._run(batch[part], *[w[part] for w in weights])
        self.batches_seen += 1

    def _read(self) -> None:
        """Copy the accumulators into :attr:`stats`."""
        values: dict = {}
        for (name, field), value in self._accumulators.read().items():
            values.setdefault(name, {})[field] = value
        for name, fields in values.items():
            self.stats[name].set_accumulators(fields)

    def fit(self, batches: Iterable, *, skip: int = 0, progress=None, checkpoint=None,
            checkpoint_every: int = 0, save_at_end: bool = True) -> "PatternEstimator":
        """Consume ``batches``; the first ``skip`` batches are passed over (a
        resumed run). With ``checkpoint`` (a path) the statistics are saved
        every ``checkpoint_every`` batches and, with ``save_at_end``, at the
        end."""
        for index, batch in enumerate(batches):
            if index < skip:
                continue
            self.update(batch)
            if progress is not None:
                progress.update(1)
            if checkpoint is not None and checkpoint_every and \
                    self.batches_seen % checkpoint_every == 0:
                self.save_statistics(checkpoint)
        if checkpoint is not None and save_at_end:
            self.save_statistics(checkpoint)
        return self

    # -- results -----------------------------------------------------------
    def patterns(self) -> PatternSet:
        """The patterns (kernel-shaped float32 arrays keyed by layer name)."""
        self._read()
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
        self._read()
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
            if meta.get("format") == "csc-pattern-statistics/1":
                raise ValueError(f"{path}: pattern statistics of an earlier version "
                                 "(format 1); delete the file to start the run afresh")
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
        self._accumulators.write({(name, field): value for name, stats in self.stats.items()
                                  for field, value in stats.accumulators().items()})
        self._centred = True
        self.batches_seen = int(meta["batches_seen"])
        self.rng.bit_generator.state = meta["rng_state"]
        return self.batches_seen


def estimate_patterns(model, batches: Iterable, estimator: str = "linear",
                      **options) -> PatternSet:
    """Patterns of every Dense/Conv2D layer of ``model`` from ``batches`` (an
    iterable of input arrays); ``options`` go to :class:`PatternEstimator`."""
    return PatternEstimator(model, estimator, **options).fit(batches).patterns()
