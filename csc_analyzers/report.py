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

The paper's claims are scoped and judged by :mod:`csc_analyzers.claims`: each
row has the claim, its scope (networks, methods), a verdict (holds / does
not hold / not testable here, with the reason) and the evidence; tests run
beyond the paper's scope are listed in a "Beyond the paper" section and never
count against a claim. The rows are also written to ``claims.csv``.

Rows whose maps are undefined (all zeros, constant, NaN, overflow, NaN
input; column ``undefined`` of the result tables, see
:func:`csc_analyzers.integrity.undefined_reason`) are left out of every
median and counted per method and reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .claims import (CONVERGED, FAILS, HOLDS, UNTESTABLE, ClaimRow, Evidence, Interval,
                     interval, judge_all)
from .experiments.store import atomic_write_text, check_metric_names
from .integrity import NONFINITE, count_undefined, flag_nonfinite
from .metrics.ssim import RECIPES as SSIM_RECIPES
from .registry import ALL_METHODS, RECIPES, get_method

SSIM_RECIPE = SSIM_RECIPES["paper"]
SSIM_METRIC = SSIM_RECIPE.metric  # "ssim_paper"
SSIM_NOTE = ("SSIM: the paper's recipe (metric ssim_paper): each map is normalised by its "
             "percentiles p = 99.5 (100 for RectGrad) as "
             "clip((x - P_p) / (P_(100-p) - P_p), 0, 1), so its high end maps to 0, then SSIM "
             "with a 5-pixel window and data_range 2, the maximum over the second map and its "
             "negation (sanity check: randomised vs original map; random logit: true vs "
             "random class). A constant or all-zero map has no SSIM (NaN): its rows are "
             "flagged with the reason and counted under undefined maps. The "
             "result tables also hold ssim_standard (high end -> 1, data_range 1).")


CLASS_NOTE = ("Class sensitivity (two-object images): mask gap = share of the relevance "
              "inside object A's mask when explaining A minus the same share when "
              "explaining B; 'positive' uses the positive relevance (undefined for a map "
              "without any), 'abs' the absolute relevance (defined for every finite "
              "non-zero map). The claim on LRP a1b0 uses the abs gap and holds when its "
              "interval reaches down to 0 or lies wholly below the pooled interval of the "
              "reference methods (DeepLIFT Resc., LRP-z, Gradient); it is not decidable "
              "when the reference interval does not lie above 0.")


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


def csc_images(csc: pd.DataFrame, network: str) -> int:
    """The number of images behind the network's CSC medians (0: none)."""
    if csc.empty or "n_images" not in csc:
        return 0
    rows = csc[(csc.network == network) & (csc.injection_layer != "")]
    return int(pd.to_numeric(rows.n_images, errors="coerce").max()) if len(rows) else 0


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


def undefined_counts(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Rows not scored, per method and reason (``method``, ``reason``,
    ``rows``), over all tables; see :func:`csc_analyzers.integrity.count_undefined`."""
    return count_undefined([t for t in tables if not t.empty and "method" in t])


def nonfinite_counts(tables: Sequence[pd.DataFrame]) -> dict:
    """Rows whose value is NaN or infinite, that are flagged ``nonfinite``
    (a map behind the value held NaN/Inf) or whose maps are undefined (column
    ``undefined``), per method, over all tables."""
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
    undefined = undefined_counts([csc, sanity, logit, sensitivity])
    bad = undefined.groupby("method")["rows"].sum().to_dict() if len(undefined) else {}
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
            "undefined_maps": int(bad.get(name, 0)),
            "verdict": ("n/a (no CSC)" if not np.isfinite(conv_value) else
                        "converges" if conv_value >= CONVERGED else "does not converge"),
        })
    table = pd.DataFrame(rows)
    table.attrs["first_conv"] = first_conv
    table.attrs["baseline_conv"] = baseline_at(csc, network.name, first_conv)
    table.attrs["csc_images"] = csc_images(csc, network.name)
    table.attrs["baseline_input"] = baseline_at(csc, network.name, "input")
    table.attrs["undefined"] = undefined.to_dict("records")  # (method, reason, rows)
    return table


# -- the paper's claims --------------------------------------------------------------


def evidence(results: Path, network, methods: pd.DataFrame, *, trained: bool,
             seed: int) -> Evidence:
    """What the run measured on ``network`` (:class:`~csc_analyzers.claims.Evidence`)."""
    by_method = methods.set_index("method") if len(methods) else pd.DataFrame(
        columns=["csc_first_conv", "csc_input"])
    return Evidence(
        network=network.name, trained=trained, weights=str(getattr(network, "weights", "")),
        layer=methods.attrs.get("first_conv") or "the first convolution",
        csc_conv=by_method["csc_first_conv"].astype(float),
        csc_input=by_method["csc_input"].astype(float),
        baseline_conv=methods.attrs.get("baseline_conv", np.nan),
        csc_images=int(methods.attrs.get("csc_images", 0)),
        logit=per_image(_read(results, "random_logit.csv"), network.name, SSIM_METRIC),
        top=per_image(_read(results, "sanity_cascading.csv"), network.name, SSIM_METRIC,
                      level=1),
        gap=per_image(_read(results, "class_sensitivity.csv"), network.name, "abs_mask_gap"),
        seed=seed, training=_training_rows(results, network.name))


def _training_rows(results: Path, network: str) -> pd.DataFrame:
    """Rows of ``csc_training.csv`` (scripts/csc_training_progress.py) for ``network``."""
    table = _read(results, "csc_training.csv")
    if table.empty or "network" not in table:
        return pd.DataFrame()
    return table[table["network"] == network].reset_index(drop=True)


def claims(results: Path, network, methods: pd.DataFrame, *, trained: bool,
           seed: int) -> list:
    """The paper's claims on this network as :class:`~csc_analyzers.claims.ClaimRow`
    (the claims' own rows, then the beyond-the-paper rows; see
    :func:`csc_analyzers.claims.judge`)."""
    if methods.empty:
        return []
    return judge_all(evidence(results, network, methods, trained=trained, seed=seed))


def theorem_claim(results: Path) -> Optional[ClaimRow]:
    """Theorem 1's claim from ``theorem1.csv`` (random matrices, no network)."""
    table = _read(results, "theorem1.csv")
    if table.empty:
        return None
    last = table[table.n_factors == table.n_factors.max()]
    ratio = last.groupby("distribution")["sv_ratio"].median()
    signed = ratio.get("signed gaussian", np.nan)
    positive = ratio.drop("signed gaussian", errors="ignore")
    return ClaimRow(
        claim="Theorem 1 / appendix B: products of non-negative random matrices converge "
        "to rank 1 exponentially fast; signed Gaussian products do not.",
        scope="random matrix products (no network)",
        verdict=HOLDS if positive.min() > 1e3 and signed < 10 else FAILS, reason="",
        evidence=f"sigma1/sigma2 after {int(last.n_factors.max())} factors: non-negative min "
        f"{positive.min():.2e}, signed Gaussian {signed:.2f}", key="theorem1")


FIGURE3_NETWORK = "vgg16"
FIGURE3_DATA = "imagenet"


FIGURE3_CLAIM = ("PatternNet: sigma1(A)/sigma2(A) > 6 for almost all VGG-16 patterns "
                 "(Figure 3a: full pattern matrices, patterns from ImageNet images).")
FIGURE3_SCOPE = "VGG-16 (ImageNet weights, patterns from ImageNet images); PatternNet"


def _figure3_reason(network: str, rows: pd.DataFrame) -> Optional[str]:
    """Why the Figure 3 claim is not testable on these rows (``None``: it is)."""
    if network != FIGURE3_NETWORK:
        return f"the paper states this for VGG-16's patterns, not the {network}'s"
    weights = str(rows["weights"].iloc[0]) if "weights" in rows else "unknown"
    if "random" in weights or weights == "unknown":
        return ("needs ImageNet weights (random weights here: the measurement is "
                "architecture-level)")
    data = str(rows["pattern_data"].iloc[0]) if "pattern_data" in rows else "unknown"
    if data != FIGURE3_DATA:
        return f"the paper's patterns come from ImageNet images, these from {data}"
    return None


def _figure3_evidence(network: str, rows: pd.DataFrame) -> Optional[tuple]:
    a = rows[(rows.panel == "a") & (rows.matrix == "A")]
    if a.empty:
        return None
    over = int((a.ratio > 6).sum())
    text = (f"{network} ({rows['weights'].iloc[0] if 'weights' in rows else '?'} "
            f"weights): full A ratio > 6 in {over} of {len(a)} layers "
            f"(median {a.ratio.median():.2f})")
    centre = rows[rows.panel == "b"].pivot_table(index="layer_index", columns="matrix",
                                                 values="ratio")
    if {"W", "A*W"} <= set(centre.columns):
        text += (f"; centre slices: A\u2299W ratio > W's in "
                 f"{int((centre['A*W'] > centre['W']).sum())} of {len(centre)} layers")
    return over / len(a) >= 0.9, text


def pattern_claim(results: Path) -> list:
    """Figure 3a's claim from ``pattern_spectra.csv`` (Figure 3 as published):
    the share of VGG-16 layers whose full pattern matrix A has sigma1/sigma2 >
    6 (holds at >= 90 %); judged only for VGG-16 with ImageNet weights and
    ImageNet patterns, "not testable here" with the reason otherwise; other
    networks' spectra are beyond-the-paper rows. Empty list: no table."""
    table = _read(results, "pattern_spectra.csv")
    if table.empty or "panel" not in table:
        return []
    rows = []
    for network, part in table.groupby("network", sort=True):
        found = _figure3_evidence(network, part)
        if found is None:
            continue
        passed, text = found
        reason = _figure3_reason(network, part)
        base = dict(claim=FIGURE3_CLAIM, scope=FIGURE3_SCOPE, network=network, key="figure3")
        if network != FIGURE3_NETWORK:
            rows.append(ClaimRow(verdict=UNTESTABLE, reason=reason,
                                 evidence="measured here: see Beyond the paper", **base))
            rows.append(ClaimRow(**{**base, "scope": f"{network} (not in the claim's scope)"},
                                 verdict="", reason="", evidence=text, beyond=True,
                                 outcome="as the paper states" if passed else
                                 "unlike the paper's statement"))
        elif reason:
            rows.append(ClaimRow(verdict=UNTESTABLE, reason=reason, evidence=text, **base))
        else:
            rows.append(ClaimRow(verdict=HOLDS if passed else FAILS, reason="", evidence=text,
                                 **base))
    return rows


# -- the document ---------------------------------------------------------------------


def _method_markdown(methods: pd.DataFrame) -> list:
    lines = ["| method | CSC after first conv | CSC at input | random-logit SSIM (paper) | "
             "top-layer SSIM (paper) | class mask gap (positive) | class mask gap (abs) | "
             "undefined maps | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in methods.itertuples():
        lines.append(f"| {row.method} | {row.csc_first_conv:.6f} | {row.csc_input:.6f} | "
                     f"{row.random_logit_ssim} | {row.top_layer_ssim} | {row.class_mask_gap} | "
                     f"{row.class_abs_gap} | {row.undefined_maps} | {row.verdict} |")
    return lines


def undefined_markdown(undefined) -> list:
    """The rows not scored, per method and reason (a Markdown table), from
    records or a frame with columns method, reason, rows."""
    undefined = pd.DataFrame(list(undefined or []) if not isinstance(undefined, pd.DataFrame)
                             else undefined, columns=["method", "reason", "rows"])
    if undefined.empty:
        return ["Undefined maps: none (every map was finite and not all zeros)."]
    order = {name: k for k, name in enumerate(spec.name for spec in ALL_METHODS)}
    table = undefined.pivot_table(index="method", columns="reason", values="rows",
                                  aggfunc="sum", fill_value=0)
    table = table.loc[sorted(table.index, key=lambda m: (order.get(m, len(order)), m))]
    reasons = list(table.columns)
    lines = ["Undefined maps (rows left out of every median, per method and reason):", "",
             "| method | " + " | ".join(reasons) + " |", "|---|" + "---|" * len(reasons)]
    lines += [f"| {method} | " + " | ".join(str(int(v)) for v in row) + " |"
              for method, row in table.iterrows()]
    return lines


def _cells(*values) -> str:
    """One Markdown table row; a ``|`` inside a value is escaped."""
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def claims_markdown(rows: Sequence[ClaimRow]) -> list:
    """The claims' own rows: claim, scope, verdict (with its reason), evidence."""
    lines = ["| claim (paper) | scope (paper) | verdict | evidence |", "|---|---|---|---|"]
    return lines + [_cells(r.claim, r.scope, r.verdict_text, r.evidence)
                    for r in rows if not r.beyond]


def beyond_markdown(rows: Sequence[ClaimRow]) -> list:
    """The beyond-the-paper rows (they never count against a claim)."""
    rows = [r for r in rows if r.beyond]
    if not rows:
        return []
    lines = ["### Beyond the paper", "",
             "The paper's tests run on networks or methods the paper did not make the claim "
             "about. Shown for information; they never count against a claim.", "",
             "| claim (paper) | run here on | measured here | outcome |", "|---|---|---|---|"]
    return lines + [_cells(r.claim, r.scope, r.evidence, r.outcome) for r in rows] + [""]


def _claims_frame(rows: Sequence[ClaimRow]) -> pd.DataFrame:
    columns = ["network", "key", "claim", "scope", "verdict", "reason", "evidence", "beyond",
               "outcome"]
    return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)


def write_report(results, *, settings, networks: dict, figures: Sequence, wall_time: float
                 ) -> Path:
    """Write ``results/REPORT.md``, ``results/verdicts.csv`` (per method) and
    ``results/claims.csv`` (per claim and network: scope, verdict, reason,
    evidence, beyond the paper or not); returns the report path."""
    results = Path(results)
    lines = ["# Reproduction report: When Explanations Lie", ""]
    lines += [f"Wall time of this invocation: {wall_time / 60:.1f} min (a resumed run counts "
              f"only the work after the resume). Seed {settings.seed}; "
              f"{settings.n_vectors} random vectors per image for CSC; "
              f"{settings.n_images} images per network (the paper used 200"
              + ("; this sample was chosen to fit the time budget of the default run"
                 if settings.n_images < 200 else "") + ").", ""]
    recipe = getattr(settings, "recipe", "plain")
    lines += [f"Method recipe: {recipe} ({RECIPES.get(recipe, 'unknown recipe')}).", ""]
    verdict_frames, claim_rows = [], []
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
            lines += ["Random weights: the paper's claims are about trained networks, so "
                      "they are not testable here; the measurements are architecture-level "
                      "and not evidence for or against the paper.", ""]
        rows = claims(results, network, methods, trained=trained, seed=settings.seed)
        claim_rows += rows
        lines += ["### The paper's claims", ""] + claims_markdown(rows) + [""]
        lines += beyond_markdown(rows)
        lines += ["### Per method", ""] + _method_markdown(methods) + [""]
        lines += undefined_markdown(methods.attrs.get("undefined")) + [""]
        if info.get("skipped"):
            lines += ["Skipped: " + "; ".join(f"{n} ({why})" for n, why in info["skipped"]), ""]
    general = [c for c in [theorem_claim(results)] if c] + pattern_claim(results)
    claim_rows += general
    if general:
        lines += ["## Theory", ""] + claims_markdown(general) + [""]
        lines += beyond_markdown(general)
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
    if claim_rows:
        atomic_write_text(results / "claims.csv", _claims_frame(claim_rows).to_csv(index=False))
    path = results / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["write_report", "method_table", "claims", "evidence", "Interval", "interval",
           "CONVERGED", "nonfinite_counts", "undefined_counts", "theorem_claim",
           "pattern_claim", "get_method", "HOLDS", "FAILS", "UNTESTABLE"]
