"""``REPORT.md``: the paper's claims next to what this run measured.

Every number of the report is read from the result tables of the run
(``csc.csv``, ``sanity_cascading.csv``, ``random_logit.csv``,
``class_sensitivity.csv``, ``theorem1.csv``, ``pattern_spectra.csv``), so the
report and the tables cannot disagree. Medians over images come with the
paper's bootstrap interval (10,000 resamples, 0.5 and 99.5 percentiles).
SSIMs are those of the paper's recipe (metric ``ssim_paper``, see
:mod:`csc_analyzers.metrics.ssim`); the tables also hold ``ssim_standard``.

Per method the verdict is *converges* when the median CSC after the first
convolution, with random relevance injected at the top layer, is at least
``CONVERGED`` (the paper's 0.99, section 4).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .experiments.store import atomic_write_text, check_metric_names
from .integrity import NONFINITE, flag_nonfinite
from .metrics.bootstrap import bootstrap_median
from .metrics.ssim import RECIPES as SSIM_RECIPES
from .registry import ALL_METHODS, RECIPES, get_method

CONVERGED = 0.99
PAPER_NON_CONVERGING = ("LRP-z", "DeepLIFT Rev.C.", "DeepLIFT Resc.", "Gradient", "SmoothGrad")
NEEDS_TRAINED = "needs trained weights"
NO_POSITIVE_CONTROL = ("not decidable here: the reference methods' gap interval does not lie "
                       "above 0, so this network shows no class sensitivity to compare with")
SSIM_RECIPE = SSIM_RECIPES["paper"]
SSIM_METRIC = SSIM_RECIPE.metric  # "ssim_paper"
SSIM_NOTE = ("SSIM: the paper's recipe (metric ssim_paper): each map is normalised by its "
             "percentiles p = 99.5 (100 for RectGrad) as "
             "clip((x - P_p) / (P_(100-p) - P_p), 0, 1), so its high end maps to 0, then SSIM "
             "with a 5-pixel window and data_range 2, the maximum over the second map and its "
             "negation (sanity check: randomised vs original map; random logit: true vs "
             "random class). A constant map has no SSIM (NaN, counted in NaN/Inf rows). The "
             "result tables also hold ssim_standard (high end -> 1, data_range 1).")


CLASS_NOTE = ("Class sensitivity (two-object images): mask gap = share of the relevance "
              "inside object A's mask when explaining A minus the same share when "
              "explaining B; 'positive' uses the positive relevance (undefined for a map "
              "without any), 'abs' the absolute relevance (defined for every finite "
              "non-zero map). The claim on LRP a1b0 uses the abs gap and holds when its "
              "interval reaches down to 0 or lies wholly below the pooled interval of the "
              "reference methods (DeepLIFT Resc., LRP-z, Gradient); it is not decidable "
              "when the reference interval does not lie above 0.")


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
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    median, low, high = bootstrap_median(values, rng=np.random.default_rng(seed))
    return Interval(median, low, high, int(values.size))


def _read(results: Path, name: str) -> pd.DataFrame:
    path = results / name
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    check_metric_names(table, path)
    if "injection_layer" in table:  # the random baseline has no injection layer
        table["injection_layer"] = table["injection_layer"].fillna("")
    return table


def _ordered_methods(names) -> list:
    present = set(names)
    return [spec.name for spec in ALL_METHODS if spec.name in present]


# -- per-method evidence ---------------------------------------------------------


def csc_at(csc: pd.DataFrame, network: str, layer: Optional[str]) -> pd.Series:
    """Median CSC per method at ``layer``, relevance injected at the network's top
    injection layer (the first of ``csc_layers``, i.e. the logits)."""
    if csc.empty or layer is None:
        return pd.Series(dtype=float)
    rows = csc[(csc.network == network) & (csc.statistic == "median")
               & (csc.layer == layer) & (csc.injection_layer != "")]
    if rows.empty:
        return pd.Series(dtype=float)
    top = rows.sort_values("layer_index").injection_layer
    injection = _top_injection(csc, network)
    rows = rows[rows.injection_layer == injection] if injection else rows[
        rows.injection_layer == top.iloc[0]]
    return rows.set_index("method")["value"].astype(float)


def _top_injection(csc: pd.DataFrame, network: str) -> Optional[str]:
    rows = csc[(csc.network == network) & (csc.injection_layer != "")]
    if rows.empty:
        return None
    index = rows.groupby("injection_layer")["layer_index"].max()
    return str(index.idxmax())


def baseline_at(csc: pd.DataFrame, network: str, layer: Optional[str]) -> float:
    rows = csc[(csc.network == network) & (csc.injection_layer == "") & (csc.layer == layer)
               & (csc.statistic == "median")] if not csc.empty else csc
    return float(rows.value.iloc[0]) if len(rows) else np.nan


def per_image(table: pd.DataFrame, network: str, metric: str, level=None) -> dict:
    """method -> per-image values of ``metric`` (at ``level`` if given); a
    row flagged ``nonfinite`` (its value, or a map behind it, held NaN/Inf)
    gives NaN, so it stays out of the medians (it is counted by
    :func:`nonfinite_counts`)."""
    if table.empty:
        return {}
    rows = flag_nonfinite(table[(table.network == network) & (table.metric == metric)])
    if level is not None:
        rows = rows[rows.level == level]
    values = pd.to_numeric(rows.value, errors="coerce").where(~rows[NONFINITE].astype(bool))
    return {method: values[group.index].to_numpy(float)
            for method, group in rows.groupby("method")}


def nonfinite_counts(tables: Sequence[pd.DataFrame]) -> dict:
    """Rows whose value is NaN or infinite or that are flagged ``nonfinite``
    (a map behind the value held NaN/Inf), per method, over all tables."""
    counts: dict = {}
    for table in tables:
        if table.empty or "value" not in table:
            continue
        flagged = flag_nonfinite(table)
        bad = table[flagged[NONFINITE].astype(bool).to_numpy()]
        for method, n in bad.groupby("method").size().items():
            counts[method] = counts.get(method, 0) + int(n)
    return counts


def method_table(results: Path, network, *, seed: int) -> pd.DataFrame:
    """One row per method: the evidence for its verdict."""
    from .experiments.csc import first_conv_layer

    csc = _read(results, "csc.csv")
    sanity = _read(results, "sanity_cascading.csv")
    logit = _read(results, "random_logit.csv")
    sensitivity = _read(results, "class_sensitivity.csv")
    first_conv = first_conv_layer(network)
    at_conv = csc_at(csc, network.name, first_conv)
    at_input = csc_at(csc, network.name, "input")
    logit_ssim = per_image(logit, network.name, SSIM_METRIC)
    top_ssim = per_image(sanity, network.name, SSIM_METRIC, level=1)
    gap = per_image(sensitivity, network.name, "mask_gap")
    abs_gap = per_image(sensitivity, network.name, "abs_mask_gap")
    l1 = per_image(sensitivity, network.name, "l1_mean")
    bad = nonfinite_counts([csc, sanity, logit, sensitivity])
    names = _ordered_methods(set(at_conv.index) | set(logit_ssim) | set(top_ssim))
    rows = []
    for name in names:
        conv_value = at_conv.get(name, np.nan)
        rows.append({
            "method": name,
            "csc_first_conv": conv_value,
            "csc_input": at_input.get(name, np.nan),
            "random_logit_ssim": interval(logit_ssim.get(name, []), seed=seed),
            "top_layer_ssim": interval(top_ssim.get(name, []), seed=seed),
            "class_mask_gap": interval(gap.get(name, []), seed=seed),
            "class_abs_gap": interval(abs_gap.get(name, []), seed=seed),
            "class_l1": interval(l1.get(name, []), seed=seed),
            "nonfinite_rows": bad.get(name, 0),
            "verdict": ("n/a (no CSC)" if not np.isfinite(conv_value) else
                        "converges" if conv_value >= CONVERGED else "does not converge"),
        })
    table = pd.DataFrame(rows)
    table.attrs["first_conv"] = first_conv
    table.attrs["baseline_conv"] = baseline_at(csc, network.name, first_conv)
    table.attrs["baseline_input"] = baseline_at(csc, network.name, "input")
    return table


# -- the paper's claims --------------------------------------------------------------


def _pooled(values_by_method: dict, names, seed: int) -> Interval:
    values = [v for name in names for v in values_by_method.get(name, [])]
    return interval(values, seed=seed)


def claims(results: Path, network, methods: pd.DataFrame, *, trained: bool,
           seed: int) -> list:
    """(claim, measured, holds) for the paper's claims on this network."""
    out = []
    if methods.empty:
        return out
    converging_paper = [m for m in methods.method if m not in PAPER_NON_CONVERGING]
    non_converging = [m for m in methods.method if m in PAPER_NON_CONVERGING]
    csc = methods.set_index("method")["csc_first_conv"]
    layer = methods.attrs.get("first_conv")
    conv_ok = csc.reindex(converging_paper).dropna()
    if len(conv_ok):
        below = conv_ok[conv_ok < CONVERGED]
        out.append((
            "All modified-BP methods except LRP-z and DeepLIFT converge: median CSC >= 0.99 "
            "(section 4).",
            f"median CSC after {layer} >= 0.99 for {len(conv_ok) - len(below)} of "
            f"{len(conv_ok)} methods; min {conv_ok.min():.4f} ({conv_ok.idxmin()})"
            + (f"; below: {', '.join(below.index)}" if len(below) else ""),
            _holds(len(below) == 0, trained)))
    free = csc.reindex(non_converging).dropna()
    if len(free):
        out.append((
            "LRP-z, DeepLIFT (Rescale, RevealCancel) and the gradient do not converge.",
            "; ".join(f"{m}: {v:.4f}" for m, v in free.items())
            + f" (random baseline {methods.attrs.get('baseline_conv', np.nan):.3f})",
            _holds(bool((free < CONVERGED).all()), trained)))
    if "LRP a1b0" in csc.index:
        value = methods.set_index("method").loc["LRP a1b0", "csc_input"]
        out.append(("Even on the small network LRP a1b0's median CSC exceeds 1 - 1e-6 "
                    "(Figure 5d).", f"1 - median CSC at the input = {1 - value:.2e}",
                    _holds(1 - value < 1e-6, trained)))
    by_method = methods.set_index("method")
    converged = [m for m in methods.method if by_method.loc[m, "verdict"] == "converges"]
    others = [m for m in methods.method if by_method.loc[m, "verdict"] == "does not converge"]
    logit = per_image(_read(results, "random_logit.csv"), network.name, SSIM_METRIC)
    top = per_image(_read(results, "sanity_cascading.csv"), network.name, SSIM_METRIC,
                    level=1)
    if converged and logit:
        a, b = _pooled(logit, converged, seed), _pooled(logit, others, seed)
        out.append(("Random logit: converging methods give almost the same map for any "
                    "logit (SSIM close to 1); the rest of the field 0.4-0.8 (Figure 4a).",
                    f"converging: {a}; others: {b}",
                    _holds(a.median > 0.9 and (b.n == 0 or b.median < a.median), trained)))
    if converged and top:
        a, b = _pooled(top, converged, seed), _pooled(top, others, seed)
        out.append(("Sanity check: randomizing the top layer leaves the maps of converging "
                    "methods almost unchanged (SSIM close to 1) (Figure 4b).",
                    f"converging: {a}; others: {b}",
                    _holds(a.median > 0.9 and (b.n == 0 or b.median < a.median), trained)))
    sensitivity = per_image(_read(results, "class_sensitivity.csv"), network.name,
                            "abs_mask_gap")
    if sensitivity and "LRP a1b0" in sensitivity:
        a = interval(sensitivity["LRP a1b0"], seed=seed)
        ref = [m for m in ("DeepLIFT Resc.", "LRP-z", "Gradient") if m in sensitivity]
        b = _pooled(sensitivity, ref, seed) if ref else Interval(np.nan, np.nan, np.nan, 0)
        # decided by the intervals: insensitive when LRP a1b0's interval reaches
        # down to 0 or lies wholly below the reference methods' interval; not
        # decidable when the references themselves show no class sensitivity
        insensitive = a.low <= 0 or (b.n > 0 and a.high < b.low)
        verdict = (NO_POSITIVE_CONTROL if b.n > 0 and not b.low > 0
                   else _holds(insensitive, trained))
        out.append(("LRP a1b0 is class-insensitive: explaining the other object's class "
                    "hardly moves the relevance (Figure 1b-e).",
                    f"|relevance| mask gap LRP a1b0: {a}; {', '.join(ref)}: {b}",
                    verdict))
    return out


def _holds(value: bool, trained: bool) -> str:
    if value:
        return "yes"
    return "no" if trained else f"no ({NEEDS_TRAINED})"


def theorem_claim(results: Path) -> Optional[tuple]:
    table = _read(results, "theorem1.csv")
    if table.empty:
        return None
    last = table[table.n_factors == table.n_factors.max()]
    ratio = last.groupby("distribution")["sv_ratio"].median()
    signed = ratio.get("signed gaussian", np.nan)
    positive = ratio.drop("signed gaussian", errors="ignore")
    return ("Theorem 1 / appendix B: products of non-negative random matrices converge "
            "to rank 1 exponentially fast; signed Gaussian products do not.",
            f"sigma1/sigma2 after {int(last.n_factors.max())} factors: non-negative min "
            f"{positive.min():.2e}, signed Gaussian {signed:.2f}",
            "yes" if positive.min() > 1e3 and signed < 10 else "no")


FIGURE3_NETWORK = "vgg16"
FIGURE3_DATA = "imagenet"


def _figure3_reason(network: str, rows: pd.DataFrame) -> Optional[str]:
    """Why the Figure 3 claim is not scored on these rows (``None``: scored)."""
    if network != FIGURE3_NETWORK:
        return ("not scored: the paper's claim is about VGG-16's patterns, "
                f"not the {network}'s")
    weights = str(rows["weights"].iloc[0]) if "weights" in rows else "unknown"
    if "random" in weights or weights == "unknown":
        return "not scored: architecture-level, needs trained weights"
    data = str(rows["pattern_data"].iloc[0]) if "pattern_data" in rows else "unknown"
    if data != FIGURE3_DATA:
        return f"not scored: the paper's patterns come from ImageNet images, these from {data}"
    return None


def pattern_claim(results: Path) -> Optional[tuple]:
    """Figure 3a's claim from ``pattern_spectra.csv`` (Figure 3 as published):
    the share of VGG-16 layers whose full pattern matrix A has sigma1/sigma2 >
    6; scored only for VGG-16 with trained weights and ImageNet patterns."""
    table = _read(results, "pattern_spectra.csv")
    if table.empty or "panel" not in table:
        return None
    measured, holds = [], []
    for network, rows in table.groupby("network", sort=True):
        a = rows[(rows.panel == "a") & (rows.matrix == "A")]
        if a.empty:
            continue
        over = int((a.ratio > 6).sum())
        text = (f"{network} ({rows['weights'].iloc[0] if 'weights' in rows else '?'} "
                f"weights): full A ratio > 6 in {over} of {len(a)} layers "
                f"(median {a.ratio.median():.2f})")
        centre = rows[rows.panel == "b"].pivot_table(index="layer_index", columns="matrix",
                                                     values="ratio")
        if {"W", "A*W"} <= set(centre.columns):
            text += (f"; centre slices: A\u2299W ratio > W's in "
                     f"{int((centre['A*W'] > centre['W']).sum())} of {len(centre)} layers")
        measured.append(text)
        reason = _figure3_reason(network, rows)
        share = over / len(a)
        verdict = reason or ("yes" if share >= 0.9 else "partly" if share >= 0.5 else "no")
        holds.append(verdict if len(set(table.network)) == 1 else f"{network}: {verdict}")
    if not measured:
        return None
    return ("PatternNet: sigma1(A)/sigma2(A) > 6 for almost all VGG-16 patterns "
            "(Figure 3a: full pattern matrices, patterns from ImageNet images).",
            "; ".join(measured), "; ".join(holds))


# -- the document ---------------------------------------------------------------------


def _method_markdown(methods: pd.DataFrame) -> list:
    lines = ["| method | CSC after first conv | CSC at input | random-logit SSIM (paper) | "
             "top-layer SSIM (paper) | class mask gap (positive) | class mask gap (abs) | "
             "NaN/Inf rows | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in methods.itertuples():
        lines.append(f"| {row.method} | {row.csc_first_conv:.6f} | {row.csc_input:.6f} | "
                     f"{row.random_logit_ssim} | {row.top_layer_ssim} | {row.class_mask_gap} | "
                     f"{row.class_abs_gap} | {row.nonfinite_rows} | {row.verdict} |")
    return lines


def write_report(results, *, settings, networks: dict, figures: Sequence, wall_time: float
                 ) -> Path:
    """Write ``results/REPORT.md`` and ``results/verdicts.csv``; returns the report path."""
    results = Path(results)
    lines = ["# Reproduction report: When Explanations Lie", ""]
    lines += [f"Wall time of this run: {wall_time / 60:.1f} min. Seed {settings.seed}; "
              f"{settings.n_vectors} random vectors per image for CSC; "
              f"{settings.n_images} images per network (the paper used 200"
              + ("; this sample was chosen to fit the time budget of the default run"
                 if settings.n_images < 200 else "") + ").", ""]
    recipe = getattr(settings, "recipe", "plain")
    lines += [f"Method recipe: {recipe} ({RECIPES.get(recipe, 'unknown recipe')}).", ""]
    verdict_frames = []
    for name, info in networks.items():
        network = info["network"]
        trained = "random" not in str(network.weights)
        methods = method_table(results, network, seed=settings.seed)
        verdict_frames.append(methods.assign(network=name).astype({"random_logit_ssim": str,
                                                                   "top_layer_ssim": str,
                                                                   "class_mask_gap": str,
                                                                   "class_abs_gap": str,
                                                                   "class_l1": str}))
        lines += [f"## {name}", "",
                  f"Weights: {network.weights}. Data: {info.get('data', settings.data)}, "
                  f"{info.get('n_images', settings.n_images)} images. CSC injection at "
                  f"{_top_injection(_read(results, 'csc.csv'), name) or 'n/a'}; random "
                  f"baseline after {methods.attrs.get('first_conv')}: "
                  f"{methods.attrs.get('baseline_conv', float('nan')):.3f}, at the input: "
                  f"{methods.attrs.get('baseline_input', float('nan')):.3f}.", ""]
        if not trained:
            lines += ["Random weights: the claims about the trained networks' maps "
                      "(random logit, sanity check, class sensitivity) need trained weights; "
                      "a 'no' marked so is not evidence against the paper.", ""]
        lines += ["### The paper's claims", "", "| claim (paper) | measured here | holds |",
                  "|---|---|---|"]
        for claim, measured, holds in claims(results, network, methods, trained=trained,
                                             seed=settings.seed):
            lines.append(f"| {claim} | {measured} | {holds} |")
        lines += ["", "### Per method", ""] + _method_markdown(methods) + [""]
        if info.get("skipped"):
            lines += ["Skipped: " + "; ".join(f"{n} ({why})" for n, why in info["skipped"]), ""]
    general = [c for c in (theorem_claim(results), pattern_claim(results)) if c]
    if general:
        lines += ["## Theory", "", "| claim (paper) | measured here | holds |", "|---|---|---|"]
        lines += [f"| {c} | {m} | {h} |" for c, m, h in general] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"- `{Path(p)}`" for p in figures] + [""]
    lines += ["Verdict: *converges* when the median CSC after the first convolution "
              f"(relevance randomised at the top layer) is >= {CONVERGED}. Intervals: median "
              "over images [0.5, 99.5 percentile of 10,000 bootstrap medians] (n images).", "",
              CLASS_NOTE, "",
              SSIM_NOTE, ""]
    if verdict_frames:
        verdicts = pd.concat(verdict_frames, ignore_index=True)
        atomic_write_text(results / "verdicts.csv", verdicts.to_csv(index=False))
    path = results / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["write_report", "method_table", "claims", "Interval", "interval", "CONVERGED",
           "nonfinite_counts", "get_method"]
