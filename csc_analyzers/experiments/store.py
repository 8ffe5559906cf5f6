"""A results store that resumes, shards and never loses finished work.

Experiments are split into *units* (typically one method on one image). Each
finished unit is written as its own small CSV file, atomically (a temporary
file in the same directory, flushed, fsynced, then renamed), so a run killed at
any point leaves only whole units behind. A rerun skips the units whose file
exists. The tidy table of an experiment is the concatenation of its unit
files in a deterministic order; :meth:`ResultStore.consolidate` writes it as
one CSV, also atomically.

A store written by an older version whose metric names have changed since
(:data:`RENAMED_METRICS`) is refused with an error naming a unit file, when a
run resumes it (:meth:`ResultStore.pending`) or a merge reads it, so old and
new rows are never mixed.

Settings: :meth:`ResultStore.check_settings` records, per network, the
settings that change the rows of its units (e.g. the CSC vectors and seed,
the method recipe) in ``root/experiment/settings_<network>.json``, and stops a
run that would add units made with other settings to the same store.

Shards: ``--shard i/N`` gives unit ``k`` (in the experiment's fixed unit
order) to shard ``k mod N``; every shard writes into its own store directory
or the same one (unit files never collide), and :func:`merge_stores` joins
shard directories into the same table a single run gives.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..errors import ArgumentError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

# metric names of older versions -> what replaced them
RENAMED_METRICS = {"ssim": "'ssim_paper' and 'ssim_standard' (two SSIM recipes)"}


def check_metric_names(table: pd.DataFrame, source) -> None:
    """Raise :class:`~csc_analyzers.errors.ArgumentError` naming ``source``
    if ``table`` holds rows of a metric renamed since (an older version wrote
    them)."""
    if table is None or "metric" not in getattr(table, "columns", ()):
        return
    old = sorted(set(table["metric"].astype(str)) & set(RENAMED_METRICS))
    if old:
        raise ArgumentError(
            f"{source} holds rows of metric {old[0]!r} written by an older version "
            f"(now {RENAMED_METRICS[old[0]]}); they cannot be mixed with new rows: "
            "write the run into a new --out directory")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based index)."""

    index: int = 0
    count: int = 1

    def takes(self, position: int) -> bool:
        return position % self.count == self.index

    def select(self, units: Sequence) -> list:
        """The units of this shard, in their original order."""
        return [unit for k, unit in enumerate(units) if self.takes(k)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str | None) -> Shard:
    """Parse ``"i/N"`` (0 <= i < N) into a :class:`Shard`; None means the whole run."""
    if spec is None or spec == "":
        return Shard()
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not match:
        raise ValueError(f"--shard {spec!r}: expected 'i/N' with integers, e.g. '0/2'")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"--shard {spec!r}: the number of shards N must be >= 1")
    if not 0 <= index < count:
        raise ValueError(f"--shard {spec!r}: the shard index i must satisfy 0 <= i < {count}")
    return Shard(index, count)


def unit_filename(key: Sequence) -> str:
    """A readable, collision-free file name for a unit key (tuple of values)."""
    text = "__".join(str(part) for part in key)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    readable = _SAFE.sub("_", text)[:80].strip("_")
    return f"{readable}__{digest}.csv"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the
    whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))


class ResultStore:
    """Finished units of one experiment in ``root/experiment/units/``."""

    def __init__(self, root: str | os.PathLike, experiment: str):
        self.root = Path(root)
        self.experiment = experiment
        self.units_dir = self.root / experiment / "units"

    def path(self, key: Sequence) -> Path:
        return self.units_dir / unit_filename(key)

    def done(self, key: Sequence) -> bool:
        return self.path(key).exists()

    def pending(self, keys: Iterable[Sequence]) -> list:
        """The keys whose unit file does not exist yet, in the given order.
        Raises ArgumentError if the store was written with old metric names
        (:meth:`check_metric_names`)."""
        self.check_metric_names()
        return [key for key in keys if not self.done(key)]

    def check_metric_names(self) -> None:
        """Raise ArgumentError naming a unit file if the store's units hold a
        renamed metric (:data:`RENAMED_METRICS`). One unit file is read: a
        store's units come from one version."""
        first = next(iter(self.units_dir.glob("*.csv")), None) if self.units_dir.exists() \
            else None
        if first is not None and first.stat().st_size:
            check_metric_names(pd.read_csv(first), first)

    def write(self, key: Sequence, rows: pd.DataFrame | list) -> None:
        """Store the rows of one finished unit (atomically)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        atomic_write_csv(self.path(key), frame)

    def settings_path(self, scope: str) -> Path:
        return self.root / self.experiment / f"settings_{_SAFE.sub('_', scope)}.json"

    def _has_units_of(self, scope: str) -> bool:
        if not self.units_dir.exists():
            return False
        return any(self.units_dir.glob(f"{_SAFE.sub('_', scope)}__*.csv"))

    def check_settings(self, scope: str, settings: dict, *, defaults: dict | None = None) -> None:
        """Record ``settings`` (JSON values) of the units of ``scope`` (a
        network name); raise :class:`~csc_analyzers.errors.ArgumentError` if
        the store holds units of ``scope`` made with other settings. A key
        missing from a stored file takes its value from ``defaults``; units of
        ``scope`` stored before any settings were recorded count as made with
        ``defaults`` (the other keys cannot be known and are not compared)."""
        path = self.settings_path(scope)
        defaults = dict(defaults or {})
        written = json.loads(path.read_text()) if path.exists() else None
        if written is not None:
            stored = {**defaults, **written}
        elif self._has_units_of(scope):
            stored = {**settings, **defaults}
        else:
            stored = None
        if stored is not None and stored != settings:
            raise ArgumentError(
                f"{path.parent} holds {self.experiment} units of {scope!r} made with {stored}; "
                f"this run asks for {settings}: use another --out directory or the "
                "settings of the stored units")
        if written != settings:
            atomic_write_text(path, json.dumps(settings, sort_keys=True))

    def read(self, key: Sequence) -> pd.DataFrame:
        return pd.read_csv(self.path(key))

    def table(self, keys: Iterable[Sequence] | None = None) -> pd.DataFrame:
        """The experiment's tidy table: unit files concatenated in key order
        (``keys``) or file-name order."""
        if keys is None:
            paths = sorted(self.units_dir.glob("*.csv")) if self.units_dir.exists() else []
        else:
            paths = [self.path(key) for key in keys if self.done(key)]
        frames = [pd.read_csv(p) for p in paths]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def consolidate(self, filename: str | None = None,
                    keys: Iterable[Sequence] | None = None,
                    sort_by: Sequence[str] | None = None) -> Path:
        """Write the whole table to ``root/<filename or experiment.csv>`` atomically."""
        table = self.table(keys)
        if sort_by and len(table):
            table = table.sort_values(list(sort_by), kind="mergesort").reset_index(drop=True)
        target = self.root / (filename or f"{self.experiment}.csv")
        atomic_write_csv(target, table)
        return target


def merge_stores(shard_roots: Iterable[str | os.PathLike], target_root: str | os.PathLike,
                 experiment: str) -> ResultStore:
    """Copy every unit file of ``experiment`` from the shard stores into
    ``target_root`` (identical units are written once) with the recorded
    settings, and return the merged store. Settings files of one network that
    differ between the stores raise :class:`~csc_analyzers.errors.ArgumentError`
    before anything is copied; so does a shard store with old metric names."""
    target = ResultStore(target_root, experiment)
    roots = list(shard_roots)
    settings = {}
    for root in [target_root] + roots:
        folder = Path(root) / experiment
        for path in sorted(folder.glob("settings_*.json")) if folder.is_dir() else ():
            text = json.loads(path.read_text())
            if path.name in settings and settings[path.name][1] != text:
                raise ArgumentError(
                    f"cannot merge {experiment}: {path} holds {text}, "
                    f"{settings[path.name][0]} holds {settings[path.name][1]}")
            settings.setdefault(path.name, (path, text))
    for name, (_path, text) in settings.items():
        destination = target.root / experiment / name
        if not destination.exists():
            atomic_write_text(destination, json.dumps(text, sort_keys=True))
    for root in roots:
        source = ResultStore(root, experiment)
        if not source.units_dir.exists():
            continue
        source.check_metric_names()
        for path in sorted(source.units_dir.glob("*.csv")):
            destination = target.units_dir / path.name
            if Path(root).resolve() == Path(target_root).resolve() or destination.exists():
                continue
            atomic_write_text(destination, path.read_text(encoding="utf-8"))
    return target
