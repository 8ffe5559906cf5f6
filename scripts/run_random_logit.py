#!/usr/bin/env python
"""Random-logit SSIM (paper section 3, Figure 4a); with --composites N also the
class sensitivity on N built-in two-object images (Figure 1b-e).

Example:
    python scripts/run_random_logit.py --network cifar-net --methods all \
        --n-images 200 --out results
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers import checks  # noqa: E402
from csc_analyzers.experiments import cli  # noqa: E402
from csc_analyzers.experiments.class_sensitivity import run_class_sensitivity  # noqa: E402
from csc_analyzers.experiments.common import select_for, unit_keys  # noqa: E402
from csc_analyzers.experiments.random_logit import EXPERIMENT, run_random_logit  # noqa: E402
from csc_analyzers.experiments.store import ResultStore  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_common_arguments(parser)
    parser.add_argument("--composites", type=int, default=0,
                        help="also run class sensitivity on N built-in two-object images")
    args = parser.parse_args(argv)
    with checks.exit_on_input_error(Path(__file__).name):
        return _run(args)


def _run(args):
    if args.merge:
        cli.merge(args, [EXPERIMENT, "class_sensitivity"])
        return 0
    shard = checks.check_shard(args.shard)
    specs = cli.methods_arg(args)
    network = cli.load_network_arg(args)
    images, labels, ids = cli.load_images_arg(args, network)
    patterns = cli.patterns_provider(args)
    runnable, skipped = select_for(network, specs, EXPERIMENT, patterns, recipe=args.recipe)
    for spec, reason in skipped:
        print(f"skipping {spec.name}: {reason}", file=sys.stderr)
    for warning in cli.preflight(args, network, runnable, images):
        print(f"warning: {warning}", file=sys.stderr)
    store = ResultStore(args.out, EXPERIMENT)
    total = len(store.pending(shard.select(unit_keys(network.name, runnable, ids))))
    with cli.progress_bar(total, f"random logit {network.name}", args.no_progress) as bar:
        run_random_logit(network, images, labels, ids, runnable, args.out, seed=args.seed,
                         shard=shard, patterns=patterns, save_maps_for=ids[:args.save_maps],
                         progress=bar.update, recipe=args.recipe)
    path = cli.consolidate(store, args.shard)
    if path is not None:
        print(f"table: {path}")
    if args.composites:
        if not hasattr(network, "preprocess"):
            raise SystemExit("--composites needs a named network (its preprocess step); "
                             f"{args.network} is a model file")
        from csc_analyzers.data.builtin import composites
        raw, masks, pair_labels = composites(args.composites, seed=args.seed)
        comp_ids = list(range(len(raw)))
        comp_store = ResultStore(args.out, "class_sensitivity")
        with cli.progress_bar(len(runnable) * len(raw), "class sensitivity",
                              args.no_progress) as bar:
            run_class_sensitivity(network, network.preprocess(raw), masks, pair_labels, comp_ids,
                                  runnable, args.out, seed=args.seed, shard=shard,
                                  patterns=patterns, save_maps_for=comp_ids[:args.save_maps],
                                  progress=bar.update, recipe=args.recipe)
        path = cli.consolidate(comp_store, args.shard)
        if path is not None:
            print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
