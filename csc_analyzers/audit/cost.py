"""What an audit costs, known before its experiments, and its progress.

:class:`~csc_analyzers.audit.checks.MethodCost` is measured per method on one
image (:func:`csc_analyzers.audit.checks.probe_cost`); :class:`AuditEstimate`
adds them up for the whole audit; :class:`Progress` reports the experiments'
progress with the time left.
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Optional

# Seconds of the tables, report and figures after the experiments, fixed and
# per method: fitted to three audits of small models (4-6 methods, 4 images)
# on a shared 2-core machine, where they took 15-30 s. Not measured per run:
# the one part of the estimate that is a constant.
REPORT_S = 5.0
REPORT_S_PER_METHOD = 2.5


def predict_cost(spec, reference, measured, *, sanity: bool, composites: bool):
    """The :class:`~csc_analyzers.audit.checks.MethodCost` of ``spec`` on one
    image predicted from the ``measured`` cost of the ``reference`` spec on
    the same model: each part scaled by the ratio of the two specs'
    registry :class:`~csc_analyzers.registry.RelativeCost` (build, CSC unit,
    map); the map count from ``sanity`` and ``composites`` as measured. The
    peak memory is left at the reference's (the audit predicts its peak
    from the heaviest method, :func:`predict_peak`)."""
    from .checks import MethodCost, maps_per_image

    own, ref = spec.cost, reference.cost
    # a reference left out of CSC (csc 0) is only chosen when no method in CSC is left
    csc_s = (0.0 if "csc" in spec.exclude_experiments or not ref.csc else
             measured.csc_s * own.csc / ref.csc)
    return MethodCost(build_s=measured.build_s * own.build / ref.build, csc_s=csc_s,
                      map_s=measured.map_s * own.map / ref.map,
                      maps_per_image=maps_per_image(sanity, composites),
                      rss_bytes=measured.rss_bytes, predicted_from=reference.name)


def predict_peak(specs, reference, base_bytes: int, measured_bytes: int) -> int:
    """Peak resident memory of running each of ``specs`` in a graph of its
    own, released after it: ``base_bytes`` (the process before the methods)
    plus the largest of the methods' own growth, each the ``reference``'s
    measured growth (its peak ``measured_bytes`` minus ``base_bytes``)
    scaled by the ratio of their registry ``RelativeCost.memory``."""
    growth = max(measured_bytes - base_bytes, 0)
    scale = max([spec.cost.memory for spec in specs] + [reference.cost.memory])
    return int(base_bytes + growth * scale / reference.cost.memory)


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(field: str) -> Optional[int]:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes, None
    where there is no /proc."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident memory of this process now, in bytes (the peak so far where
    /proc is missing)."""
    found = _status_bytes("VmRSS")
    return peak_rss() if found is None else found


def reset_peak() -> bool:
    """Start a new peak-memory window (:func:`window_peak`): Linux's
    /proc/self/clear_refs resets the process's peak resident memory. False
    where that is not possible (then the window is the whole process)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def window_peak() -> int:
    """Peak resident memory since the last :func:`reset_peak`, in bytes."""
    found = _status_bytes("VmHWM")
    return peak_rss() if found is None else found


@dataclass
class AuditEstimate:
    """The cost of an audit, known before its experiments: the time spent so
    far (``elapsed_s``: loading, checks, the probes on one image), the
    :class:`~csc_analyzers.audit.checks.MethodCost` per kept method
    (``costs``), the methods ``dropped`` to fit ``budget_s`` with the
    reason, and the peak memory (``rss_bytes``). ``reference``: the one
    method measured in a graph of its own, the others' costs predicted from
    it (``MethodCost.predicted_from``) and each method built for its
    experiments (the per-method audit; the peak is the heaviest method's);
    empty when every method was measured in the one shared graph (the
    peak after the probes is the audit's). ``fixed_s``: the sanity
    check's reads of every weight out of the session (per graph it runs in)."""

    n_images: int
    elapsed_s: float
    costs: dict
    dropped: list
    rss_bytes: int
    budget_s: Optional[float] = None
    fixed_s: float = 0.0
    reference: str = ""

    @property
    def rebuild(self) -> bool:
        """Whether each method's build is paid in the experiments (per-method)."""
        return bool(self.reference)

    @property
    def experiments_s(self) -> float:
        return self.fixed_s + sum(cost.run_s(self.n_images) + (cost.build_s if self.rebuild
                                                                else 0.0)
                                  for cost in self.costs.values())

    @property
    def report_s(self) -> float:
        return REPORT_S + REPORT_S_PER_METHOD * len(self.costs)

    @property
    def total_s(self) -> float:
        return self.elapsed_s + self.experiments_s + self.report_s

    def describe(self) -> str:
        lines = [f"estimate: {self.total_s:.0f} s in all ({self.elapsed_s:.0f} s spent on "
                 f"loading and checks, {self.experiments_s:.0f} s of experiments on "
                 f"{self.n_images} images, {self.report_s:.0f} s of report), peak memory "
                 f"{self.rss_bytes / 2**30:.2f} GiB"
                 + (f" (each method built in a graph of its own for its experiments; "
                    f"{self.reference} measured on one image, the other methods predicted "
                    "from it with the registry's relative costs)" if self.reference else
                    " (every method's analyzer in one graph)")]
        for name, cost in self.costs.items():
            lines.append(f"  {name}: analyzer {cost.build_s:.1f} s, per image "
                         f"{cost.per_image_s:.2f} s (CSC unit {cost.csc_s:.2f} s, "
                         f"{cost.maps_per_image} maps x {cost.map_s:.2f} s)"
                         + (" predicted" if cost.predicted_from else " measured"))
        if self.budget_s is not None:
            lines.append(f"  time budget {self.budget_s:.0f} s: "
                         + ("every method fits" if not self.dropped else
                            "dropped " + "; ".join(f"{n} ({why})" for n, why in self.dropped)))
        return "\n".join(lines)


class Progress:
    """Progress of the audit's experiments on stderr: units done of all, the
    time spent and the time left, extrapolated from the units done weighted
    by their estimated cost; at most one line per ``every`` seconds."""

    def __init__(self, weights: dict, *, every: float = 10.0, write=None):
        self.weights = weights  # experiment -> list of per-unit estimated seconds
        self.total = sum(len(w) for w in weights.values())
        self.total_w = sum(sum(w) for w in weights.values()) or 1.0
        self.done, self.done_w, self.index = 0, 0.0, {}
        self.every, self.start, self.last = every, time.time(), 0.0
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))

    def unit(self, experiment: str):
        """The callback for one experiment's finished units (one per call)."""
        weights = self.weights.get(experiment) or [0.0]
        mean = sum(weights) / len(weights)

        def step(*_):
            k = self.index.get(experiment, 0)
            self.index[experiment] = k + 1
            self.done_w += weights[k] if k < len(weights) else mean
            self.done += 1
            now = time.time()
            if now - self.last >= self.every or self.done >= self.total:
                self.last = now
                spent = now - self.start
                left = spent / max(self.done_w, 1e-9) * max(self.total_w - self.done_w, 0.0)
                self.write(f"progress: {self.done}/{self.total} units, {spent:.0f} s spent, "
                           f"~{left:.0f} s left")
        return step


def progress_weights(plan) -> dict:
    """Experiment -> per-unit estimated seconds of the applicable methods."""
    costs = plan.estimate.costs if plan.estimate else {}
    n = len(plan.data.images)
    weights = {"csc": [], "random_logit": [], "sanity": [], "class_sensitivity": []}
    for check in plan.checks:
        if not check.ok:
            continue
        cost = costs.get(check.spec.name)
        csc_s, map_s = (cost.csc_s, cost.map_s) if cost else (1.0, 1.0)
        if "csc" not in check.spec.exclude_experiments:
            weights["csc"] += [csc_s] * n
        weights["random_logit"] += [2 * map_s] * n
        if check.sanity_ok:
            weights["sanity"] += [map_s] * n  # the original map comes from random logit
        if plan.data.composites is not None:
            weights["class_sensitivity"] += [2 * map_s] * n
    return weights




__all__ = ["AuditEstimate", "Progress", "progress_weights", "peak_rss", "current_rss",
           "reset_peak", "window_peak", "predict_cost", "predict_peak", "REPORT_S",
           "REPORT_S_PER_METHOD"]
