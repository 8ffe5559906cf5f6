"""Theorem 1 simulation with VGG-16's layer shapes (appendix B, the paper's
``convergence_simulation.ipynb``).

The paper propagates ``n_vectors`` random N(0, I) vectors (32 in the paper)
through a chain of backward matrices with the shapes of VGG-16's 16
Dense/Conv2D layers, top to bottom, and measures how the vectors align with
depth. As in the paper, every layer is one 1x1 matrix: a convolution's
centre slice ``kernel[kh // 2, kw // 2]`` (``c_in x c_out``) and fc1 one
location of its 7 x 7 x 512 input (512 x 4096), so the chain is 1000 ->
4096 -> 4096 -> 512 -> ... -> 64 -> 3 (:func:`vgg16_backward_shapes`).

Families (:func:`simulate_vgg16_chains`):

* ``alpha=a,beta=b`` for a = 1..10, b = a - 1: the paper's
  ``get_alpha_beta_matrix``: ``W`` standard normal, the matrix is
  ``a * max(W, 0) + b * min(W, 0)`` (positive entries scaled by a, negative
  entries by b, signs kept). a = 1 is non-negative: Theorem 1 applies.
* ``signed gaussian``: ``W`` standard normal (the paper's "vanilla").
* ``ReLU``: ``W`` standard normal, the propagated vectors clipped at 0
  after every matrix (the paper's "ReLU").
* ``ReLU network weights``: the network's centre slices (the paper's
  "ReLU learned"), clipped like ``ReLU``.
* ``pattern A*W``: the network's centre slices of ``A (.) W``
  (PatternAttribution's backward matrices, eq. 11), no clipping; only when
  patterns are given.

The network's weights: a Keras model (with the patterns estimated for it)
when given; otherwise generated centre slices (:func:`generated_vgg16_slices`,
the distribution of a Keras VGG-16 built with ``weights=None``:
Glorot-uniform with the whole kernel's fans) and no pattern chain. The
``weights`` column says which.

Measured at every depth k = 0 .. 16 (k = 0: the input vectors) on the
``n_vectors x n_k`` matrix ``X_k`` whose rows are the propagated vectors:

* ``csc``: the mean |cosine similarity| over the distinct pairs of rows
  (vectors that became zero give NaN pairs, left out). The paper's notebook
  averaged over the lower triangle *including* the diagonal (n ones), i.e.
  ``(P * csc + n) / (P + n)`` with ``P = n (n - 1) / 2``, slightly higher.
* ``sv_ratio``: sigma1/sigma2 of ``X_k``; it grows without bound exactly
  when the propagated vectors collapse onto one direction. (For the linear
  families ``X_k = V C_k`` with the chain product ``C_k``; the ReLU
  families have no matrix product.)

``X_k`` is rescaled to unit Frobenius norm after each step (neither
quantity changes). Randomness: one ``np.random.default_rng`` passed in.
Common random numbers (unlike the paper, which draws every family anew):
in each trial the alpha-beta, signed Gaussian and ReLU families transform
the same standard normal matrices and start from the same vectors, and the
two network chains share their vectors; each family has the paper's
distribution, the comparison between families is paired, and the
simulation draws a tenth of the numbers. Precision:
all matrices are float32 (drawn so: twice as fast, and the 4096 x 4096
layers dominate the time), the vectors and the products float64.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

# VGG-16's Dense/Conv2D layers in model order: (name, kh, kw, c_in, c_out);
# fc1 reads a Flatten of 7 x 7 x 512.
VGG16_LAYERS = (
    ("block1_conv1", 3, 3, 3, 64), ("block1_conv2", 3, 3, 64, 64),
    ("block2_conv1", 3, 3, 64, 128), ("block2_conv2", 3, 3, 128, 128),
    ("block3_conv1", 3, 3, 128, 256), ("block3_conv2", 3, 3, 256, 256),
    ("block3_conv3", 3, 3, 256, 256), ("block4_conv1", 3, 3, 256, 512),
    ("block4_conv2", 3, 3, 512, 512), ("block4_conv3", 3, 3, 512, 512),
    ("block5_conv1", 3, 3, 512, 512), ("block5_conv2", 3, 3, 512, 512),
    ("block5_conv3", 3, 3, 512, 512), ("fc1", 7, 7, 512, 4096),
    ("fc2", 1, 1, 4096, 4096), ("predictions", 1, 1, 4096, 1000),
)
ALPHAS = tuple(range(1, 11))
GENERATED = "generated (Glorot-uniform, as Keras' VGG-16 with weights=None)"


def vgg16_backward_shapes() -> list:
    """``[(rows, cols)]`` of the backward chain, top layer first: the
    transposed centre slices (the paper's ``vgg_backward_shps``)."""
    return [(c_out, c_in) for _, _, _, c_in, c_out in VGG16_LAYERS[::-1]]


def alpha_beta(w: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``alpha * max(w, 0) + beta * min(w, 0)`` as a new float32 array."""
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
    w = np.asarray(w, dtype=np.float32)
    out = np.maximum(w, np.float32(0))  # beta * w + (alpha - beta) * max(w, 0)
    out *= np.float32(alpha - beta)
    out += np.float32(beta) * w
    return out


def alpha_beta_matrix(rng: np.random.Generator, shape, alpha: float, beta: float
                      ) -> np.ndarray:
    """The paper's ``get_alpha_beta_matrix``: :func:`alpha_beta` of a standard
    normal ``W`` drawn with ``rng.standard_normal(shape, dtype=np.float32)``."""
    return alpha_beta(_normal(rng, shape), alpha, beta)


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def generated_vgg16_slices(rng: np.random.Generator) -> list:
    """Backward matrices (top first) of a generated VGG-16: each layer's centre
    slice drawn Glorot-uniform with the limit ``sqrt(6 / (fan_in + fan_out))``
    of the whole kernel (fans ``kh * kw * c_in`` and ``kh * kw * c_out``; for
    fc1 ``25088`` and ``4096``), transposed."""
    matrices = []
    for _, kh, kw, c_in, c_out in VGG16_LAYERS[::-1]:
        if (kh, kw) == (7, 7):  # fc1: a Dense kernel, fans of its 25088 x 4096 shape
            fan_in, fan_out = kh * kw * c_in, c_out
        else:
            fan_in, fan_out = kh * kw * c_in, kh * kw * c_out
        limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
        uniform = rng.random((c_out, c_in), dtype=np.float32)
        matrices.append(limit * (2 * uniform - 1))
    return matrices


def network_slices(model, patterns=None) -> dict:
    """``{"W": [...], "A*W": [...]}``: backward matrices (top first) of the
    model's Dense/Conv2D layers, the transposed centre slices
    (:func:`csc_analyzers.pattern.spectra.centre_slice`); ``"A*W"`` only with
    ``patterns`` (checked against the model). The layers must chain."""
    from .pattern.spectra import _flatten_source_shape, centre_slice
    from .pattern.storage import pattern_layer_weights, pattern_layers, resolve_patterns

    weights = pattern_layer_weights(model)
    resolved = resolve_patterns(patterns, model) if patterns is not None else None
    out = {"W": []} if resolved is None else {"W": [], "A*W": []}
    previous = None
    for layer in pattern_layers(model):
        kernel = np.asarray(weights[layer.name][0])
        spatial = _flatten_source_shape(layer) if kernel.ndim == 2 else None
        mats = {"W": kernel}
        if resolved is not None:
            mats["A*W"] = np.asarray(resolved[layer.name]) * kernel
        for kind in out:
            out[kind].append(np.asarray(centre_slice(mats[kind], spatial=spatial)[1]).T)
        c_out, c_in = out["W"][-1].shape
        if previous is not None and previous[1] != c_in:
            raise ValueError(f"layer {layer.name!r} has {c_in} input channels after "
                             f"{previous[0]!r} with {previous[1]} outputs: the layers "
                             "do not chain")
        previous = (layer.name, c_out)
    if previous is None:
        raise ValueError(f"model {model.name!r} has no Dense/Conv2D layers")
    return {kind: matrices[::-1] for kind, matrices in out.items()}


def chain_convergence(vectors: np.ndarray, matrices: Sequence[np.ndarray], *,
                      relu: bool = False) -> pd.DataFrame:
    """``depth, rows, cols, sv_ratio, csc`` of ``X_k`` for k = 0 .. len(matrices)
    (module docstring); ``vectors`` is ``X_0`` (one vector per row)."""
    from .convergence import singular_value_ratio

    x = np.asarray(vectors, np.float64)
    rows = []
    for depth in range(len(matrices) + 1):
        if depth:
            matrix = matrices[depth - 1]
            if x.shape[1] != matrix.shape[0]:
                raise ValueError(f"matrix {depth} has {matrix.shape[0]} rows, the vectors "
                                 f"{x.shape[1]} entries")
            x = x @ matrix  # float64 result for a float32 matrix
            if relu:
                x = np.maximum(x, 0.0)
            norm = np.linalg.norm(x)
            x = x / norm if norm > 0 else x
        rows.append({"depth": depth, "rows": x.shape[0], "cols": x.shape[1],
                     "sv_ratio": singular_value_ratio(x), "csc": _mean_abs_cosine(x)})
    return pd.DataFrame(rows)


def _mean_abs_cosine(x: np.ndarray) -> float:
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = x / norms[:, None]
    cos = np.abs(unit @ unit.T)[np.triu_indices(len(x), k=1)]
    cos = cos[np.isfinite(cos)]
    return float(np.mean(np.clip(cos, 0.0, 1.0))) if cos.size else float("nan")


def simulate_vgg16_chains(*, rng: np.random.Generator, n_trials: int = 20,
                          n_vectors: int = 32, alphas: Sequence[int] = ALPHAS,
                          model=None, patterns=None, weights_label: Optional[str] = None,
                          gaussian: bool = True) -> pd.DataFrame:
    """The appendix-B chains with VGG-16's shapes (module docstring). Tidy rows
    ``family, weights, relu, trial, depth, rows, cols, sv_ratio, csc``.

    ``model`` (a Keras VGG-16, or any chain of Dense/Conv2D layers) gives the
    network's weights (``weights_label`` names them) and, with ``patterns``,
    the ``pattern A*W`` chain; without it the weights are generated per trial.
    ``gaussian=False`` leaves out the ``signed gaussian`` and ``ReLU`` families.
    """
    if n_trials < 1 or n_vectors < 2:
        raise ValueError(f"need n_trials >= 1 and n_vectors >= 2, got {n_trials}, {n_vectors}")
    if patterns is not None and model is None:
        raise ValueError("patterns need the model they were estimated for (model=...)")
    shapes = vgg16_backward_shapes()
    network = network_slices(model, patterns) if model is not None else None
    label = weights_label or ("network" if model is not None else GENERATED)
    first = network["W"][0].shape[0] if network else shapes[0][0]
    frames = []

    def add(family, weights, relu, trial, vectors, matrices):
        frame = chain_convergence(vectors, matrices, relu=relu)
        frame.insert(0, "trial", trial)
        frame.insert(0, "relu", relu)
        frame.insert(0, "weights", weights)
        frame.insert(0, "family", family)
        frames.append(frame)

    for trial in range(n_trials):
        # common random numbers: the random families of a trial transform the
        # same standard normal matrices and start from the same vectors
        vectors = rng.standard_normal((n_vectors, shapes[0][0]))
        gaussians = [_normal(rng, shape) for shape in shapes]
        for alpha in alphas:
            beta = alpha - 1
            add(f"alpha={alpha},beta={beta}", "random N(0, 1)", False, trial, vectors,
                [alpha_beta(w, alpha, beta) for w in gaussians])
        if gaussian:
            add("signed gaussian", "random N(0, 1)", False, trial, vectors, gaussians)
            add("ReLU", "random N(0, 1)", True, trial, vectors, gaussians)
        vectors = rng.standard_normal((n_vectors, first))
        add("ReLU network weights", label, True, trial, vectors,
            network["W"] if network else generated_vgg16_slices(rng))
        if network and "A*W" in network:
            add("pattern A*W", label, False, trial, vectors, network["A*W"])
    return pd.concat(frames, ignore_index=True)


__all__ = ["VGG16_LAYERS", "ALPHAS", "GENERATED", "vgg16_backward_shapes",
           "alpha_beta", "alpha_beta_matrix", "generated_vgg16_slices", "network_slices",
           "chain_convergence", "simulate_vgg16_chains"]
