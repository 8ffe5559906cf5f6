#!/usr/bin/env python
"""Figure 3: sigma1/sigma2 of the pattern matrices A, W, A (.) W and of the
inter-layer products, as tidy CSV tables and a figure.

Example::

    python scripts/pattern_spectra.py --network vgg16 --weights imagenet \\
        --patterns patterns/vgg16.npz --out-dir results/pattern_spectra/vgg16

Writes ``layers.csv`` (one row per layer, matrix and kernel position),
``interlayer.csv``, ``summary.csv`` (median/min/max per layer and matrix)
through the results store, and ``figure3_pattern_spectra.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residual_support import _tf  # noqa: F401,E402  (graph mode first)

import numpy as np  # noqa: E402

from csc_analyzers.experiments.store import ResultStore  # noqa: E402
from csc_analyzers.pattern.spectra import (interlayer_spectra, layer_spectra,  # noqa: E402
                                           summarize)
from csc_analyzers.pattern.storage import load_patterns  # noqa: E402
from csc_analyzers.pattern.training import load_model  # noqa: E402
from csc_analyzers.plotting.patterns import median_table, plot_pattern_spectra  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", required=True,
                        help="project network name or keras:NAME (keras.applications)")
    parser.add_argument("--weights", default=None,
                        help="weights of the network the patterns belong to ('none': random)")
    parser.add_argument("--patterns", required=True, help="pattern file (.npz)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--max-pairs", type=int, default=9,
                        help="kernel-position pairs per layer pair for T_l (default 9)")
    parser.add_argument("--include-full", action="store_true",
                        help="also analyse every kernel unsliced (kh*kw*c_in x c_out)")
    parser.add_argument("--no-interlayer", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, _ = load_model(args.network, args.weights, seed=args.seed)
    patterns = load_patterns(args.patterns, model)  # checks the weights' fingerprints
    store = ResultStore(args.out_dir, "pattern_spectra")
    tag = Path(args.patterns).stem
    layer_key = ("layers", tag, "full" if args.include_full else "sliced")
    pair_key = ("interlayer", tag, args.max_pairs, args.seed)
    if store.pending([layer_key]):
        store.write(layer_key, layer_spectra(model, patterns, include_full=args.include_full))
    layers = store.table([layer_key])
    interlayer = None
    if not args.no_interlayer:
        if store.pending([pair_key]):
            store.write(pair_key, interlayer_spectra(
                model, patterns, max_pairs=args.max_pairs,
                rng=np.random.default_rng(args.seed)))
        interlayer = store.table([pair_key])
    out = Path(args.out_dir)
    layers.to_csv(out / "layers.csv", index=False)
    summarize(layers).to_csv(out / "summary.csv", index=False)
    if interlayer is not None:
        interlayer.to_csv(out / "interlayer.csv", index=False)
    paths = plot_pattern_spectra(layers, interlayer, out,
                                 title=f"{args.network} ({patterns.estimator} patterns)")
    table = median_table(layers[layers["position"] != "full"], "A")
    print(f"sigma1/sigma2 of A per layer (over kernel positions; {patterns.estimator} "
          f"patterns, {args.patterns}):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"figure: {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
