"""Every figure of the study from a results directory (``make_all_figures``).

Each figure is drawn only when its table exists in the results directory;
the styles come from the method registry.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .csc import (plot_cmp_comparison, plot_csc_histograms, plot_csc_per_layer,
                  plot_theorem1, plot_theorem1_vgg16)
from .sanity import make_sanity_figures


def _read(path: Path):
    if not path.exists() or path.stat().st_size == 0:
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return None if table.empty else table


def _figure3_title(network: str, table: pd.DataFrame) -> str:
    weights = table["weights"].iloc[0] if "weights" in table.columns else "?"
    data = table["pattern_data"].iloc[0] if "pattern_data" in table.columns else "?"
    return f"{network} ({weights} weights), patterns from {data} images"


def make_all_figures(results, out_dir, *, seed: int = 0) -> list:
    """Figures 1, 3, 4, 5, 6 and the Theorem 1 figure; returns the written paths."""
    results, out_dir = Path(results), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    csc = _read(results / "csc.csv")
    if csc is not None:
        written += plot_csc_per_layer(csc, out_dir)
        written += plot_cmp_comparison(csc, out_dir)
    histograms = _read(results / "csc_histograms.csv")
    if histograms is not None:
        written += plot_csc_histograms(histograms, out_dir)
    theorem = _read(results / "theorem1.csv")
    if theorem is not None:
        written += plot_theorem1(theorem, out_dir)
    chains = _read(results / "theorem1_vgg16.csv")
    if chains is not None:
        written += plot_theorem1_vgg16(chains, out_dir)
    spectra = _read(results / "pattern_spectra.csv")
    if spectra is not None and "panel" in spectra.columns:
        from .patterns import plot_figure3
        for network, table in spectra.groupby("network"):
            written += plot_figure3(table, out_dir, name=f"fig3_pattern_spectra_{network}",
                                    title=_figure3_title(network, table))
    networks = set()
    for name in ("sanity_cascading.csv", "random_logit.csv", "class_sensitivity.csv"):
        table = _read(results / name)
        if table is not None:
            networks.update(table.network.unique())
    for network in sorted(networks):
        written += make_sanity_figures(results, network, out_dir,
                                       rng=np.random.default_rng(seed))
    return [Path(p) for p in written]


__all__ = ["make_all_figures"]
