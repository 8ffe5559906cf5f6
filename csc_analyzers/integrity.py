"""Result integrity: fingerprints that show the user's model was not changed,
and the flags that mark non-finite numbers in result tables.

* :func:`model_fingerprint` / :func:`file_fingerprint`: SHA-256 of a model's
  weights (names, shapes, dtypes and bytes) or of a file's / directory's bytes.
* :func:`unchanged_model`: a context manager raising
  :class:`~csc_analyzers.errors.ModelChangedError` if the model's weights (or
  its file) differ after the block, also when the block raised.
* :func:`flag_nonfinite`, :func:`count_nonfinite`: the ``nonfinite`` column of
  a result table and the per-method count of flagged rows for the report.
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
    restored on exit."""
    state = random.getstate()
    random.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(state)


def is_nonfinite(value) -> bool:
    """True if ``value`` (a number or an array) is or holds NaN or +-Inf."""
    array = np.asarray(value, dtype=np.float64)
    return not bool(np.isfinite(array).all())


def flag_nonfinite(table: pd.DataFrame, *, column: str = "value") -> pd.DataFrame:
    """A copy of ``table`` whose boolean column ``nonfinite`` is True for the
    rows whose ``column`` is NaN or +-Inf (or that were flagged before, e.g.
    because the map behind the value held NaN)."""
    if column not in table.columns:
        raise ValueError(f"table has no column {column!r}; columns: {list(table.columns)}")
    out = table.copy()
    values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=np.float64)
    flags = ~np.isfinite(values)
    if NONFINITE in out.columns:
        flags |= out[NONFINITE].astype(str).str.lower().isin(("true", "1")).to_numpy()
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
           "flag_nonfinite", "count_nonfinite", "seeded_initialization", "NONFINITE"]
