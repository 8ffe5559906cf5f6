#!/usr/bin/env python
"""Figure 3: sigma1/sigma2 of the pattern matrices A, W, A (.) W, as the
paper published it, as tidy CSV tables and a figure.

Example::

    python scripts/pattern_spectra.py --network vgg16 --weights imagenet \\
        --patterns patterns/vgg16.npz --out-dir results/pattern_spectra/vgg16

Writes ``figure3.csv`` (panel a: each layer's full kernel reshaped to
``(kh*kw*c_in, c_out)``; b: the centre position's slice; c: the
centre-to-centre inter-layer products ``T_l``; one row per layer or layer
pair and matrix) and ``fig3_pattern_spectra.png``. ``--all-positions`` adds
statistics that are not in the paper: ``layers_all_positions.csv`` (every
kernel position), ``interlayer_position_pairs.csv`` (``T_l`` of position
pairs), ``summary_all_positions.csv`` and ``pattern_spectra_all_positions.png``.
Tables go through the results store, so a rerun reuses finished tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residual_support import _tf  # noqa: F401,E402  (graph mode first)

import numpy as np  # noqa: E402

from csc_analyzers.experiments.store import ResultStore  # noqa: E402
from csc_analyzers.pattern.spectra import (figure3_spectra, interlayer_spectra,  # noqa: E402
                                           layer_spectra, summarize)
from csc_analyzers.pattern.storage import load_patterns  # noqa: E402
from csc_analyzers.pattern.training import load_model  # noqa: E402
from csc_analyzers.plotting.patterns import plot_figure3, plot_pattern_spectra  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", required=True,
                        help="project network name or keras:NAME (keras.applications)")
    parser.add_argument("--weights", default=None,
                        help="weights of the network the patterns belong to ('none': random)")
    parser.add_argument("--patterns", required=True, help="pattern file (.npz)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--all-positions", action="store_true",
                        help="also every kernel position and position pairs (not in the paper)")
    parser.add_argument("--max-pairs", type=int, default=9,
                        help="with --all-positions: position pairs per layer pair for T_l")
    parser.add_argument("--include-full", action="store_true",
                        help="with --all-positions: also the unsliced kernels in that table")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of random weights ('none') and of the position pairs")
    return parser.parse_args(argv)


def _all_positions(args, model, patterns, store, tag, out: Path) -> list:
    layer_key = ("layers", tag, "full" if args.include_full else "sliced")
    pair_key = ("interlayer", tag, args.max_pairs, args.seed)
    if store.pending([layer_key]):
        store.write(layer_key, layer_spectra(model, patterns, include_full=args.include_full))
    if store.pending([pair_key]):
        store.write(pair_key, interlayer_spectra(model, patterns, max_pairs=args.max_pairs,
                                                 rng=np.random.default_rng(args.seed)))
    layers, pairs = store.table([layer_key]), store.table([pair_key])
    layers.to_csv(out / "layers_all_positions.csv", index=False)
    pairs.to_csv(out / "interlayer_position_pairs.csv", index=False)
    summarize(layers).to_csv(out / "summary_all_positions.csv", index=False)
    return plot_pattern_spectra(layers[layers["position"] != "full"], pairs, out,
                                title=f"{args.network} ({patterns.estimator} patterns)")


def main(argv=None) -> int:
    args = parse_args(argv)
    model, _ = load_model(args.network, args.weights, seed=args.seed)
    patterns = load_patterns(args.patterns, model)  # checks the weights' fingerprints
    store = ResultStore(args.out_dir, "pattern_spectra")
    tag = Path(args.patterns).stem
    key = ("figure3", tag)
    if store.pending([key]):
        store.write(key, figure3_spectra(model, patterns))
    table = store.table([key])
    table["next_layer"] = table["next_layer"].fillna("")  # empty in panels a and b
    out = Path(args.out_dir)
    table.to_csv(out / "figure3.csv", index=False)
    weights = ("default" if args.weights is None else f"random (seed {args.seed})"
               if args.weights.lower() == "none" else args.weights)
    paths = plot_figure3(table, out, title=f"{args.network} ({weights} weights, "
                                           f"{patterns.estimator} patterns)")
    if args.all_positions:
        paths += _all_positions(args, model, patterns, store, tag, out)
    wide = table.pivot_table(index=["panel", "layer_index", "layer", "next_layer"],
                             columns="matrix", values="ratio").reset_index()
    print(f"sigma1/sigma2 (Figure 3; {patterns.estimator} patterns, {args.patterns}):")
    print(wide.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in paths:
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
