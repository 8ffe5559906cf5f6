#!/usr/bin/env python
"""Write the study's figures from a results directory.

Draws every figure whose table exists: Figure 5 (CSC per layer, histograms),
Figure 6 (LRP CMP), the Theorem 1 simulation, Figure 3 (pattern spectra),
Figures 1 and 4 (sanity checks, random logit, class sensitivity).

Example:
    python scripts/make_figures.py --results results --out figures
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.plotting.figures import make_all_figures  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="results directory")
    parser.add_argument("--out", default="figures", help="output directory for the figures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap bands")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        raise SystemExit(f"--results {results}: not a directory")
    for path in make_all_figures(results, Path(args.out), seed=args.seed):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
