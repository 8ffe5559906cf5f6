"""Figure 3 of the paper: sigma1/sigma2 of the pattern matrices.

:func:`plot_figure3` draws the figure as published from
:func:`csc_analyzers.pattern.spectra.figure3_spectra`: (a) full kernels,
(b) centre slices, (c) centre-to-centre inter-layer products ``T_l``; one
line per matrix (``W``, ``A``, ``A (.) W``).

:func:`plot_pattern_spectra` draws the extra all-positions statistics (not
in the paper) of :func:`~csc_analyzers.pattern.spectra.layer_spectra` and
:func:`~csc_analyzers.pattern.spectra.interlayer_spectra`: medians over
every kernel position and over position pairs.
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


FIGURE3_TITLES = {
    "a": "(a) full kernel (kh\u00b7kw\u00b7c_in \u00d7 c_out)",
    "b": "(b) centre slice (1x1)",
    "c": "(c) T_l = \u221aS_l V_l U_l+1 \u221aS_l+1 (centre slices)",
}


def plot_figure3(table: pd.DataFrame, out_dir, *, name: str = "fig3_pattern_spectra",
                 title: str | None = None) -> list:
    """Figure 3 (a)-(c) as published into ``out_dir/name.png``; returns the paths.

    ``table``: rows of :func:`~csc_analyzers.pattern.spectra.figure3_spectra`.
    Panel (a) marks the paper's threshold 6 of sigma1(A)/sigma2(A).
    """
    for column in ("panel", "layer", "next_layer", "layer_index", "matrix", "ratio"):
        if column not in table.columns:
            raise ValueError(f"Figure 3 table lacks column {column!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = [p for p in FIGURE3_TITLES if (table["panel"] == p).any()]
    if not panels:
        raise ValueError("Figure 3 table has no rows of panels a, b or c")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4),
                             constrained_layout=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        rows = table[table["panel"] == panel]
        order = rows.drop_duplicates("layer_index").sort_values("layer_index")
        index = order["layer_index"].tolist()
        if panel == "c":
            labels = [f"{a}\u2192{b}" for a, b in zip(order["layer"], order["next_layer"])]
        else:
            labels = order["layer"].tolist()
        for kind, style in MATRIX_STYLE.items():
            values = rows[rows["matrix"] == kind].set_index("layer_index")["ratio"]
            values = values.reindex(index)
            if values.notna().any():
                ax.plot(range(len(index)), values.values, **style)
        if panel == "a":
            ax.axhline(6.0, color="k", lw=0.8, ls=":", label="6 (paper: A > 6 for almost all)")
        _layer_axis(ax, labels)
        ax.set_title(FIGURE3_TITLES[panel], fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("\u03c3\u2081 / \u03c3\u2082")
    if title:
        fig.suptitle(title)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]


def plot_pattern_spectra(layers: pd.DataFrame, interlayer: pd.DataFrame | None,
                         out_dir, *, name: str = "pattern_spectra_all_positions",
                         title: str | None = None) -> list:
    """The all-positions statistics (not in the paper) into ``out_dir/name.png``:
    A at every kernel position, medians over positions of W, A, A (.) W, and
    medians of ``T_l`` over position pairs; returns the paths."""
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
    ax.set_title("A, every kernel position")
    ax.legend(fontsize=7)

    ax = axes[1]
    for kind, style in MATRIX_STYLE.items():
        medians = _medians(layers, kind)
        if len(medians):
            ax.plot(medians.index, medians.values, **style)
    _layer_axis(ax, names)
    ax.set_title("median over kernel positions")
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
        ax.set_title("T_l, median over position pairs")
        ax.legend(fontsize=7)
    fig.suptitle((title + ": " if title else "") + "all kernel positions (not in the paper)")
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
