"""Write the study's figures from a results directory.

Each entry of ``FIGURES`` is (figure function, CSV file it needs); a figure
whose CSV is not in the results directory is skipped with a note. A figure
function takes the table (pandas DataFrame) and the output directory and
returns the paths it wrote.

Example:
    python scripts/make_figures.py --results results --out figures
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from csc_analyzers.plotting.csc import (plot_cmp_comparison, plot_csc_histograms,
                                        plot_csc_per_layer, plot_theorem1)

FIGURES = [
    (plot_csc_per_layer, "csc.csv"),
    (plot_csc_histograms, "csc_histograms.csv"),
    (plot_cmp_comparison, "csc.csv"),
    (plot_theorem1, "theorem1.csv"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="results directory")
    parser.add_argument("--out", default="figures", help="output directory for the figures")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        raise SystemExit(f"--results {results}: not a directory")
    tables = {}
    for function, csv in FIGURES:
        path = results / csv
        if not path.exists():
            print(f"skipping {function.__name__}: {path} not found", file=sys.stderr)
            continue
        if csv not in tables:
            tables[csv] = pd.read_csv(path, keep_default_na=False, na_values=[""])
        if tables[csv].empty:
            print(f"skipping {function.__name__}: {path} is empty", file=sys.stderr)
            continue
        for written in function(tables[csv], Path(args.out)):
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
