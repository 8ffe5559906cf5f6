"""Figure 3 of the paper: sigma1/sigma2 of the pattern matrices.

(a) PatternNet's ``A`` per layer: median over kernel positions (line) and
every position (dots); (b) ``W``, ``A`` and ``A (.) W`` per layer (medians);
(c) the inter-layer products ``T_l`` (medians). Tables come from
:func:`csc_analyzers.pattern.spectra.layer_spectra` and
:func:`~csc_analyzers.pattern.spectra.interlayer_spectra`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MATRIX_STYLE = {
    "W": {"color": "#7f7f7f", "marker": "o", "label": "W"},
    "A": {"color": "#98df8a", "marker": "d", "label": "A (PatternNet)"},
    "A*W": {"color": "#2ca02c", "marker": "D", "label": "A \u2299 W (PatternAttr.)"},
}


def _layer_axis(ax, labels):
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def _medians(table: pd.DataFrame, kind: str, key: str = "layer_index") -> pd.Series:
    return table[table["matrix"] == kind].groupby(key)["ratio"].median()


def plot_pattern_spectra(layers: pd.DataFrame, interlayer: pd.DataFrame | None,
                         out_dir, *, name: str = "figure3_pattern_spectra",
                         title: str | None = None) -> list:
    """Draw Figure 3 (a)-(c) into ``out_dir/name.png``; returns the paths."""
    for column in ("layer", "layer_index", "matrix", "ratio"):
        if column not in layers.columns:
            raise ValueError(f"layer table lacks column {column!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = 3 if interlayer is not None and len(interlayer) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    names = layers.drop_duplicates("layer_index").sort_values("layer_index")["layer"].tolist()

    ax = axes[0]
    a_rows = layers[layers["matrix"] == "A"]
    ax.scatter(a_rows["layer_index"], a_rows["ratio"], s=6, alpha=0.4,
               color=MATRIX_STYLE["A"]["color"], label="every position")
    medians = _medians(layers, "A")
    ax.plot(medians.index, medians.values, **MATRIX_STYLE["A"])
    ax.axhline(6.0, color="k", lw=0.8, ls=":", label="6 (paper: > 6 for almost all)")
    _layer_axis(ax, names)
    ax.set_ylabel("\u03c3\u2081 / \u03c3\u2082")
    ax.set_title("(a) PatternNet: A")
    ax.legend(fontsize=7)

    ax = axes[1]
    for kind, style in MATRIX_STYLE.items():
        medians = _medians(layers, kind)
        if len(medians):
            ax.plot(medians.index, medians.values, **style)
    _layer_axis(ax, names)
    ax.set_title("(b) per layer, 1x1 slices (median)")
    ax.legend(fontsize=7)

    if panels == 3:
        ax = axes[2]
        pair_names = (interlayer.drop_duplicates("layer_index").sort_values("layer_index")
                      .apply(lambda r: f"{r['layer']}\u2192{r['next_layer']}", axis=1).tolist())
        index = sorted(interlayer["layer_index"].unique())
        for kind, style in MATRIX_STYLE.items():
            medians = _medians(interlayer, kind).reindex(index)
            if medians.notna().any():
                ax.plot(range(len(index)), medians.values, **style)
        _layer_axis(ax, pair_names)
        ax.set_title("(c) T = \u221aS V U' \u221aS' (median)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]


def median_table(layers: pd.DataFrame, kind: str = "A") -> pd.DataFrame:
    """Per layer: median, min and max sigma1/sigma2 of matrix ``kind`` over positions."""
    rows = layers[layers["matrix"] == kind]
    table = rows.groupby(["layer_index", "layer"])["ratio"].agg(
        median="median", min="min", max="max", positions="count").reset_index()
    table["over_6"] = rows.groupby("layer_index")["ratio"].apply(
        lambda r: float(np.mean(r > 6))).values
    return table
