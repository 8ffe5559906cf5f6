"""Theorem 1 simulation (appendix B of "When Explanations Lie").

Two simulations:

* generic products: random non-negative matrices converge to rank 1
  exponentially fast in the number of factors, signed Gaussian ones do not.
  Writes OUT/theorem1.csv (distribution, shape, trial, n_factors, sv_ratio,
  csc) and OUT/figures/theorem1.png.
* the paper's chains with VGG-16's layer shapes (centre slices, 1000 -> 4096
  -> ... -> 3): the alpha-beta family (alpha = 1..10, beta = alpha - 1),
  signed Gaussian and ReLU chains, the network's weights with ReLU and, given
  patterns, PatternAttribution's A (.) W. Writes OUT/theorem1_vgg16.csv
  (family, weights, relu, trial, depth, rows, cols, sv_ratio, csc) and
  OUT/figures/theorem1_vgg16.png. The network's weights: --weights (a
  VGG-16 weights file, 'imagenet', or 'none' for the project's seeded random
  VGG-16, the one scripts/train_patterns.py --weights none estimates
  patterns for); without --weights they are generated Glorot-uniform centre
  slices (the distribution of Keras' VGG-16 with weights=None), and there is
  no pattern chain.

Example:
    python scripts/simulate_theorem1.py --out results
    python scripts/simulate_theorem1.py --out results --weights none \\
        --patterns patterns/vgg16_random.npz
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.convergence import DISTRIBUTIONS, SHAPES, simulate_theorem1  # noqa: E402
from csc_analyzers.convergence_vgg16 import ALPHAS, simulate_vgg16_chains  # noqa: E402
from csc_analyzers.experiments.store import atomic_write_csv  # noqa: E402


def _names(text, valid):
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in valid:
            raise SystemExit(f"unknown name {name!r}; valid: {list(valid)}")
    return names


def parse_args(argv=None):
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
    parser.add_argument("--no-generic", action="store_true",
                        help="skip the generic products (theorem1.csv)")
    parser.add_argument("--no-vgg16", action="store_true",
                        help="skip the chains with VGG-16's shapes (theorem1_vgg16.csv)")
    parser.add_argument("--vgg16-trials", type=int, default=20,
                        help="trials per VGG-16 chain family (the paper: 20)")
    parser.add_argument("--vgg16-vectors", type=int, default=32,
                        help="random vectors propagated per trial (the paper: 32)")
    parser.add_argument("--alphas", default=",".join(map(str, ALPHAS)),
                        help="alphas of the alpha-beta family (beta = alpha - 1)")
    parser.add_argument("--weights", default=None,
                        help="VGG-16 weights for the network chains: a file, 'imagenet', or "
                             "'none' (seeded random); default: generated centre slices")
    parser.add_argument("--patterns", default=None,
                        help="pattern file (.npz) of that VGG-16 for the A (.) W chain")
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    if args.patterns and args.weights is None:
        parser.error("--patterns needs --weights (the VGG-16 the patterns belong to)")
    try:
        args.alphas = [int(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--alphas: comma-separated integers, got {args.alphas!r}")
    if any(a < 1 for a in args.alphas):
        parser.error(f"--alphas must be >= 1 (beta = alpha - 1), got {args.alphas}")
    return args


def _network(args):
    """(model, patterns, label) of the VGG-16 whose weights the chains use."""
    if args.weights is None:
        return None, None, None
    from csc_analyzers.pattern.storage import load_patterns
    from csc_analyzers.pattern.training import load_model

    model, _ = load_model("vgg16", args.weights, seed=args.seed)
    patterns = load_patterns(args.patterns, model) if args.patterns else None
    label = (f"VGG-16 random (Glorot-uniform, seed {args.seed})"
             if args.weights.lower() == "none" else f"VGG-16 {args.weights}")
    return model, patterns, label


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if not args.no_generic:
        table = simulate_theorem1(
            rng=np.random.default_rng(args.seed), n_factors=args.n_factors,
            n_trials=args.n_trials, distributions=_names(args.distributions, DISTRIBUTIONS),
            shapes=_names(args.shapes, SHAPES), n_vectors=args.n_vectors)
        atomic_write_csv(out / "theorem1.csv", table)
        summary = table.groupby(["distribution", "shape", "n_factors"])[["sv_ratio", "csc"]]
        print(summary.median().xs(args.n_factors, level="n_factors")
              .to_string(float_format=lambda v: f"{v:.4g}"))
        if not args.no_figure:
            from csc_analyzers.plotting.csc import plot_theorem1
            for path in plot_theorem1(table, out / "figures"):
                print(f"wrote {path}")
    if not args.no_vgg16:
        started = time.time()
        model, patterns, label = _network(args)
        chains = simulate_vgg16_chains(
            rng=np.random.default_rng(args.seed), n_trials=args.vgg16_trials,
            n_vectors=args.vgg16_vectors, alphas=args.alphas, model=model, patterns=patterns,
            weights_label=label)
        atomic_write_csv(out / "theorem1_vgg16.csv", chains)
        medians = chains.groupby(["family", "depth"])[["sv_ratio", "csc"]].median()
        depths = [d for d in (4, 8, 13, int(chains.depth.max())) if d <= chains.depth.max()]
        wide = medians.unstack("depth")
        network_weights = chains.loc[chains.family == "ReLU network weights", "weights"].iloc[0]
        print(f"VGG-16 chains (median of {args.vgg16_trials} trials, "
              f"{time.time() - started:.0f} s; network weights: {network_weights}):")
        print("sigma1/sigma2 at depth " + ", ".join(map(str, depths)))
        print(wide["sv_ratio"][depths].to_string(float_format=lambda v: f"{v:.3g}"))
        print("1 - CSC at depth " + ", ".join(map(str, depths)))
        print((1 - wide["csc"][depths]).to_string(float_format=lambda v: f"{v:.3g}"))
        if not args.no_figure:
            from csc_analyzers.plotting.csc import plot_theorem1_vgg16
            for path in plot_theorem1_vgg16(chains, out / "figures"):
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
