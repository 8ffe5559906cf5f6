"""The paper's claims, each scoped as the paper states it, and how a run's
measurements decide them.

A claim is a :class:`ClaimSpec`: its text, where the paper makes it, the
networks and the methods it is about, and an evaluator, a pure function of a
network's measurements (:class:`Evidence`) and a list of methods that returns
``(holds, evidence text)`` or None when nothing was measured. :func:`judge`
turns a spec and a network's evidence into rows (:class:`ClaimRow`):

* the claim's row with a verdict, one of :data:`VERDICTS`: ``"holds"``,
  ``"does not hold"``, or ``"not testable here"`` with the reason (the paper
  states the claim for other networks; random weights where the claim is
  about trained ones, e.g. "needs ImageNet weights"; none of the claim's
  methods measured);
* "beyond the paper" rows: the same test on a network the paper did not make
  the claim about, or on methods the paper left out of it (they fail
  differently, or it made no statement about them). Their outcome is shown,
  and they never enter a verdict.

Random-weight VGG-16 / ResNet-50 measurements are labelled architecture-level:
the paper's claims are about the ImageNet-trained networks.

The claims (sections 1, 4, 5; Figures 1, 4, 5, 6):

* the convergence of the modified-BP methods except DeepLIFT (Rescale,
  RevealCancel) and LRP-z, stated "on VGG-16 and ResNet-50" (section 1) and
  with Figure 5a-c (section 4). Not in its set: GuidedBP, Deconv and RectGrad,
  which fail differently (a ReLU on the backward signal, section 2);
  LRP a5b4, which "converges less strongly for VGG-16" (its own claim; the
  paper says large alpha, beta do not converge); DeepLIFT Ablation on
  ResNet-50 (numerical instabilities give a cosine of 0 in the first layers);
  the LRP CMP variants (their own claim, section 5);
* LRP-z, DeepLIFT (Rescale, RevealCancel) and the gradient do not converge;
* LRP CMP does not resolve the convergence (section 5, Figure 6c on VGG-16;
  the text for ResNet-50);
* the small CIFAR-10 network: only LRP a1b0's median CSC > 1 - 1e-6
  (Figure 5d). The paper's code left PatternNet / PatternAttribution out on it;
* the random-logit (Figure 4a, VGG-16) and sanity-check (Figure 4b, VGG-16;
  appendix E, ResNet-50) clustering of converging methods near SSIM 1;
* LRP a1b0's class insensitivity (Figure 1b-e, VGG-16).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .metrics.bootstrap import bootstrap_median

CONVERGED = 0.99
HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable here"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)
AGREES, DIFFERS = "as the paper states", "unlike the paper's statement"
IMAGENET_NETWORKS = ("vgg16", "resnet50")
NETWORK_LABELS = {"vgg16": "VGG-16", "resnet50": "ResNet-50", "cifar-net": "the small network",
                  "small-resnet": "the small ResNet"}
# The methods of the paper's Figures 4 and 5 (this package's names).
PAPER_METHODS = ("GuidedBP", "Deconv", "RectGrad", "Gradient", "SmoothGrad", "DTD",
                 "PatternAttr.", "PatternNet", "LRP a1b0", "LRP a2b1", "LRP a5b4", "LRP-z",
                 "LRP CMP a1b0", "LRP CMP a2b1", "DeepLIFT Rev.C.", "DeepLIFT Resc.",
                 "DeepLIFT Abla.")
RELU_BACKWARD = ("GuidedBP", "Deconv", "RectGrad")
CONVERGING_VGG16 = ("DTD", "PatternAttr.", "PatternNet", "LRP a1b0", "LRP a2b1",
                    "DeepLIFT Abla.")
CONVERGING_RESNET50 = ("DTD", "PatternAttr.", "PatternNet", "LRP a1b0", "LRP a2b1")
NON_CONVERGING = ("LRP-z", "DeepLIFT Rev.C.", "DeepLIFT Resc.", "Gradient")
CMP = ("LRP CMP a1b0", "LRP CMP a2b1")
NOT_IN_PAPER = ("Excitation BP", "c-Excitation BP", "Contrastive LRP",
                "Contrastive LRP (no max)", "LRP z+", "Integrated Gradients")
PAPER_LEFT_OUT = {"cifar-net": ("PatternNet", "PatternAttr.")}


@dataclass
class Interval:
    """A median over images with its bootstrap interval and sample size."""

    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 0 or not np.isfinite(self.median):
            return "n/a"
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def interval(values, *, seed: int) -> Interval:
    """The median of the finite ``values`` with the paper's bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    median, low, high = bootstrap_median(values, rng=np.random.default_rng(seed))
    return Interval(median, low, high, int(values.size))


@dataclass
class Evidence:
    """What one network's run measured, per method. ``csc_conv`` / ``csc_input``:
    median CSC after the first convolution (``layer``) and at the input;
    ``csc_images``: the images behind the CSC medians (pooled over every
    location and vector pair of them; 0: unknown); ``logit`` / ``top`` /
    ``gap``: per-image random-logit SSIM, top-layer SSIM, sign-agnostic class
    mask gap ``abs_mask_gap`` (rows with undefined maps already left out)."""

    network: str
    trained: bool
    weights: str = ""
    layer: str = "conv1"
    csc_conv: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    csc_input: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    baseline_conv: float = np.nan
    csc_images: int = 0
    logit: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)
    gap: dict = field(default_factory=dict)
    seed: int = 0
    # rows of csc_training.csv for this network (scripts/csc_training_progress.py), or empty
    training: pd.DataFrame = field(default_factory=pd.DataFrame)

    def n_text(self) -> str:
        """" (n=N images)" for CSC evidence, "" if unknown."""
        return f" (n={self.csc_images} images)" if self.csc_images else ""

    def converged(self) -> list:
        return [m for m, v in self.csc_conv.items() if np.isfinite(v) and v >= CONVERGED]

    def not_converged(self) -> list:
        return [m for m, v in self.csc_conv.items() if np.isfinite(v) and v < CONVERGED]


# (holds, evidence text) or None (nothing measured); holds is True, False, or None
# when the measurement cannot decide the claim (the text then says why)
Outcome = Optional[tuple]
NOT_DECIDABLE = "not decidable here"


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper: ``text`` (with where it is made), the
    ``networks`` it is stated for, the methods it is about (``methods``; a
    network in ``network_methods`` has its own set), the methods run beyond it
    (``beyond_methods``, with ``beyond_note`` saying why they are outside),
    and ``evaluate(evidence, methods) -> Outcome``."""

    key: str
    text: str
    networks: tuple
    evaluate: Callable[[Evidence, Sequence[str]], Outcome]
    methods: tuple = ()
    network_methods: dict = field(default_factory=dict)
    beyond_methods: tuple = ()
    beyond_note: str = ""

    def methods_on(self, network: str) -> tuple:
        return tuple(self.network_methods.get(network, self.methods))


@dataclass
class ClaimRow:
    """One row of the report: ``verdict`` is one of :data:`VERDICTS` for a
    claim's own row (``beyond`` False); a beyond-the-paper row has no verdict
    and an ``outcome`` (:data:`AGREES` / :data:`DIFFERS`)."""

    claim: str
    scope: str
    verdict: str
    reason: str
    evidence: str
    beyond: bool = False
    outcome: str = ""
    network: str = ""
    key: str = ""

    @property
    def verdict_text(self) -> str:
        return f"{self.verdict}: {self.reason}" if self.reason else self.verdict


# -- evaluators (pure) ------------------------------------------------------------------


def _present(series: pd.Series, methods) -> pd.Series:
    return series.reindex([m for m in methods if m in series.index]).dropna()


def all_converge(ev: Evidence, methods) -> Outcome:
    values = _present(ev.csc_conv, methods)
    if values.empty:
        return None
    below = values[values < CONVERGED]
    text = (f"median CSC after {ev.layer} >= {CONVERGED} for {len(values) - len(below)} of "
            f"{len(values)} methods; min {values.min():.4f} ({values.idxmin()})"
            + (f"; below: {', '.join(below.index)}" if len(below) else "") + ev.n_text())
    return len(below) == 0, text


def none_converge(ev: Evidence, methods) -> Outcome:
    values = _present(ev.csc_conv, methods)
    if values.empty:
        return None
    text = "; ".join(f"{m}: {v:.4f}" for m, v in values.items())
    return bool((values < CONVERGED).all()), (text + f" (random baseline "
                                              f"{ev.baseline_conv:.3f})" + ev.n_text())


def converges_less(ev: Evidence, methods) -> Outcome:
    """``methods[0]``'s CSC below the smallest of the others (the converging set)."""
    subject, reference = methods[0], _present(ev.csc_conv, methods[1:])
    if subject not in ev.csc_conv.index or not np.isfinite(ev.csc_conv[subject]) \
            or reference.empty:
        return None
    value = float(ev.csc_conv[subject])
    return value < reference.min(), (f"{subject}: {value:.4f}; converging methods' min "
                                     f"{reference.min():.4f} ({reference.idxmin()})"
                                     + ev.n_text())


def near_one_at_input(ev: Evidence, methods) -> Outcome:
    values = _present(ev.csc_input, methods)
    if values.empty:
        return None
    gaps = 1 - values
    text = "; ".join(f"1 - median CSC at the input = {g:.2e}"
                     + (f" ({m})" if len(values) > 1 else "") for m, g in gaps.items())
    # the value depends strongly on the weights: say which ones were measured
    text += ev.n_text()
    if ev.weights:
        text += f" (weights: {ev.weights}); the value depends on the weights" + WEIGHTS_NOTE
    trend = training_trend(ev.training, methods)
    return bool((gaps < 1e-6).all()), text + (f"; {trend}" if trend else "")


WEIGHTS_NOTE = (": with CIFAR-10 weights `python scripts/run_csc.py --network cifar-net "
                "--weights cifar10 --methods \"LRP a1b0\" --out DIR`, over training "
                "`python scripts/csc_training_progress.py --data cifar10 --out DIR`")


def _checkpoint_label(step: int, epoch: float) -> str:
    if step == 0:
        return "init"
    if float(epoch) == round(float(epoch)):
        return f"epoch {int(round(float(epoch)))}"
    return f"step {step}"


def training_trend(training: pd.DataFrame, methods, layer: str = "input") -> str:
    """"1 - CSC at the input during training (...): init 4.9e-08, step 100 ..., epoch 1 ..."
    per method of ``methods`` from the rows of csc_training.csv, "" without rows."""
    if training is None or training.empty:
        return ""
    part = training[(training["layer"] == layer) & training["method"].isin(list(methods))]
    texts = []
    for method, group in part.groupby("method", sort=False):
        group = group.sort_values("checkpoint_step")
        points = ", ".join(f"{_checkpoint_label(int(r.checkpoint_step), r.epoch)} "
                           f"{float(r.one_minus_csc):.1e}" for r in group.itertuples())
        texts.append((f"{method}: " if len(methods) > 1 else "") + points)
    if not texts:
        return ""
    first = part.iloc[0]
    return (f"1 - CSC at the {layer} during training (csc_training.csv, {first['dataset']} "
            f"data, n={int(first['n_images'])} images): " + "; ".join(texts))


def _pooled(values_by_method: dict, names, seed: int) -> Interval:
    return interval([v for name in names for v in values_by_method.get(name, [])], seed=seed)


def _ssim_cluster(per_image: Callable[[Evidence], dict]):
    def evaluate(ev: Evidence, methods) -> Outcome:
        values = per_image(ev)
        converged = [m for m in ev.converged() if m in methods]
        others = [m for m in ev.not_converged() if m in methods]
        if not converged or not values:
            return None
        a, b = _pooled(values, converged, ev.seed), _pooled(values, others, ev.seed)
        if a.n == 0:
            return None
        return (a.median > 0.9 and (b.n == 0 or b.median < a.median),
                f"converging: {a}; others: {b}")
    return evaluate


def class_insensitive(ev: Evidence, methods) -> Outcome:
    """``methods[0]`` is class-insensitive, judged by bootstrap intervals of the
    sign-agnostic mask gap (``abs_mask_gap``): it holds when the subject's
    interval reaches down to 0 or lies wholly below the pooled interval of the
    reference methods (``methods[1:]``); undecidable (None) when the reference
    interval does not lie above 0, i.e. the network shows no class
    sensitivity for the test to compare with."""
    subject = methods[0]
    if subject not in ev.gap:
        return None
    a = interval(ev.gap[subject], seed=ev.seed)
    ref = [m for m in methods[1:] if m in ev.gap]
    b = _pooled(ev.gap, ref, ev.seed) if ref else Interval(np.nan, np.nan, np.nan, 0)
    text = f"abs mask gap {subject}: {a}; {', '.join(ref) or 'no reference'}: {b}"
    if a.n == 0:
        return None
    if b.n > 0 and not b.low > 0:
        return None, (text + "; the reference methods' interval does not lie above 0, so "
                      "this network shows no class sensitivity to compare with")
    return bool(a.low <= 0 or (b.n > 0 and a.high < b.low)), text


# -- the claims -------------------------------------------------------------------------

CLAIMS = (
    ClaimSpec("converge",
              "All modified-BP methods except LRP-z and DeepLIFT (Rescale, RevealCancel) "
              "converge: median CSC after the first convolution >= 0.99 (sections 1 and 4, "
              "Figure 5a-c).", IMAGENET_NETWORKS, all_converge, methods=CONVERGING_VGG16,
              network_methods={"resnet50": CONVERGING_RESNET50},
              beyond_methods=RELU_BACKWARD + ("LRP a5b4", "DeepLIFT Abla.") + NOT_IN_PAPER,
              beyond_note="GuidedBP, Deconv, RectGrad fail differently: a ReLU on the "
              "backward signal; LRP a5b4: its own claim; DeepLIFT Abla. on ResNet-50: cosine "
              "0 in the first layers; others: not in Figure 5"),
    ClaimSpec("a5b4", "LRP a5b4 converges less strongly than the converging methods on "
              "VGG-16 (section 4).", ("vgg16",), converges_less,
              methods=("LRP a5b4",) + CONVERGING_VGG16),
    ClaimSpec("free", "LRP-z, DeepLIFT (Rescale, RevealCancel) and the gradient do not "
              "converge (sections 1 and 4, Figure 5a-c).", IMAGENET_NETWORKS, none_converge,
              methods=NON_CONVERGING),
    ClaimSpec("cmp", "LRP CMP (a1b0, a2b1) does not resolve the convergence: median CSC after "
              "the first convolution >= 0.99 (section 5, Figure 6c).", IMAGENET_NETWORKS,
              all_converge, methods=CMP),
    ClaimSpec("a1b0_small", "Even on the small network LRP a1b0's median CSC exceeds 1 - 1e-6 "
              "(section 4, Figure 5d).", ("cifar-net",), near_one_at_input,
              methods=("LRP a1b0",)),
    ClaimSpec("random_logit", "Random logit: converging methods give almost the same map for "
              "any logit (SSIM close to 1); the rest of the field 0.4-0.8 (Figure 4a).",
              ("vgg16",), _ssim_cluster(lambda ev: ev.logit), methods=PAPER_METHODS,
              beyond_methods=NOT_IN_PAPER, beyond_note="not in Figure 4"),
    ClaimSpec("sanity", "Sanity check: randomizing the top layer leaves the maps of converging "
              "methods almost unchanged (SSIM close to 1) (Figure 4b; appendix E for "
              "ResNet-50).", IMAGENET_NETWORKS, _ssim_cluster(lambda ev: ev.top),
              methods=PAPER_METHODS, beyond_methods=NOT_IN_PAPER,
              beyond_note="not in Figure 4"),
    ClaimSpec("class", "LRP a1b0 is class-insensitive: explaining the other object's class "
              "hardly moves the relevance (Figure 1b-e).", ("vgg16",), class_insensitive,
              methods=("LRP a1b0", "DeepLIFT Resc.", "LRP-z", "Gradient")),
)


def _label(network: str) -> str:
    return NETWORK_LABELS.get(network, network)


def scope_text(spec: ClaimSpec, network: str) -> str:
    nets = " and ".join(_label(n) for n in spec.networks)
    methods = spec.methods_on(network) if network in spec.networks else spec.methods
    if spec.key in ("random_logit", "sanity"):
        return f"{nets}; the methods of Figure 4, grouped by their measured CSC"
    return f"{nets}; {', '.join(methods)}"


def untrained_reason(network: str) -> str:
    if network in IMAGENET_NETWORKS:
        return ("needs ImageNet weights (random weights here: the measurement is "
                "architecture-level)")
    return "needs trained weights (random weights here)"


def _outcome(result) -> str:
    if result[0] is None:
        return NOT_DECIDABLE
    return AGREES if result[0] else DIFFERS


def judge(spec: ClaimSpec, ev: Evidence) -> list:
    """The rows of ``spec`` on one network: its own row (omitted when the
    network is outside the claim's scope and nothing was measured) and the
    beyond-the-paper rows. Beyond rows never change the verdict."""
    rows = []
    methods = spec.methods_on(ev.network)
    result = spec.evaluate(ev, methods)
    base = dict(claim=spec.text, network=ev.network, key=spec.key)
    measured = set(ev.csc_conv.dropna().index) | set(ev.logit) | set(ev.top) | set(ev.gap)
    if ev.network not in spec.networks:
        if result is None:
            return rows
        nets = " and ".join(_label(n) for n in spec.networks)
        reason = f"the paper states this for {nets}, not for {_label(ev.network)}"
        rows.append(ClaimRow(scope=scope_text(spec, ev.network), verdict=UNTESTABLE,
                             reason=reason, evidence="measured here: see Beyond the paper",
                             **base))
        left_out = [m for m in PAPER_LEFT_OUT.get(ev.network, ()) if m in methods
                    and m in measured]
        note = (f"; {', '.join(left_out)} left out on {_label(ev.network)} by the paper's "
                "code" if left_out else "")
        rows.append(ClaimRow(scope=f"{_label(ev.network)} (not in the claim's scope{note})",
                             verdict="", reason="", evidence=result[1], beyond=True,
                             outcome=_outcome(result), **base))
    elif result is None:
        rows.append(ClaimRow(scope=scope_text(spec, ev.network), verdict=UNTESTABLE,
                             reason="none of the claim's methods was measured in this run",
                             evidence="n/a", **base))
    elif not ev.trained:
        rows.append(ClaimRow(scope=scope_text(spec, ev.network), verdict=UNTESTABLE,
                             reason=untrained_reason(ev.network),
                             evidence=f"architecture-level (random weights): {result[1]}",
                             **base))
    elif result[0] is None:
        rows.append(ClaimRow(scope=scope_text(spec, ev.network), verdict=UNTESTABLE,
                             reason=f"{NOT_DECIDABLE}: the measurement cannot decide it",
                             evidence=result[1], **base))
    else:
        rows.append(ClaimRow(scope=scope_text(spec, ev.network),
                             verdict=HOLDS if result[0] else FAILS, reason="",
                             evidence=result[1], **base))
    extra = [m for m in spec.beyond_methods if m not in methods and m in measured]
    outside = spec.evaluate(ev, extra) if extra else None
    if outside is not None:
        rows.append(ClaimRow(scope=f"{_label(ev.network)}; {', '.join(extra)}: outside "
                             f"the claim ({spec.beyond_note})", verdict="", reason="",
                             evidence=outside[1], beyond=True, outcome=_outcome(outside),
                             **base))
    return rows


def judge_all(ev: Evidence, specs: Sequence[ClaimSpec] = CLAIMS) -> list:
    """Every claim's rows on one network, in the order of ``specs``."""
    return [row for spec in specs for row in judge(spec, ev)]


def verdicts(rows: Sequence[ClaimRow]) -> dict:
    """claim key -> verdict of the claim's own rows (beyond rows excluded)."""
    return {row.key: row.verdict for row in rows if not row.beyond}


__all__ = ["ClaimSpec", "ClaimRow", "Evidence", "Interval", "interval", "CLAIMS", "judge",
           "judge_all", "verdicts", "CONVERGED", "HOLDS", "FAILS", "UNTESTABLE", "VERDICTS",
           "AGREES", "DIFFERS", "PAPER_METHODS", "IMAGENET_NETWORKS"]
