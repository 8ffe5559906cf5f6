#!/usr/bin/env python
"""Seconds per image of every registered method on one network.

For each method (each in a fresh graph, the network with seeded random
weights): the time to build the analyzer and run it once, then the median
wall time of ``--repeats`` further analyses of one batch (each image's top
logit explained), divided by the batch size. Every map is checked: the
input's shape, finite, not all zero. PatternNet / PatternAttribution use
linear patterns estimated from random inputs (their values do not change
the cost). A CSV row is written after every method, so a killed run keeps
what it measured.

    python scripts/time_methods.py --network vgg16 --batch 8
    python scripts/time_methods.py --network resnet50 --batch 1 --out resnet50_times.csv
    python scripts/time_methods.py --network resnet50 --batch 1 --canonize

scripts/benchmark.py gives the ratios (to the forward pass, to innvestigate,
CSC and sanity-check costs); this script answers "how long will a run take".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import fresh_network, inputs_for, random_patterns, timed  # noqa: E402

NETWORKS = ("cifar-net", "small-resnet", "vgg16", "resnet50")
COLUMNS = ["network", "batch", "method", "analyzer", "canonize", "build_s", "median_batch_s",
           "s_per_image", "forward_s_per_image", "finite", "nonzero"]


def time_method(spec, name: str, x: np.ndarray, targets: np.ndarray, repeats: int,
                seed: int, patterns=None, canonize: bool = False) -> dict:
    """Build, first-call and per-image time of ``spec`` on ``name``, with the
    checks of its maps; with ``canonize`` the build includes folding every
    BatchNormalization into its convolution (``create_analyzer(...,
    canonize=True)``)."""
    from csc_analyzers.experiments.common import build_analyzer
    from residual_support import fold_batchnorm

    net, model = fresh_network(name, seed)
    start = time.perf_counter()
    if canonize:
        model = fold_batchnorm(model, name=model.name)
    analyzer = build_analyzer(spec, model, net, lambda _net: patterns)
    maps = analyzer.analyze(x, neuron_selection=targets)
    build_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):  # the first call above was the warm-up
        start = time.perf_counter()
        analyzer.analyze(x, neuron_selection=targets)
        times.append(time.perf_counter() - start)
    median_s = float(np.median(times))
    maps = np.asarray(maps)
    return {"network": name, "batch": len(x), "method": spec.name, "analyzer": spec.analyzer,
            "canonize": canonize, "build_s": build_s, "median_batch_s": median_s, "s_per_image": median_s / len(x),
            "finite": bool(maps.shape == x.shape and np.isfinite(maps).all()),
            "nonzero": bool(np.abs(maps).sum() > 0)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg16", choices=NETWORKS)
    parser.add_argument("--batch", type=int, default=8, help="images per analysis (default 8)")
    parser.add_argument("--methods", default="all,extra",
                        help="registry names, 'all' (paper) and/or 'extra' (default both)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed analyses after the first call, which warms up "
                             "(default 1; the median counts)")
    parser.add_argument("--canonize", action="store_true",
                        help="fold BatchNormalization into the convolutions first "
                             "(create_analyzer(..., canonize=True)); the fold counts in the "
                             "build time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="CSV to write (default: print only)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be at least 1")

    import pandas as pd
    from csc_analyzers.experiments.store import atomic_write_csv
    from csc_analyzers.registry import available_methods, select_methods

    try:
        methods = [spec for spec in available_methods(select_methods(args.methods))
                   if spec.runs_on(args.network)]
    except (KeyError, ValueError) as error:
        parser.error(f"--methods: {error}")
    net, model = fresh_network(args.network, args.seed)
    x = inputs_for(net, args.batch, args.seed)
    # the top logit of each image, the class the experiments explain first
    targets = np.argmax(model.predict_on_batch(x), axis=1)
    forward_s = timed(lambda: model.predict_on_batch(x), 3) / args.batch
    patterns = None
    if any(spec.needs_patterns for spec in methods):
        patterns = random_patterns(net, args.batch, args.seed)
    print(f"{args.network}, batch {args.batch}: forward pass {forward_s:.3f} s per image",
          flush=True)
    rows = []
    for spec in methods:
        row = time_method(spec, args.network, x, targets, args.repeats, args.seed, patterns,
                          canonize=args.canonize)
        row["forward_s_per_image"] = forward_s
        rows.append(row)
        print(f"  {spec.name:<24} build+first {row['build_s']:7.1f} s  "
              f"{row['s_per_image']:8.3f} s/image  finite {row['finite']}  "
              f"nonzero {row['nonzero']}", flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_csv(Path(args.out), pd.DataFrame(rows, columns=COLUMNS))
    failed = [row["method"] for row in rows if not (row["finite"] and row["nonzero"])]
    if failed:
        print(f"maps not finite or all zero: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
