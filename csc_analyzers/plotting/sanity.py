"""Figures of the sanity checks, random logit and class sensitivity
(Figures 1a, 1b-e, 4a, 4b, 6a-b), styled from the method registry.

SSIMs are those of the paper's recipe by default (metric ``ssim_paper``, see
:mod:`csc_analyzers.metrics.ssim`); ``metric=`` / ``recipe=`` choose another,
and the labels name the recipe."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..experiments.sanity import maps_path  # noqa: E402
from ..experiments.store import check_metric_names  # noqa: E402
from ..integrity import NONFINITE, flag_nonfinite  # noqa: E402
from ..metrics.bootstrap import bootstrap_median  # noqa: E402
from ..metrics.heatmaps import normalize_abs, normalize_signed  # noqa: E402
from ..metrics.ssim import get_recipe, ssim, ssim_label  # noqa: E402
from ..registry import ALL_METHODS, MethodSpec  # noqa: E402

HEATMAP = {"cmap": "seismic", "vmin": -1.0, "vmax": 1.0}
SSIM_METRIC = "ssim_paper"
LRP_CMP = ("LRP CMP a1b0", "LRP CMP a2b1")


def _spec(name: str) -> MethodSpec:
    for spec in ALL_METHODS:
        if spec.name == name:
            return spec
    return MethodSpec(name, name)


def _unflagged(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with NaN as the value of every row flagged ``nonfinite`` (its
    value, or a map behind it, held NaN/Inf), as the report leaves them out."""
    flags = flag_nonfinite(data)[NONFINITE].astype(bool)
    return data.assign(value=pd.to_numeric(data.value, errors="coerce").where(~flags))


def _ordered(names) -> list:
    """Method names in registry order (unknown names last, sorted)."""
    order = {spec.name: k for k, spec in enumerate(ALL_METHODS)}
    return sorted(set(names), key=lambda n: (order.get(n, len(order)), n))


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return path


def _show(ax, heatmap, title=None):
    ax.imshow(normalize_signed(heatmap), **HEATMAP)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def load_maps(results, experiment: str, network: str, method: str, image_id: int) -> dict:
    """The maps saved by a run for one (network, method, image) unit."""
    path = maps_path(results, experiment, (network, method, int(image_id)))
    if not path.exists():
        raise FileNotFoundError(f"no saved maps for {method!r}, image {image_id}: {path} "
                                "(run with --save-maps covering this image)")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def plot_randomization_grid(results, network: str, methods: Sequence[str], path, *,
                            image_id: int = 0, mode: str = "cascading", image=None,
                            recipe: str | None = "paper") -> Path:
    """Figure 1a / 6a-b: per method (rows), the original map and the map at each
    cascading randomisation level (columns, top layer first). With ``recipe``,
    each randomised map is labelled with its SSIM to the original map by that
    recipe (randomised map first, the method's ``ssim_percentile``), as the
    sanity check scores it."""
    chosen = get_recipe(recipe) if recipe is not None else None
    experiment = f"sanity_{mode}"
    rows = [(m, load_maps(results, experiment, network, m, image_id)) for m in methods]
    if not rows:
        raise ValueError("plot_randomization_grid: no methods given")
    layers = [str(x) for x in rows[0][1]["layers"]]
    offset = 1 if image is not None else 0
    fig, axes = plt.subplots(len(rows), len(layers) + offset, squeeze=False,
                             figsize=(1.1 * (len(layers) + offset), 1.15 * len(rows)))
    for r, (method, data) in enumerate(rows):
        if image is not None:
            axes[r, 0].imshow(np.asarray(image))
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
        for c, heatmap in enumerate(data["maps"]):
            _show(axes[r, c + offset], heatmap, layers[c] if r == 0 else None)
            if chosen is not None and c > 0:
                score = ssim(heatmap, data["maps"][0], recipe=chosen,
                             percentile=_spec(method).ssim_percentile)
                axes[r, c + offset].set_xlabel(f"{score:.2f}", fontsize=6, labelpad=1)
        axes[r, offset].set_ylabel(method, fontsize=7, rotation=0, ha="right", va="center",
                                   color=_spec(method).color)
    if chosen is not None:  # a note just below the last row's labels
        bottom = min(ax.get_position().y0 for ax in axes.flat) - 0.22 / fig.get_figheight()
        fig.text(0.5, bottom, f"below each map: {ssim_label(chosen.metric)} to the original map",
                 ha="center", va="top", fontsize=7)
    return _save(fig, path)


def plot_class_insensitivity(image, map_a, map_b, names: Sequence[str], path, *,
                             method: str = "") -> Path:
    """Figure 1b-e: the image, the maps explaining class A and class B, and the
    difference of the two maps normalised to [0, 1] with its mean L1 norm."""
    diff = normalize_abs(map_a) - normalize_abs(map_b)
    fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
    axes[0].imshow(np.asarray(image))
    axes[0].set_title("image", fontsize=8)
    _show(axes[1], map_a, f"{method} expl. {names[0]}")
    _show(axes[2], map_b, f"{method} expl. {names[1]}")
    bound = max(np.abs(diff).max(), 1e-12)
    im = axes[3].imshow(diff, cmap="seismic", vmin=-bound, vmax=bound)
    axes[3].set_title(f"diff., L1 = {np.abs(diff).mean():.6f}", fontsize=8)
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def plot_random_logit(table: pd.DataFrame, path, *, network: str | None = None,
                      metric: str = SSIM_METRIC) -> Path:
    """Figure 4a: box plots of the random-logit SSIM (``metric``) per method."""
    check_metric_names(table, "the random-logit table")
    data = table[(table.metric == metric) & (table.experiment == "random_logit")]
    if network is not None:
        data = data[data.network == network]
    data = _unflagged(data)
    methods = _ordered(data.method)
    if not methods:
        raise ValueError(f"plot_random_logit: the table has no random-logit {metric!r} rows")
    fig, ax = plt.subplots(figsize=(0.35 * len(methods) + 1.5, 2.6))
    values = [data[data.method == m].value.dropna().to_numpy() for m in methods]
    boxes = ax.boxplot(values, patch_artist=True, widths=0.6)
    for patch, method in zip(boxes["boxes"], methods):
        patch.set_facecolor(_spec(method).color)
        patch.set_alpha(0.6)
    ax.set_xticks(np.arange(1, len(methods) + 1))
    ax.set_xticklabels(methods, rotation=90, fontsize=7)
    ax.set_ylabel(ssim_label(metric))
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def level_summary(table: pd.DataFrame, *, rng: np.random.Generator, metric: str = SSIM_METRIC,
                  n_resamples: int = 10_000) -> pd.DataFrame:
    """Median of ``metric`` over images per (method, level) with the bootstrap
    interval of :func:`bootstrap_median` (columns method, level, layer,
    median, low, high, n). NaN values (e.g. the paper's SSIM of a constant
    map) and rows flagged ``nonfinite`` are left out; ``n`` counts the others,
    and a level without any gets NaN (not drawn)."""
    check_metric_names(table, "the sanity-check table")
    data = _unflagged(table[table.metric == metric])
    out = []
    for (method, level), group in data.groupby(["method", "level"], sort=True):
        if group.value.notna().any():
            median, low, high = bootstrap_median(group.value, rng=rng,
                                                 n_resamples=n_resamples)
        else:
            median = low = high = np.nan
        out.append({"method": method, "level": int(level), "layer": group.layer.iloc[0],
                    "median": median, "low": low, "high": high,
                    "n": int(group.value.notna().sum())})
    return pd.DataFrame(out)


def plot_ssim_vs_level(table: pd.DataFrame, path, *, rng: np.random.Generator,
                       methods: Sequence[str] | None = None, metric: str = SSIM_METRIC,
                       n_resamples: int = 10_000) -> Path:
    """Figure 4b / 6: median SSIM to the original map against the cascading
    randomisation level (top layer first) with 99 % bootstrap bands."""
    summary = level_summary(table, rng=rng, metric=metric, n_resamples=n_resamples)
    if methods is not None:
        summary = summary[summary.method.isin(methods)]
    if summary.empty:
        raise ValueError(f"plot_ssim_vs_level: no {metric!r} rows to plot")
    levels = sorted(summary.level.unique())
    labels = [summary[summary.level == lv].layer.iloc[0] for lv in levels]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for method in _ordered(summary.method):
        part = summary[summary.method == method].sort_values("level")
        style = _spec(method).style
        ax.plot(part.level, part["median"], markersize=4, **style)
        ax.fill_between(part.level, part.low, part.high, color=style["color"], alpha=0.25)
    ax.set_xticks(levels)
    ax.set_xticklabels(labels, rotation=90)
    ax.set_ylabel(ssim_label(metric))
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)


def make_sanity_figures(results, network: str, out_dir, *, rng: np.random.Generator,
                        image_id: int = 0, image=None, n_resamples: int = 10_000,
                        recipe: str = "paper") -> list:
    """Write every figure whose inputs exist under ``results`` for ``network``:
    Figure 1a grid, Figure 4a, Figure 4b, Figure 6 (LRP CMP) and Figure 1b-e
    for the first saved class-sensitivity unit of each method; SSIMs of
    ``recipe`` (metric ``ssim_<recipe>``). Returns the paths."""
    results, out_dir = Path(results), Path(out_dir)
    metric = get_recipe(recipe).metric
    written = []
    cascading = results / "sanity_cascading.csv"
    if cascading.exists():
        table = pd.read_csv(cascading)
        check_metric_names(table, cascading)
        table = table[table.network == network]
        methods = _ordered(table.method)
        saved = [m for m in methods if maps_path(results, "sanity_cascading",
                                                 (network, m, image_id)).exists()]
        if saved:
            written.append(plot_randomization_grid(
                results, network, saved, out_dir / f"fig1a_sanity_grid_{network}.png",
                image_id=image_id, image=image, recipe=recipe))
        written.append(plot_ssim_vs_level(table, out_dir / f"fig4b_sanity_ssim_{network}.png",
                                          rng=rng, n_resamples=n_resamples, metric=metric))
        cmp_methods = [m for m in LRP_CMP if m in methods]
        if cmp_methods:
            written.append(plot_ssim_vs_level(
                table, out_dir / f"fig6_lrp_cmp_ssim_{network}.png", rng=rng,
                methods=cmp_methods, n_resamples=n_resamples, metric=metric))
            cmp_saved = [m for m in cmp_methods if m in saved]
            if cmp_saved:
                written.append(plot_randomization_grid(
                    results, network, cmp_saved, out_dir / f"fig6_lrp_cmp_grid_{network}.png",
                    image_id=image_id, image=image, recipe=recipe))
    logit = results / "random_logit.csv"
    if logit.exists():
        written.append(plot_random_logit(pd.read_csv(logit),
                                         out_dir / f"fig4a_random_logit_{network}.png",
                                         network=network, metric=metric))
    sensitivity = results / "class_sensitivity.csv"
    if sensitivity.exists():
        table = pd.read_csv(sensitivity)
        for method in _ordered(table[table.network == network].method):
            path = maps_path(results, "class_sensitivity", (network, method, image_id))
            if not path.exists():
                continue
            data = load_maps(results, "class_sensitivity", network, method, image_id)
            shown = image if image is not None else np.zeros(data["maps"].shape[1:])
            safe = method.replace(" ", "_").replace(".", "")
            written.append(plot_class_insensitivity(
                shown, data["maps"][0], data["maps"][1],
                [str(c) for c in data["classes"]],
                out_dir / f"fig1be_class_insensitivity_{network}_{safe}.png", method=method))
    return written


__all__ = ["plot_randomization_grid", "plot_class_insensitivity", "plot_random_logit",
           "level_summary", "plot_ssim_vs_level", "make_sanity_figures", "load_maps"]
