"""Theorem 1 simulation (appendix B of "When Explanations Lie").

Products of random non-negative matrices converge to rank 1 exponentially
fast in the number of factors; products of signed Gaussian matrices do not.
Writes OUT/theorem1.csv (distribution, shape, trial, n_factors, sv_ratio,
csc) and the figure OUT/figures/theorem1.png.

Example:
    python scripts/simulate_theorem1.py --out results
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.convergence import DISTRIBUTIONS, SHAPES, simulate_theorem1
from csc_analyzers.experiments.store import atomic_write_csv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="results directory")
    parser.add_argument("--n-factors", type=int, default=16)
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--n-vectors", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS),
                        help="comma-separated; valid: " + ", ".join(DISTRIBUTIONS))
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help="comma-separated; valid: " + ", ".join(SHAPES))
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    distributions = [d.strip() for d in args.distributions.split(",") if d.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for name, valid in [(d, DISTRIBUTIONS) for d in distributions] + [(s, SHAPES) for s in shapes]:
        if name not in valid:
            raise SystemExit(f"unknown name {name!r}; valid: {list(valid)}")
    table = simulate_theorem1(rng=np.random.default_rng(args.seed), n_factors=args.n_factors,
                              n_trials=args.n_trials, distributions=distributions,
                              shapes=shapes, n_vectors=args.n_vectors)
    out = Path(args.out)
    atomic_write_csv(out / "theorem1.csv", table)
    summary = table.groupby(["distribution", "shape", "n_factors"])[["sv_ratio", "csc"]].median()
    last = summary.xs(args.n_factors, level="n_factors")
    print(last.to_string(float_format=lambda v: f"{v:.4g}"))
    if not args.no_figure:
        from csc_analyzers.plotting.csc import plot_theorem1
        for path in plot_theorem1(table, out / "figures"):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
