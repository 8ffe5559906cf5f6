"""The audit's verdicts: one row per method from the experiment tables, the
verdict rule, the terminal table, ``verdicts.csv``, ``AUDIT.md`` and the
figures.

The audit's SSIMs are those of the ``standard`` recipe (metric
``ssim_standard``: maps normalised with their high end at 1, data_range 1;
see :mod:`csc_analyzers.metrics.ssim`), the recipe its threshold was set
with; the result tables also hold the paper's recipe (``ssim_paper``)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..experiments.store import atomic_write_text
from ..integrity import NONFINITE, count_undefined, flag_nonfinite
from ..metrics.ssim import RECIPES
from ..registry import ALL_METHODS, available_methods

CSC_THRESHOLD = 0.99
SSIM_THRESHOLD = 0.9
SSIM_RECIPE = RECIPES["standard"]
SSIM_METRIC = SSIM_RECIPE.metric  # "ssim_standard"
# Below this many channels the CSC after the first convolution says little:
# after ReLU and max pooling most locations keep one non-zero channel, whose
# |cos| is 1 for any backward pass (the paper's networks have 64 and more).
MIN_CONV_CHANNELS = 32
INSENSITIVE = "class-insensitive: do not trust for class-specific explanations"
SENSITIVE = "sensitive to later layers"
NOT_MEASURED = "not measured"
DISAGREEMENT = (
    "the verdict follows the SSIMs: they compare the maps the user sees, while CSC "
    "measures the relevance that random vectors injected at the logits produce through the "
    "method's backward chain; a map that is not that chain alone (Contrastive LRP subtracts "
    "two z+ chains, so their shared direction cancels) can change with the class while the "
    "chain converges. For a method whose map is the chain, converged CSC makes every map "
    "alike and the SSIMs high, so the signals cannot disagree")
METRIC_COLUMNS = ("csc_first_conv", "csc_input", "random_logit_ssim", "top_layer_ssim",
                  "class_sensitivity_gap")
UNDEFINED_COLUMN = "undefined_maps"  # rows not scored: "0" or "n (reason k, ...)"
# of those, the rows the verdict's own medians would have used (int)
LEFT_OUT_COLUMN = "undefined_in_verdict"
VERDICT_COLUMNS = ("method",) + METRIC_COLUMNS + (UNDEFINED_COLUMN, LEFT_OUT_COLUMN,
                                                  "verdict", "evidence")
HEADERS = {"method": "method", "csc_first_conv": "CSC 1st conv", "csc_input": "CSC input",
           "random_logit_ssim": "rand.-logit SSIM (std.)",
           "top_layer_ssim": "top-layer SSIM (std.)",
           "class_sensitivity_gap": "class gap", UNDEFINED_COLUMN: "undefined maps",
           "verdict": "verdict"}


# -- the verdict rule (pure) ----------------------------------------------------------

def verdict(csc_first_conv=np.nan, csc_input=np.nan, random_logit_ssim=np.nan,
            top_layer_ssim=np.nan, *, first_conv_channels=None,
            csc_threshold: float = CSC_THRESHOLD, ssim_threshold: float = SSIM_THRESHOLD,
            min_conv_channels: int = MIN_CONV_CHANNELS) -> tuple:
    """``(verdict, evidence)`` of one method from its medians: class-insensitive
    if the CSC after the first convolution or at the input is >= ``csc_threshold``
    (the backward pass converged to one direction whatever relevance the
    logits sent) or the random-logit or top-layer SSIM is >= ``ssim_threshold``
    (the map barely changes when the explained class or the top layer
    changes); sensitive if none is and at least one was measured (NaN: not
    measured). When only CSC fires and every measured SSIM is below its
    threshold, the signals disagree and the verdict follows the SSIMs
    (sensitive; :data:`DISAGREEMENT` in the evidence says why). The CSC after
    the first convolution counts only if that layer
    has at least ``min_conv_channels`` channels (``first_conv_channels``;
    None: unknown, counted)."""
    notes = []
    if (first_conv_channels is not None and first_conv_channels < min_conv_channels
            and not math.isnan(float(csc_first_conv))):
        notes.append(f"CSC after the first convolution not used ({first_conv_channels} "
                     f"channels < {min_conv_channels})")
        csc_first_conv = np.nan
    tests = (("CSC after the first convolution", csc_first_conv, csc_threshold),
             ("CSC at the input", csc_input, csc_threshold),
             ("random-logit SSIM", random_logit_ssim, ssim_threshold),
             ("top-layer SSIM", top_layer_ssim, ssim_threshold))
    measured = [(label, float(value), limit) for label, value, limit in tests
                if value is not None and not math.isnan(float(value))]
    if not measured:
        return NOT_MEASURED, "; ".join(notes + ["no test could be measured"])
    fired = [f"{label} {value:.4g} >= {limit:g}" for label, value, limit in measured
             if value >= limit]
    ssims = [(label, value, limit) for label, value, limit in measured if "SSIM" in label]
    csc_fired = [text for text in fired if text.startswith("CSC")]
    if csc_fired and ssims and len(csc_fired) == len(fired):
        # CSC says the relevance chain converges, every measured SSIM says the map changes
        below = [f"{label} {value:.4g} < {limit:g}" for label, value, limit in ssims]
        return SENSITIVE, "; ".join(
            [f"signals disagree: {', '.join(csc_fired)}, but {', '.join(below)}",
             DISAGREEMENT] + notes)
    cscs = [(label, value, limit) for label, value, limit in measured if label.startswith("CSC")]
    if fired and not csc_fired and cscs:
        below = [f"{label} {value:.4g} < {limit:g}" for label, value, limit in cscs]
        notes.insert(0, f"signals disagree: {', '.join(below)}; the verdict follows the "
                        "SSIMs, which compare the maps themselves: the map barely changes "
                        "although the injected relevance does not converge")
    if fired:
        return INSENSITIVE, "; ".join(fired + notes)
    return SENSITIVE, "; ".join([f"{label} {value:.4g} < {limit:g}"
                                 for label, value, limit in measured] + notes)


def verdict_table(summary: pd.DataFrame, *, first_conv_channels=None,
                  csc_threshold: float = CSC_THRESHOLD, ssim_threshold: float = SSIM_THRESHOLD,
                  min_conv_channels: int = MIN_CONV_CHANNELS) -> pd.DataFrame:
    """``summary`` (one row per method, columns ``method`` and
    :data:`METRIC_COLUMNS`) with the ``verdict`` and ``evidence`` of
    :func:`verdict` per row."""
    missing = [c for c in ("method",) + METRIC_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary table lacks columns {missing}")
    extra = [c for c in (UNDEFINED_COLUMN, LEFT_OUT_COLUMN) if c in summary.columns]
    out = summary.loc[:, list(("method",) + METRIC_COLUMNS) + extra].copy()
    results = [verdict(row.csc_first_conv, row.csc_input, row.random_logit_ssim,
                       row.top_layer_ssim, first_conv_channels=first_conv_channels,
                       csc_threshold=csc_threshold, ssim_threshold=ssim_threshold,
                       min_conv_channels=min_conv_channels) for row in out.itertuples()]
    out["verdict"] = [v for v, _ in results]
    out["evidence"] = [e for _, e in results]
    if LEFT_OUT_COLUMN in out.columns:  # the verdict's medians left rows out: say so
        out["evidence"] = [e if not left else
                           f"{int(left)} of the rows the verdict uses left out (undefined "
                           f"maps); the medians are of the defined ones only; {e}"
                           for left, e in zip(out[LEFT_OUT_COLUMN], out["evidence"])]
    out = out.reset_index(drop=True)
    out.attrs["unused_columns"] = unused_columns(first_conv_channels, min_conv_channels)
    return out


def unused_columns(first_conv_channels=None, min_conv_channels: int = MIN_CONV_CHANNELS) -> tuple:
    """The metric columns the verdict rule does not use: the class gap always
    (reported for reading only), the CSC after the first convolution when that
    layer has fewer than ``min_conv_channels`` channels."""
    unused = ["class_sensitivity_gap"]
    if first_conv_channels is not None and first_conv_channels < min_conv_channels:
        unused.insert(0, "csc_first_conv")
    return tuple(unused)


# -- from the experiment tables ---------------------------------------------------------

def _scored(table, method, **where) -> tuple:
    """``(values, left_out)``: the scored values of ``method``'s rows that
    match ``where`` and how many matching rows were not scored. A row flagged
    nonfinite (a map behind it held NaN/Inf, or it names why its maps are
    undefined: zero map, ...) or without a value is not scored."""
    if table is None or table.empty:
        return pd.Series(dtype=float), 0
    part = flag_nonfinite(table[table["method"] == method])
    for column, value in where.items():
        part = part[part[column] == value]
    values = pd.to_numeric(part["value"], errors="coerce")[~part[NONFINITE]].dropna()
    return values, len(part) - len(values)


def _median_of(values) -> float:
    return float(np.median(values)) if len(values) else np.nan


def _median(table, method, **where) -> float:
    return _median_of(_scored(table, method, **where)[0])


def summarize(methods, tables: dict, *, logits: str, first_conv) -> pd.DataFrame:
    """One row per method: pooled median CSC (injection at ``logits``) after
    ``first_conv`` and at the input, median random-logit SSIM, median SSIM
    after randomising the top layer (level 1), both of :data:`SSIM_METRIC`
    (the standard recipe), median class-sensitivity gap, and
    ``undefined_maps``: the rows of the method left out of these medians
    because their maps were undefined, with the count per reason, and
    ``undefined_in_verdict``: how many of them the verdict's medians (CSC
    after ``first_conv`` and at the input, the two SSIMs) would have used."""
    csc = tables.get("csc")
    if csc is not None and not csc.empty:
        csc = csc[(csc["statistic"] == "median") & (csc["injection_layer"] == logits)]
    undefined = undefined_summary(tables)
    rows = []
    for method in methods:
        # the verdict's four inputs: their scored values and the rows left out
        used = {"csc_first_conv": (_scored(csc, method, layer=first_conv) if first_conv
                                   else (pd.Series(dtype=float), 0)),
                "csc_input": _scored(csc, method, layer="input"),
                "random_logit_ssim": _scored(tables.get("random_logit"), method,
                                             metric=SSIM_METRIC),
                "top_layer_ssim": _scored(tables.get("sanity_cascading"), method,
                                          metric=SSIM_METRIC, level=1)}
        rows.append({
            "method": method,
            **{column: _median_of(values) for column, (values, _left) in used.items()},
            "class_sensitivity_gap": _median(tables.get("class_sensitivity"), method,
                                             metric="mask_gap"),
            UNDEFINED_COLUMN: undefined.get(method, "0"),
            LEFT_OUT_COLUMN: sum(left for _values, left in used.values()),
        })
    return pd.DataFrame(rows, columns=["method", *METRIC_COLUMNS, UNDEFINED_COLUMN,
                                       LEFT_OUT_COLUMN])


def undefined_summary(tables: dict) -> dict:
    """method -> "n (reason k, ...)": the rows of the CSC, sanity-check,
    random-logit and class-sensitivity tables not scored, per reason."""
    names = ("csc", "sanity_cascading", "random_logit", "class_sensitivity")
    counts = count_undefined([tables[k] for k in names
                              if tables.get(k) is not None and "method" in tables[k]])
    out = {}
    for method, part in counts.groupby("method", sort=False):
        detail = ", ".join(f"{r.reason} {int(r.rows)}" for r in part.itertuples())
        out[method] = f"{int(part['rows'].sum())} ({detail})"
    return out


# -- text ------------------------------------------------------------------------------

def _cell(value) -> str:
    if isinstance(value, str):
        return value
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(table: pd.DataFrame, *, markdown: bool = False, unused=None) -> str:
    """The verdict table as aligned text (or a Markdown table); the headers
    of the columns the verdict does not use (``unused``, default
    ``table.attrs["unused_columns"]``) say "(not in verdict)"."""
    columns = [c for c in HEADERS if c in table.columns]
    unused = set(table.attrs.get("unused_columns", ()) if unused is None else unused)
    cells = [[HEADERS[c] + (" (not in verdict)" if c in unused else "") for c in columns]]
    cells += [[_cell(row[c]) for c in columns] for _, row in table.iterrows()]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |",
                 "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(row[k]) for row in cells) for k in range(len(columns))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _names(methods) -> str:
    text = ", ".join(methods)
    return text if text.endswith(".") else text + "."


def guidance(table: pd.DataFrame) -> list:
    """Plain-language paragraphs on which methods to trust for this model. A
    method judged sensitive although some of the rows its verdict uses were
    left out (undefined maps: zero, NaN or overflowing relevance) is listed
    apart: it passed only on the maps that were defined."""
    left_out = (pd.to_numeric(table[LEFT_OUT_COLUMN], errors="coerce").fillna(0)
                if LEFT_OUT_COLUMN in table.columns else pd.Series(0, index=table.index))
    sensitive = table["verdict"] == SENSITIVE
    trusted = list(table.loc[sensitive & (left_out == 0), "method"])
    undefined = table.get(UNDEFINED_COLUMN, pd.Series("?", index=table.index))
    partly = [f"{table.at[i, 'method']} ({int(left_out[i])} rows left out; undefined maps "
              f"in all its tables: {undefined[i]})"
              for i in table.index[sensitive & (left_out > 0)]]
    distrust = list(table.loc[table["verdict"] == INSENSITIVE, "method"])
    out = []
    if distrust:
        out.append(
            "**Do not use these methods to explain why the model chose a class:** "
            + _names(distrust) + " On this model their saliency maps stay almost the same "
            "whatever the last layers say: random relevance at the logits comes out pointing "
            "the same way after the first convolution (CSC close to 1), or the map for another "
            "class, or for a model whose top layer was replaced by random weights, looks like "
            "the original (SSIM close to 1). Such maps show what the first layers respond to "
            "(edges, textures, the object's outline), not what made the model decide.")
    if trusted:
        out.append(
            "**Passed all tests:** " + _names(trusted) + " Their maps change when the "
            "explained class or the top layer changes, so they do reflect the later layers. "
            "Passing is necessary, not sufficient, for a faithful explanation.")
    if partly:
        out.append(
            "**Passed on the maps that were defined, with others undefined:** "
            + _names(partly) + " The tests left out every map whose relevance was zero, "
            "NaN or overflowed, so their verdict rests on the rest; where the warnings below "
            "report exploding relevance, even the defined maps mean little.")
    if not distrust and not trusted and not partly:
        out.append("No method could be measured on this model.")
    out.append(
        "How to read the numbers: *CSC* is the median cosine similarity between the relevance "
        "vectors that different random relevance at the logits produces after the first "
        "convolution and at the input (1: all collapse onto one direction, rank 1). *Random-"
        "logit SSIM* compares the map of the predicted class with the map of a random other "
        "class; *top-layer SSIM* compares the map before and after randomising the weights "
        "of the top layer (1: identical maps); both SSIMs use the standard recipe "
        "(std.: each map's 0.5 and 99.5 percentiles, 100 for RectGrad, mapped to 0 and 1, "
        "data_range 1; the result tables also hold the paper's recipe, ssim_paper). "
        "The *class gap* (built-in two-object images) "
        "is the share of positive relevance on object A when explaining A minus the share "
        "when explaining B: near 0 means the map does not follow the explained class. "
        f"Thresholds: CSC >= {CSC_THRESHOLD}, SSIM >= {SSIM_THRESHOLD}. With few images the "
        "medians are noisy; rerun with more --n-images to firm them up.")
    return out


def markdown_report(plan, table: pd.DataFrame, figures: list, out: Path) -> str:
    """The text of ``AUDIT.md``."""
    info, settings = plan.info, plan.settings
    low, high = info["input_range"]
    lines = [f"# Attribution audit of `{info['model_path']}`", "",
             f"- input {info['height']}x{info['width']}x{info['channels']}, "
             f"{info['n_classes']} classes, explained on its logits",
             f"- {info['n_images']} {info['source']}, preprocessing `{settings['preprocess']}` "
             f"(input range [{low:g}, {high:g}]), explained class: the model's prediction",
             f"- CSC: {settings['n_vectors']} random vectors per image injected at "
             f"`{plan.network.csc_layers[0]}`; top layer randomised: "
             f"`{plan.network.sanity_layers[0]}`; seed {settings['seed']}", "",
             "## Verdicts", "", format_table(table, markdown=True), ""]
    lines += ["## What this means for this model", ""]
    for paragraph in guidance(table):
        lines += [paragraph, ""]
    skipped = [c for c in plan.checks if not c.ok]
    partial = [c for c in plan.checks if c.ok and not c.sanity_ok]
    installed = {spec.name for spec in available_methods(ALL_METHODS)}
    absent = [spec.name for spec in ALL_METHODS if spec.name not in installed]
    lines += ["## Not measured, and notes", ""]
    lines += [f"- {c.spec.name}: not applicable: {c.reason}" for c in skipped]
    lines += [f"- {c.spec.name}: top-layer SSIM not measured: {c.sanity_reason}"
              for c in partial]
    lines += [f"- {c.spec.name}: warning: {w}" for c in plan.checks for w in c.warnings]
    unused = table.attrs.get("unused_columns", ())
    if "csc_first_conv" in unused:
        lines.append(f"- CSC 1st conv: shown, not used by the verdict: the first convolution "
                     f"has fewer than {MIN_CONV_CHANNELS} channels")
    if "class_sensitivity_gap" in unused:
        lines.append("- class gap: shown for reading, not used by the verdict")
    if getattr(plan, "estimate", None) is not None:
        lines.append("- cost: " + plan.estimate.describe().replace("\n", "\n  "))
    if plan.data.composites is None:
        lines.append(f"- class-sensitivity gap: {plan.data.composites_reason}")
    else:
        lines.append("- class-sensitivity gap: measured on the built-in two-object images "
                     "with their labels; it means something only if the model's classes "
                     "are the built-in classes (disk, square, ...)")
    if absent:
        lines.append("- methods of the registry not installed here: " + ", ".join(absent))
    lines.append("")
    lines += ["## Evidence per method", ""]
    lines += [f"- {row.method}: {row.evidence}" for row in table.itertuples()]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"- [{p.name}]({p.relative_to(out).as_posix()})" for p in figures]
    lines += ["", "Tables: `verdicts.csv`, `results/` (per-unit results; a rerun with the same "
              "--out resumes)."]
    return "\n".join(lines) + "\n"


# -- figures and files ------------------------------------------------------------------

def make_figures(plan, tables: dict, figures_dir: Path) -> list:
    """The CSC, sanity, random-logit and class-sensitivity figures."""
    from ..plotting.csc import plot_csc_histograms, plot_csc_per_layer
    from ..plotting import sanity as splot

    name = plan.network.name
    order = [c.spec.name for c in plan.checks]

    def ordered(names):
        present = set(names)
        return [m for m in order if m in present]

    results = figures_dir.parent / "results"
    paths = []
    csc = tables.get("csc")
    if csc is not None and (csc["method"] != "random baseline").any():
        paths += plot_csc_per_layer(csc, figures_dir)
    histograms = tables.get("histograms")
    if histograms is not None and not histograms.empty:
        paths += plot_csc_histograms(histograms, figures_dir)
    rng = np.random.default_rng(plan.settings["seed"])
    sanity = tables.get("sanity_cascading")
    if sanity is not None and not sanity.empty:
        methods = [m for m in ordered(sanity["method"])
                   if splot.maps_path(results, "sanity_cascading", (name, m, 0)).exists()]
        if methods:
            paths.append(splot.plot_randomization_grid(
                results, name, methods, figures_dir / f"sanity_top_layer_grid_{name}.png",
                image=plan.data.raw[0].squeeze(), recipe=SSIM_RECIPE.name))
        paths.append(splot.plot_ssim_vs_level(sanity, figures_dir / f"sanity_ssim_{name}.png",
                                              rng=rng, n_resamples=2000, metric=SSIM_METRIC))
    logit = tables.get("random_logit")
    if logit is not None and not logit.empty:
        paths.append(splot.plot_random_logit(logit, figures_dir / f"random_logit_{name}.png",
                                             network=name, metric=SSIM_METRIC))
    sensitivity = tables.get("class_sensitivity")
    if sensitivity is not None and not sensitivity.empty and plan.data.composites:
        image = plan.data.composites[0][0]
        for method in ordered(sensitivity["method"]):
            if not splot.maps_path(results, "class_sensitivity", (name, method, 0)).exists():
                continue
            maps = splot.load_maps(results, "class_sensitivity", name, method, 0)
            safe = "".join(ch if ch.isalnum() else "_" for ch in method)
            paths.append(splot.plot_class_insensitivity(
                image, maps["maps"][0], maps["maps"][1], [str(c) for c in maps["classes"]],
                figures_dir / f"class_sensitivity_{name}_{safe}.png", method=method))
    return [Path(p) for p in paths]


def write_report(plan, tables: dict, out, *, figures: bool = True) -> dict:
    """Write ``verdicts.csv``, the figures (unless ``figures`` is False) and
    ``AUDIT.md`` into ``out``;
    returns ``{"verdicts"}`` (the table, not-applicable methods last) and
    ``{"paths"}`` (the files written)."""
    from ..experiments.csc import first_conv_layer, layer_channels

    out = Path(out)
    measured = [c.spec.name for c in plan.checks if c.ok]
    first_conv = first_conv_layer(plan.network)
    summary = summarize(measured, tables, logits=plan.network.csc_layers[0],
                        first_conv=first_conv)
    channels = layer_channels(plan.network, first_conv) if first_conv else None
    table = verdict_table(summary, first_conv_channels=channels)
    skipped = pd.DataFrame([{"method": c.spec.name, "verdict": f"not applicable: {c.reason}",
                             "evidence": c.reason} for c in plan.checks if not c.ok],
                           columns=list(VERDICT_COLUMNS))
    full = pd.concat([table, skipped], ignore_index=True) if len(skipped) else table
    full.attrs["unused_columns"] = table.attrs.get("unused_columns", ())
    paths = make_figures(plan, tables, out / "figures") if figures else []
    atomic_write_text(out / "verdicts.csv",
                      full.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "AUDIT.md", markdown_report(plan, full, paths, out))
    return {"verdicts": full, "paths": [out / "verdicts.csv", out / "AUDIT.md", *paths]}


__all__ = ["verdict", "verdict_table", "unused_columns", "DISAGREEMENT", "summarize",
           "format_table", "guidance", "markdown_report", "make_figures", "write_report",
           "CSC_THRESHOLD", "SSIM_THRESHOLD", "MIN_CONV_CHANNELS", "INSENSITIVE", "SENSITIVE",
           "NOT_MEASURED", "METRIC_COLUMNS", "VERDICT_COLUMNS", "UNDEFINED_COLUMN",
           "LEFT_OUT_COLUMN", "undefined_summary"]
