#!/usr/bin/env python
"""Reproduce "When Explanations Lie" (Sixt, Granz & Landgraf, ICML 2020).

With no arguments: the built-in dataset, the paper's CIFAR-10 network trained
on it (or taken from the cache), patterns from the built-in training split,
every method of the registry, CSC, cascading sanity checks, random logit,
class sensitivity, the Theorem 1 simulation and the singular-value analysis of
the patterns. Writes tidy tables to results/, every figure to figures/ and
results/REPORT.md (the paper's claims against the measured values, and a
verdict per method).

Examples:
    python scripts/reproduce.py
    python scripts/reproduce.py --network vgg16 --weights imagenet --data imagenet /data/val
    CUDA_VISIBLE_DEVICES=0 python scripts/reproduce.py --network all --shard 0/2 --out r0 &
    CUDA_VISIBLE_DEVICES=1 python scripts/reproduce.py --network all --shard 1/2 --out r1
    python scripts/reproduce.py --network all --merge r0 r1 --out results
    python scripts/reproduce.py --network all --executor ray --ray-address auto --out /shared/r

A killed run continues where it stopped when started again with the same
arguments (finished units are kept in --out).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETWORKS = ("cifar-net", "small-resnet", "vgg16", "resnet50")
SMALL = ("cifar-net", "small-resnet")
# the largest sample whose default run (every paper method, cached weights) stays within
# 10 minutes on 2 CPU cores; the paper used 200 (--n-images 200)
DEFAULT_BUILTIN_IMAGES = 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="cifar-net", choices=NETWORKS + ("all",),
                        help="network(s) to study (default: cifar-net)")
    parser.add_argument("--weights", default="default",
                        help="'default' (trained on the built-in data for the small networks, "
                             "imagenet for VGG-16/ResNet-50), 'imagenet', 'builtin', 'cifar10', "
                             "'random' or a weights file")
    parser.add_argument("--data", nargs="+", default=None, metavar=("KIND", "DIR"),
                        help="'builtin', 'cifar10 [DIR]', 'imagenet DIR' (a validation tree of "
                             "synset folders) or 'photos' (scikit-image's photos); default: "
                             "builtin for the small networks, photos for the ImageNet ones")
    parser.add_argument("--n-images", type=int, default=None,
                        help=f"images per network (default {DEFAULT_BUILTIN_IMAGES} on the "
                             "built-in data, chosen to fit the 10-minute budget on 2 cores; "
                             "200 on ImageNet, as in the paper)")
    parser.add_argument("--n-vectors", type=int, default=5, help="CSC vectors per image")
    parser.add_argument("--n-composites", type=int, default=64,
                        help="two-object images for class sensitivity (built-in data; "
                             "default 64, enough for a bootstrap interval per method)")
    parser.add_argument("--n-pattern-images", type=int, default=1024,
                        help="training images for the PatternNet/PatternAttribution patterns")
    parser.add_argument("--methods", default="all",
                        help="registry names, 'all' (the paper's 17) or 'extra', comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results", help="results directory")
    parser.add_argument("--figures", default="figures", help="figures directory")
    parser.add_argument("--shard", default=None, help="i/N: this process runs shard i of N")
    parser.add_argument("--merge", nargs="+", default=None, metavar="SHARD_DIR",
                        help="join these shard result directories into --out, then write the "
                             "tables, figures and report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from csc_analyzers.experiments.cli import add_recipe_argument
    from csc_analyzers.experiments.executors import executor_arguments
    add_recipe_argument(parser, default="paper")
    executor_arguments(parser)
    return parser.parse_args(argv)


def settings_from(args, network_names):
    """Validate the arguments (before any long work) and build the Settings."""
    from csc_analyzers.experiments.store import parse_shard
    from csc_analyzers.registry import available_methods, select_methods
    from csc_analyzers.reproduce import Settings

    from csc_analyzers.experiments.executors import check_executor

    try:
        shard = parse_shard(args.shard)
        methods = select_methods(args.methods)
        check_executor(args.executor, args.ray_address)
        if args.block_size is not None and args.block_size < 1:
            raise ValueError(f"--block-size {args.block_size}: expected a positive integer")
    except (ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    missing = [m.name for m in methods if m not in available_methods(methods)]
    if missing:
        raise SystemExit(f"error: methods without an analyzer in this installation: {missing}")
    kind = args.data[0] if args.data else None
    data_dir = args.data[1] if args.data and len(args.data) > 1 else None
    if kind is None:
        kind = "builtin" if all(n in SMALL for n in network_names) else "photos"
    if kind not in ("builtin", "cifar10", "imagenet", "photos"):
        raise SystemExit(f"error: --data {kind!r}: choose builtin, cifar10, imagenet DIR, photos")
    if kind == "imagenet" and (data_dir is None or not Path(data_dir).is_dir()):
        raise SystemExit(f"error: --data imagenet needs an existing directory, got {data_dir!r}")
    if kind in ("builtin", "cifar10") and any(n not in SMALL for n in network_names):
        raise SystemExit(f"error: --data {kind} holds 32x32 images; VGG-16 and ResNet-50 need "
                         "--data imagenet DIR or --data photos")
    if kind in ("imagenet", "photos") and any(n in SMALL for n in network_names):
        raise SystemExit(f"error: --data {kind} is for VGG-16 / ResNet-50; run the small "
                         "networks with --data builtin or cifar10")
    n_images = args.n_images or (DEFAULT_BUILTIN_IMAGES if kind in ("builtin", "cifar10")
                                 else 200)
    weights = None if args.weights == "random" else args.weights
    return Settings(networks=network_names, weights=weights, data=kind, data_dir=data_dir,
                    methods=methods, n_images=n_images, n_vectors=args.n_vectors,
                    n_composites=args.n_composites, n_pattern_images=args.n_pattern_images,
                    seed=args.seed, out=Path(args.out), figures=Path(args.figures),
                    shard=shard, progress=not args.no_progress, recipe=args.recipe,
                    executor=args.executor, ray_address=args.ray_address,
                    block_size=args.block_size)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    names = list(NETWORKS) if args.network == "all" else [args.network]
    groups = [[n for n in names if n in SMALL], [n for n in names if n not in SMALL]]
    from csc_analyzers import reproduce

    if args.merge:
        reproduce.merge([Path(d) for d in args.merge], Path(args.out))
    finished = {}
    for group in groups:
        if not group:
            continue
        settings = settings_from(args, group)
        for name in group:
            finished[name] = reproduce.run_network(name, settings)
    if settings.shard.count > 1 and not args.merge:
        print(f"shard {settings.shard} done; join the shards with --merge DIR... --out DIR")
        return 0
    report = reproduce.finish(settings, finished, started)
    print(f"report: {report}")
    print(f"wall time: {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
