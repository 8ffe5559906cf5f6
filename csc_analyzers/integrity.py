"""Result integrity: fingerprints that show the user's model was not changed,
and the flags that mark non-finite numbers in result tables.

* :func:`model_fingerprint` / :func:`file_fingerprint`: SHA-256 of a model's
  weights (names, shapes, dtypes and bytes) or of a file's / directory's bytes.
* :func:`unchanged_model`: a context manager raising
  :class:`~csc_analyzers.errors.ModelChangedError` if the model's weights (or
  its file) differ after the block, also when the block raised.
* :func:`flag_nonfinite`, :func:`count_nonfinite`: the ``nonfinite`` column of
  a result table and the per-method count of flagged rows for the report.
* :func:`undefined_reason`, :func:`undefined_reasons`, :func:`count_undefined`:
  why a map (and so the row scored from it) is undefined, the reason of each
  row of a table, and the count per method and reason.
* :func:`seeded_initialization`: models built inside it get the same random
  initial weights for the same seed.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ModelChangedError

NONFINITE = "nonfinite"
UNDEFINED = "undefined"
# Why a row's score is undefined, in the order they are tested: the input held
# NaN/Inf; a map held +-Inf (the backward pass overflowed); a map held NaN; a
# map is all zeros; a map is constant (no structure to compare); the score is
# NaN/Inf although its maps are defined (e.g. a share of no positive relevance).
NAN_INPUT, OVERFLOW, NAN_MAP, ZERO_MAP, CONSTANT_MAP = (
    "nan input", "overflow", "nan map", "zero map", "constant map")
UNDEFINED_SCORE = "undefined score"
UNKNOWN = "unknown"  # flagged in a table written before reasons were recorded
REASONS = (NAN_INPUT, OVERFLOW, NAN_MAP, ZERO_MAP, CONSTANT_MAP, UNDEFINED_SCORE, UNKNOWN)


def model_fingerprint(model) -> str:
    """SHA-256 over the model's weights: names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for variable, value in zip(model.weights, model.get_weights()):
        value = np.ascontiguousarray(value)
        digest.update(variable.name.encode("utf-8"))
        digest.update(repr((value.shape, value.dtype.str)).encode("utf-8"))
        digest.update(value.tobytes())
    return digest.hexdigest()


def file_fingerprint(path) -> str:
    """SHA-256 over a file's bytes, or over every file (relative path and bytes)
    of a directory such as a SavedModel."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        digest.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def unchanged_model(model, path=None):
    """Check on exit (also after an exception) that ``model``'s weights and,
    if given, the bytes at ``path`` are those of entry; raise
    :class:`ModelChangedError` otherwise (chained to the block's exception)."""
    before = model_fingerprint(model)
    file_before = file_fingerprint(path) if path is not None else None
    try:
        yield before
    finally:
        changed = []
        if model_fingerprint(model) != before:
            changed.append(f"the weights of model {model.name!r}")
        if path is not None and file_fingerprint(path) != file_before:
            changed.append(f"the model file {path}")
        if changed:
            raise ModelChangedError(" and ".join(changed) + " changed during the analysis")


@contextlib.contextmanager
def seeded_initialization(seed: int):
    """Inside the block, Keras initializers without an explicit seed draw
    their seeds from ``random.Random(seed)`` (Keras 2.14 takes them from
    Python's ``random`` module), so a model built here has the same random
    initial weights for the same ``seed``. The state of ``random`` is
    restored on exit. Keras prefers the generator that
    ``keras.utils.set_random_seed`` installs (per thread) to ``random``: it
    is put aside in the block, or a model's weights would depend on the
    models built since the last ``set_random_seed``."""
    seed_generator = _keras_seed_generator()
    generator = getattr(seed_generator, "generator", None)
    state = random.getstate()
    random.seed(int(seed))
    if seed_generator is not None:
        seed_generator.generator = None
    try:
        yield
    finally:
        random.setstate(state)
        if seed_generator is not None:
            seed_generator.generator = generator


def _keras_seed_generator():
    """Keras's thread-local holder of ``set_random_seed``'s generator, or None."""
    try:
        from keras.src import backend
    except ImportError:  # other Keras versions
        try:
            from keras import backend
        except ImportError:
            return None
    return getattr(backend, "_SEED_GENERATOR", None)


def is_nonfinite(value) -> bool:
    """True if ``value`` (a number or an array) is or holds NaN or +-Inf."""
    array = np.asarray(value, dtype=np.float64)
    return not bool(np.isfinite(array).all())


def undefined_reason(*maps, inputs=None, constant_undefined: bool = True) -> str:
    """Why the score of ``maps`` is undefined, "" if it is not: ``"nan input"``
    if ``inputs`` (the analysed image) holds NaN/Inf; ``"overflow"`` if a map
    holds +-Inf; ``"nan map"`` if a map holds NaN; ``"zero map"`` if a map is
    all zeros (finite, but SSIM and relevance shares have nothing to
    normalise); ``"constant map"`` if a map is constant and not zero (only if
    ``constant_undefined``: true for SSIM, whose percentile normalisation
    divides by zero; a class-sensitivity L1 is defined for it). The first
    reason that applies to any map wins."""
    if inputs is not None and not np.isfinite(np.asarray(inputs, dtype=np.float64)).all():
        return NAN_INPUT
    arrays = [np.asarray(m, dtype=np.float64) for m in maps]
    if any(np.isinf(a).any() for a in arrays):
        return OVERFLOW
    if any(np.isnan(a).any() for a in arrays):
        return NAN_MAP
    if any(a.size == 0 or not a.any() for a in arrays):
        return ZERO_MAP
    if constant_undefined and any(a.max() == a.min() for a in arrays):
        return CONSTANT_MAP
    return ""


def undefined_reasons(table: pd.DataFrame, *, column: str = "value") -> pd.Series:
    """Per row of ``table``, why it is not scored ("" if it is): the
    ``undefined`` column where it names a reason; else ``"undefined score"``
    for a NaN/Inf ``column`` or ``"unknown"`` for a row flagged ``nonfinite``.
    A table without the column (written before reasons were recorded) reads
    as before: its NaN/Inf or flagged rows get ``"unknown"``."""
    if column not in table.columns:
        raise ValueError(f"table has no column {column!r}; columns: {list(table.columns)}")
    if UNDEFINED in table.columns:
        given = table[UNDEFINED].fillna("").astype(str).str.strip()
        given = given.where(~given.str.lower().isin(("nan", "none", "false")), "")
    else:
        given = pd.Series("", index=table.index)
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    flagged = np.zeros(len(table), dtype=bool)
    if NONFINITE in table.columns:
        flagged = table[NONFINITE].astype(str).str.lower().isin(("true", "1")).to_numpy()
    score = UNDEFINED_SCORE if UNDEFINED in table.columns else UNKNOWN
    fallback = np.where(~np.isfinite(values), score, np.where(flagged, UNKNOWN, ""))
    return given.where(given != "", pd.Series(fallback, index=table.index)).rename(UNDEFINED)


def count_undefined(tables, *, by: str = "method") -> pd.DataFrame:
    """Rows not scored per ``by`` value and reason over all ``tables``
    (columns ``by``, ``reason``, ``rows``), from :func:`undefined_reasons`."""
    parts = []
    for table in tables:
        if table is None or table.empty or "value" not in table.columns:
            continue
        reasons = undefined_reasons(table)
        bad = reasons != ""
        parts.append(pd.DataFrame({by: table.loc[bad, by].to_numpy(),
                                   "reason": reasons[bad].to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=[by, "reason", "rows"])
    frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        return pd.DataFrame(columns=[by, "reason", "rows"])
    return frame.groupby([by, "reason"], sort=True).size().rename("rows").reset_index()


def flag_nonfinite(table: pd.DataFrame, *, column: str = "value") -> pd.DataFrame:
    """A copy of ``table`` whose boolean column ``nonfinite`` is True for the
    rows whose ``column`` is NaN or +-Inf (or that were flagged before, e.g.
    because the map behind the value held NaN), and for the rows whose
    ``undefined`` column names a reason (e.g. a finite score of an all-zero
    map): the rows that are not scored."""
    if column not in table.columns:
        raise ValueError(f"table has no column {column!r}; columns: {list(table.columns)}")
    out = table.copy()
    values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=np.float64)
    flags = ~np.isfinite(values)
    if NONFINITE in out.columns:
        flags |= out[NONFINITE].astype(str).str.lower().isin(("true", "1")).to_numpy()
    if UNDEFINED in out.columns:
        flags |= (undefined_reasons(out, column=column) != "").to_numpy()
    out[NONFINITE] = flags
    return out


def count_nonfinite(table: pd.DataFrame, *, by: str = "method",
                    column: str = "value") -> pd.DataFrame:
    """Per ``by`` value (default: method): ``rows``, ``nonfinite`` (rows
    flagged) and ``fraction``, for the report."""
    if by not in table.columns:
        raise ValueError(f"table has no column {by!r}; columns: {list(table.columns)}")
    flagged = flag_nonfinite(table, column=column)
    grouped = flagged.groupby(by, sort=True)[NONFINITE]
    counts = pd.DataFrame({"rows": grouped.size(), "nonfinite": grouped.sum().astype(int)})
    counts["fraction"] = counts["nonfinite"] / counts["rows"]
    return counts.reset_index()


__all__ = ["model_fingerprint", "file_fingerprint", "unchanged_model", "is_nonfinite",
           "flag_nonfinite", "count_nonfinite", "seeded_initialization", "NONFINITE",
           "UNDEFINED", "REASONS", "undefined_reason", "undefined_reasons", "count_undefined"]
