#!/usr/bin/env python
"""Parameter-randomisation sanity checks (paper section 3, Figure 4b).

Example:
    python scripts/run_sanity_checks.py --network cifar-net --methods all \
        --n-images 200 --mode cascading --out results
Shards: run with --shard 0/2 and --shard 1/2 (different --out directories or
the same), then --merge DIR1 DIR2 --out merged. --executor ray runs each
(method, image block) as a Ray task (see scripts/reproduce.py).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers import checks  # noqa: E402
from csc_analyzers.experiments import cli  # noqa: E402
from csc_analyzers.experiments.common import select_for  # noqa: E402
from csc_analyzers.experiments.store import ResultStore  # noqa: E402
from csc_analyzers.experiments.tasks import ExperimentInputs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_common_arguments(parser)
    parser.add_argument("--mode", choices=("cascading", "independent"), default="cascading")
    parser.add_argument("--chunk", type=int, default=8,
                        help="images per pass over the randomisation levels")
    args = parser.parse_args(argv)
    with checks.exit_on_input_error(Path(__file__).name):
        return _run(args)


def _run(args):
    if args.merge:
        cli.merge(args, [f"sanity_{args.mode}"])
        return 0
    checks.check_shard(args.shard)
    cli.executor_from_args(args)
    specs = cli.methods_arg(args)
    network = cli.load_network_arg(args)
    images, labels, ids = cli.load_images_arg(args, network)
    patterns = cli.patterns_provider(args)
    runnable, skipped = select_for(network, specs, "sanity", patterns, recipe=args.recipe)
    for spec, reason in skipped:
        print(f"skipping {spec.name}: {reason}", file=sys.stderr)
    for warning in cli.preflight(args, network, runnable, images):
        print(f"warning: {warning}", file=sys.stderr)
    store = ResultStore(args.out, f"sanity_{args.mode}")
    inputs = [ExperimentInputs(store.experiment, ids, images, labels,
                               save_maps_for=ids[:args.save_maps])]
    cli.run_inputs(args, network, runnable, inputs, f"sanity {args.mode} {network.name}",
                   chunk=args.chunk)
    path = cli.consolidate(store, args.shard)
    if path is not None:
        print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
