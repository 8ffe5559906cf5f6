"""Figures of the CSC experiment: Figure 5 (median CSC per layer, linear and
log(1 - CSC), histograms after the first convolution), Figure 6c (LRP CMP
against LRP alpha-beta, LRP-z and Gradient) and the Theorem 1 simulation.

Every function takes a results table and an output directory, writes PNG
files and returns their paths. Method colours and markers come from
:attr:`csc_analyzers.registry.MethodSpec.style`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..experiments.csc import BASELINE_METHOD  # noqa: E402
from ..metrics.csc import BIN_EDGES, PAPER_HISTOGRAM_EDGES, rebin  # noqa: E402
from ..registry import ALL_METHODS  # noqa: E402

CMP_METHODS = ("LRP CMP a1b0", "LRP CMP a2b1", "LRP a1b0", "LRP a2b1", "LRP-z", "Gradient")
_FLOOR = 1e-16  # 1 - CSC below this is drawn at the floor of the log axis


def method_style(name: str) -> dict:
    """Matplotlib style of a method of the registry (grey for unknown names)."""
    for spec in ALL_METHODS:
        if spec.name == name:
            return dict(spec.style)
    return {"color": "0.5", "marker": ".", "linestyle": "-", "label": name}


def _method_order(names) -> list:
    order = {spec.name: i for i, spec in enumerate(ALL_METHODS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def top_injection_layer(table: pd.DataFrame, network: str) -> str:
    """The highest injection layer of ``network`` in a CSC table or histogram
    table (the one with the most lower layers)."""
    part = table[(table["network"] == network) & (table["method"] != BASELINE_METHOD)]
    if part.empty:
        raise ValueError(f"no CSC rows for network {network!r}")
    column = "injection_layer_index" if "injection_layer_index" in part else "layer_index"
    return part.groupby("injection_layer")[column].max().idxmax()


def _medians(table, network, injection, methods=None):
    part = table[(table["network"] == network) & (table["statistic"] == "median")]
    curves = part[part["injection_layer"] == injection]
    if methods is not None:
        curves = curves[curves["method"].isin(methods)]
    baseline = part[part["method"] == BASELINE_METHOD].sort_values("layer_index")
    layers = baseline[["layer_index", "layer"]].drop_duplicates()
    return curves, baseline, layers


def _draw(axes, curves, baseline, layers, log_scale: bool):
    for method in _method_order(curves["method"].unique()):
        rows = curves[curves["method"] == method].sort_values("layer_index")
        y = rows["value"].to_numpy()
        if log_scale:
            y = np.maximum(1.0 - y, _FLOOR)
        axes.plot(rows["layer_index"], y, markersize=4, **method_style(method))
    y = baseline["value"].to_numpy()
    axes.plot(baseline["layer_index"], np.maximum(1.0 - y, _FLOOR) if log_scale else y,
              color="black", linestyle=":", linewidth=1.5, label="random baseline")
    axes.set_xticks(layers["layer_index"])
    axes.set_xticklabels(layers["layer"], rotation=90, fontsize=7)
    if log_scale:
        axes.set_yscale("log")
        axes.invert_yaxis()
        axes.set_ylabel("1 - median CSC")
    else:
        axes.set_ylim(-0.02, 1.02)
        axes.set_ylabel("median CSC")
    axes.grid(True, alpha=0.3)


def plot_csc_per_layer(table: pd.DataFrame, out_dir, *, networks: Sequence[str] | None = None,
                       injection_layer: str | None = None) -> list:
    """Figure 5a-d: median CSC per layer for every method when the relevance of
    the top layer is randomised, on a linear and a log(1 - CSC) scale, with the
    random baseline. One file per network."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for network in networks or sorted(table["network"].unique()):
        injection = injection_layer or top_injection_layer(table, network)
        curves, baseline, layers = _medians(table, network, injection)
        baseline = baseline[baseline["layer_index"] < curves["layer_index"].max() + 1]
        layers = layers[layers["layer_index"].isin(curves["layer_index"])]
        fig, (linear, log) = plt.subplots(1, 2, figsize=(12, 4.5))
        _draw(linear, curves, baseline, layers, log_scale=False)
        _draw(log, curves, baseline, layers, log_scale=True)
        fig.suptitle(f"CSC on {network}: relevance of {injection} randomised")
        linear.legend(fontsize=7, ncol=2, loc="lower left")
        fig.tight_layout()
        path = out_dir / f"fig5_csc_{network}_{injection}.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_csc_histograms(histograms: pd.DataFrame, out_dir, *,
                        networks: Sequence[str] | None = None) -> list:
    """Figure 5e-g: distribution of CSC after the first convolution (and at the
    input) per method, top injection layer, in the paper's bins."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    labels = [f"{a:g}-{b:g}" for a, b in zip(PAPER_HISTOGRAM_EDGES[:-1],
                                              PAPER_HISTOGRAM_EDGES[1:])]
    for network in networks or sorted(histograms["network"].unique()):
        part = histograms[histograms["network"] == network]
        injection = top_injection_layer(part, network)
        part = part[part["injection_layer"] == injection]
        layers = part.sort_values("layer_index", ascending=False)["layer"].unique()
        fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 4), squeeze=False)
        for axis, layer in zip(axes[0], layers):
            rows = part[part["layer"] == layer]
            methods = _method_order(rows["method"].unique())
            width = 0.8 / max(len(methods), 1)
            for k, method in enumerate(methods):
                fine = np.zeros(len(BIN_EDGES) - 1)
                m = rows[rows["method"] == method]
                np.add.at(fine, m["bin"].to_numpy(int), m["count"].to_numpy())
                coarse = rebin(fine)
                style = method_style(method)
                axis.bar(np.arange(len(coarse)) + k * width - 0.4, coarse / coarse.sum(),
                         width=width, color=style["color"], label=method, align="edge")
            axis.set_xticks(np.arange(len(labels)))
            axis.set_xticklabels(labels, rotation=60, fontsize=7)
            axis.set_ylabel("fraction of locations and vector pairs")
            axis.set_title(f"{network}: CSC at {layer} (from {injection})")
        axes[0][0].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out_dir / f"fig5_csc_histogram_{network}.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_cmp_comparison(table: pd.DataFrame, out_dir, *,
                        networks: Sequence[str] | None = None) -> list:
    """Figure 6c: CSC paths of LRP CMP a1b0 / a2b1 against LRP a1b0, a2b1,
    LRP-z and Gradient (those present in the table)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for network in networks or sorted(table["network"].unique()):
        injection = top_injection_layer(table, network)
        curves, baseline, layers = _medians(table, network, injection, CMP_METHODS)
        if curves.empty:
            continue
        layers = layers[layers["layer_index"].isin(curves["layer_index"])]
        baseline = baseline[baseline["layer_index"].isin(curves["layer_index"])]
        fig, axis = plt.subplots(figsize=(6.5, 4.5))
        _draw(axis, curves, baseline, layers, log_scale=True)
        axis.legend(fontsize=7)
        axis.set_title(f"{network}: LRP CMP against alpha-beta, LRP-z and Gradient")
        fig.tight_layout()
        path = out_dir / f"fig6c_cmp_{network}.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_theorem1(table: pd.DataFrame, out_dir) -> list:
    """Theorem 1 (appendix B): median over trials of sigma1/sigma2 and of
    1 - CSC against the number of factors, per distribution and shape."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    medians = table.groupby(["distribution", "shape", "n_factors"], as_index=False)[
        ["sv_ratio", "csc"]].median()
    colors = plt.get_cmap("tab10")
    distributions = list(dict.fromkeys(table["distribution"]))
    styles = ["-", "--", ":", "-."]
    shapes = list(dict.fromkeys(table["shape"]))
    fig, (ratio_axis, csc_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, distribution in enumerate(distributions):
        for j, shape in enumerate(shapes):
            rows = medians[(medians["distribution"] == distribution)
                           & (medians["shape"] == shape)]
            style = {"color": colors(i % 10), "linestyle": styles[j % len(styles)],
                     "marker": "o", "markersize": 3}
            ratio_axis.plot(rows["n_factors"], rows["sv_ratio"].clip(upper=1e17),
                            label=f"{distribution}, {shape}", **style)
            csc_axis.plot(rows["n_factors"], np.maximum(1 - rows["csc"], _FLOOR), **style)
    _convergence_axes(ratio_axis, csc_axis, ratio_label="sigma1 / sigma2 of the product",
                      csc_label="1 - median CSC", xlabel="number of factors")
    fig.suptitle("Products of random matrices: non-negative factors converge to rank 1")
    fig.tight_layout()
    path = out_dir / "theorem1.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return [path]


def _convergence_axes(ratio_axis, csc_axis, *, ratio_label: str, csc_label: str,
                      xlabel: str) -> None:
    """Log scales, labels, grid and legend of a (sigma1/sigma2, 1 - CSC) figure;
    the 1 - CSC axis is inverted so that convergence points up."""
    ratio_axis.set_yscale("log")
    ratio_axis.set_ylabel(ratio_label)
    csc_axis.set_yscale("log")
    csc_axis.invert_yaxis()
    csc_axis.set_ylabel(csc_label)
    for axis in (ratio_axis, csc_axis):
        axis.set_xlabel(xlabel)
        axis.grid(True, alpha=0.3)
    ratio_axis.legend(fontsize=6, ncol=2)


def _chain_style(family: str, alphas: Sequence[int]) -> dict:
    if family.startswith("alpha="):
        alpha = int(family.split(",")[0].split("=")[1])
        shade = 0.25 + 0.75 * (alpha - 1) / max(max(alphas) - 1, 1)
        return {"color": plt.get_cmap("viridis_r")(shade), "linestyle": "-", "marker": "o"}
    others = {"signed gaussian": ("#7f7f7f", "s"), "ReLU": ("#1f77b4", "v"),
              "ReLU network weights": ("#d62728", "^"), "pattern A*W": ("#2ca02c", "D")}
    color, marker = others.get(family, ("k", "x"))
    return {"color": color, "linestyle": "--", "marker": marker}


def plot_theorem1_vgg16(table: pd.DataFrame, out_dir, *, name: str = "theorem1_vgg16"
                        ) -> list:
    """The appendix-B chains with VGG-16's shapes
    (:func:`csc_analyzers.convergence_vgg16.simulate_vgg16_chains`): median
    over trials of sigma1/sigma2 and of 1 - CSC against depth, per family."""
    for column in ("family", "weights", "depth", "sv_ratio", "csc"):
        if column not in table.columns:
            raise ValueError(f"VGG-16 chain table lacks column {column!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    medians = table.groupby(["family", "depth"], as_index=False)[["sv_ratio", "csc"]].median()
    families = list(dict.fromkeys(table["family"]))
    alphas = [int(f.split(",")[0].split("=")[1]) for f in families if f.startswith("alpha=")]
    fig, (ratio_axis, csc_axis) = plt.subplots(1, 2, figsize=(12, 4.8))
    for family in families:
        rows = medians[medians["family"] == family].sort_values("depth")
        style = dict(_chain_style(family, alphas or [1]), markersize=3)
        ratio_axis.plot(rows["depth"], rows["sv_ratio"].clip(upper=1e17), label=family,
                        **style)
        csc_axis.plot(rows["depth"], np.maximum(1 - rows["csc"], _FLOOR), **style)
    _convergence_axes(ratio_axis, csc_axis,
                      ratio_label="sigma1 / sigma2 of the propagated vectors",
                      csc_label="1 - mean |cos| of vector pairs",
                      xlabel="depth (backward matrices multiplied, VGG-16 shapes)")
    network = table["family"].isin(["ReLU network weights", "pattern A*W"])
    weights = "; ".join(sorted(set(table.loc[network, "weights"].astype(str))))
    n_trials = table["trial"].nunique() if "trial" in table.columns else "?"
    fig.suptitle(f"Theorem 1 with VGG-16's centre-slice shapes (median of {n_trials} trials)"
                 + (f"; network weights: {weights}" if weights else ""), fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return [path]


__all__ = ["plot_csc_per_layer", "plot_csc_histograms", "plot_cmp_comparison",
           "plot_theorem1", "plot_theorem1_vgg16", "method_style", "top_injection_layer",
           "CMP_METHODS"]
