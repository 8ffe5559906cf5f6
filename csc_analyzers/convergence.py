"""Rank-1 convergence measured exactly: derivation matrices and Theorem 1.

For a rule that is linear in the injected relevance (given the input x), the
relevance of layer l is r_l = C v for the relevance v set at layer k, where
C = Z_l ... Z_k is the derivation matrix of section 2 (C_k of equation 6).
:func:`derivation_matrices` builds C column by column by propagating every
basis vector of layer k with ``analyzer.propagate``. The ratio sigma1/sigma2
of its two largest singular values is large exactly when C is close to rank
1, which is when CSC is close to 1 (section 3). For convolutional layers CSC
compares vectors per location, so the matching exact quantity is the ratio of
the block C_p of C that maps v to the c channels at location p
(:func:`location_singular_value_ratios`).

Theorem 1 (appendix B): products of random non-negative matrices converge
to rank 1 exponentially fast in the number of factors; signed Gaussian
matrices do not. :func:`simulate_theorem1` measures sigma1/sigma2 and CSC of
the partial products A_1 ... A_k.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .metrics.csc import pairwise_cosine


def derivation_matrices(analyzer, x: np.ndarray, from_layer: str,
                        to_layers: Sequence[str], *, batch_size: int = 64) -> dict:
    """The derivation matrix C of ``analyzer``'s rule at input ``x`` from the
    relevance of ``from_layer`` to each layer of ``to_layers``.

    Column j of C is the relevance at the lower layer when the basis vector
    e_j is injected at ``from_layer``. Returns name -> array of shape
    ``(size of to_layer, size of from_layer)``, both flattened channels last.
    Exact for rules that are linear in the injected relevance given x.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] != 1:
        raise ValueError(f"x must be one input with a batch axis of 1, got shape {x.shape}")
    shape = tuple(analyzer.relevance_shape(from_layer))
    size = int(np.prod(shape))
    columns = {name: [] for name in to_layers}
    for start in range(0, size, batch_size):
        stop = min(size, start + batch_size)
        basis = np.zeros((stop - start, size), dtype=np.float32)
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        out = analyzer.propagate(x, basis.reshape((stop - start,) + shape), from_layer,
                                 list(to_layers))
        for name in to_layers:
            columns[name].append(out[name].reshape(stop - start, -1))
    return {name: np.concatenate(parts, axis=0).T.astype(np.float64)
            for name, parts in columns.items()}


def _ratios(singular_values: np.ndarray) -> np.ndarray:
    """sigma1 / sigma2 along the last axis of sorted singular values (inf if
    sigma2 is 0, NaN if sigma1 is 0 or there are fewer than two)."""
    s = np.asarray(singular_values, dtype=np.float64)
    if s.shape[-1] < 2:
        return np.full(s.shape[:-1], np.nan)
    first, second = s[..., 0], s[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(second == 0, np.inf, first / np.where(second == 0, 1, second))
    return np.where(first == 0, np.nan, ratio)


def singular_value_ratio(matrix: np.ndarray) -> float:
    """sigma1 / sigma2 of ``matrix`` (inf if sigma2 is 0, NaN if the matrix is 0
    or has fewer than two singular values)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    return float(_ratios(np.linalg.svd(m, compute_uv=False)))


def location_singular_value_ratios(matrix: np.ndarray, channels: int) -> np.ndarray:
    """sigma1/sigma2 of each per-location block C_p of a derivation matrix whose
    rows are a channels-last layer (``channels`` rows per location); the
    blocks are decomposed in one stacked SVD."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] % channels:
        raise ValueError(
            f"matrix rows ({m.shape}) are not a multiple of channels={channels}")
    blocks = m.reshape(m.shape[0] // channels, channels, m.shape[1])
    return _ratios(np.linalg.svd(blocks, compute_uv=False))


def _signed_gaussian(rng, shape):
    return rng.standard_normal(shape)


def _abs_gaussian(rng, shape):
    return np.abs(rng.standard_normal(shape))


def _relu_gaussian(rng, shape):
    return np.maximum(rng.standard_normal(shape), 0.0)


def _uniform(rng, shape):
    return rng.uniform(0.0, 1.0, shape)


def _sparse_uniform(rng, shape):
    return rng.uniform(0.0, 1.0, shape) * (rng.uniform(size=shape) < 0.1)


def _row_stochastic(rng, shape):
    m = np.abs(rng.standard_normal(shape))
    return m / m.sum(axis=1, keepdims=True)


DISTRIBUTIONS: Mapping[str, Callable] = {
    "signed gaussian": _signed_gaussian,
    "|gaussian|": _abs_gaussian,
    "relu(gaussian)": _relu_gaussian,
    "uniform": _uniform,
    "sparse uniform": _sparse_uniform,
    "row-stochastic": _row_stochastic,
}
"""Random matrix distributions of the Theorem 1 simulation; all but the
first are non-negative."""

SHAPES: Mapping[str, Callable] = {
    "square 64": lambda n: [(64, 64)] * n,
    "square 256": lambda n: [(256, 256)] * n,
    "widening 16..512": lambda n: [(int(16 * 2 ** (i * 5 / max(n - 1, 1))),
                                    int(16 * 2 ** ((i + 1) * 5 / max(n - 1, 1))))
                                   for i in range(n)],
}
"""Factor shapes (rows, columns) of A_1 ... A_n; consecutive factors chain."""


def random_factors(distribution: str, shapes: Sequence[tuple], *,
                   rng: np.random.Generator) -> list:
    """Random matrices of the given ``distribution`` (a key of
    :data:`DISTRIBUTIONS`) and ``shapes``."""
    if distribution not in DISTRIBUTIONS:
        raise KeyError(f"unknown distribution {distribution!r}; valid: {list(DISTRIBUTIONS)}")
    for (_, cols), (rows, _) in zip(shapes[:-1], shapes[1:]):
        if cols != rows:
            raise ValueError(f"factor shapes do not chain: {list(shapes)}")
    return [DISTRIBUTIONS[distribution](rng, shape) for shape in shapes]


def product_convergence(factors: Sequence[np.ndarray], *, rng: np.random.Generator,
                        n_vectors: int = 10) -> pd.DataFrame:
    """sigma1/sigma2 and CSC of the partial products P_k = A_1 ... A_k.

    CSC is the median |s_cos| of P_k v_i for ``n_vectors`` random N(0, I)
    vectors v_i (as in the network experiment). The product is rescaled to
    unit Frobenius norm after each factor (directions are unchanged).
    Returns one row per k = 1 .. len(factors).
    """
    product = None
    rows = []
    for k, factor in enumerate(factors, start=1):
        product = factor if product is None else product @ factor
        product = product / np.linalg.norm(product)
        vectors = rng.standard_normal((product.shape[1], n_vectors))
        relevance = (product @ vectors).T
        csc = np.nanmedian(np.abs(pairwise_cosine(relevance)))
        rows.append({"n_factors": k, "sv_ratio": singular_value_ratio(product),
                     "csc": float(csc)})
    return pd.DataFrame(rows)


def simulate_theorem1(*, rng: np.random.Generator, n_factors: int = 12, n_trials: int = 10,
                      distributions: Sequence[str] = tuple(DISTRIBUTIONS),
                      shapes: Sequence[str] = tuple(SHAPES),
                      n_vectors: int = 10) -> pd.DataFrame:
    """The appendix-B simulation: for each distribution and shape family,
    ``n_trials`` random products of up to ``n_factors`` factors. Tidy rows
    (distribution, shape, trial, n_factors, sv_ratio, csc)."""
    frames = []
    for distribution in distributions:
        for shape_name in shapes:
            factor_shapes = SHAPES[shape_name](n_factors)
            for trial in range(n_trials):
                factors = random_factors(distribution, factor_shapes, rng=rng)
                frame = product_convergence(factors, rng=rng, n_vectors=n_vectors)
                frame.insert(0, "trial", trial)
                frame.insert(0, "shape", shape_name)
                frame.insert(0, "distribution", distribution)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


__all__ = ["derivation_matrices", "singular_value_ratio", "location_singular_value_ratios",
           "DISTRIBUTIONS", "SHAPES", "random_factors", "product_convergence",
           "simulate_theorem1"]
