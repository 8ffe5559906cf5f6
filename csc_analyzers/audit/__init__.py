"""Audit a user's Keras model: which attribution methods ignore its later layers?

- :mod:`.run`: :func:`prepare_audit` (everything that can fail on bad input,
  before any long work) and :func:`run_audit` (the experiments, resumable).
- :mod:`.data`: the images (a directory or the built-in set) and their
  preprocessing.
- :mod:`.checks`: loading, the input/output and per-method checks, and the
  one-image cost probe.
- :mod:`.cost`: the time and memory estimate, the time budget and progress.
- :mod:`.report`: verdicts, tables and figures.

``scripts/audit.py`` is the command line.
"""
from .checks import AuditError  # noqa: F401
from .run import PREPROCESSING, AuditPlan, prepare_audit, run_audit  # noqa: F401

__all__ = ["AuditError", "AuditPlan", "PREPROCESSING", "prepare_audit", "run_audit"]
