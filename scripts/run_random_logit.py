#!/usr/bin/env python
"""Random-logit SSIM (paper section 3, Figure 4a); with --composites N also the
class sensitivity on N built-in two-object images (Figure 1b-e).

Example:
    python scripts/run_random_logit.py --network cifar-net --methods all \
        --n-images 200 --out results
--executor ray runs each (method, image block) as a Ray task (see scripts/reproduce.py).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers import checks  # noqa: E402
from csc_analyzers.experiments import cli  # noqa: E402
from csc_analyzers.experiments.common import select_for  # noqa: E402
from csc_analyzers.experiments.random_logit import EXPERIMENT  # noqa: E402
from csc_analyzers.experiments.store import ResultStore  # noqa: E402
from csc_analyzers.experiments.tasks import ExperimentInputs  # noqa: E402


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
    checks.check_shard(args.shard)
    cli.executor_from_args(args)
    specs = cli.methods_arg(args)
    network = cli.load_network_arg(args)
    images, labels, ids = cli.load_images_arg(args, network)
    patterns = cli.patterns_provider(args)
    runnable, skipped = select_for(network, specs, EXPERIMENT, patterns, recipe=args.recipe)
    for spec, reason in skipped:
        print(f"skipping {spec.name}: {reason}", file=sys.stderr)
    for warning in cli.preflight(args, network, runnable, images):
        print(f"warning: {warning}", file=sys.stderr)
    inputs = [ExperimentInputs(EXPERIMENT, ids, images, labels,
                               save_maps_for=ids[:args.save_maps])]
    if args.composites:
        if not hasattr(network, "preprocess"):
            raise SystemExit("--composites needs a named network (its preprocess step); "
                             f"{args.network} is a model file")
        from csc_analyzers.data.builtin import composites
        raw, masks, pair_labels = composites(args.composites, seed=args.seed)
        comp_ids = list(range(len(raw)))
        inputs.append(ExperimentInputs("class_sensitivity", comp_ids, network.preprocess(raw),
                                       pair_labels, masks,
                                       save_maps_for=comp_ids[:args.save_maps]))
    # one task per method covers both experiments (its analyzer is built once)
    cli.run_inputs(args, network, runnable, inputs, f"random logit {network.name}")
    for experiment in [entry.experiment for entry in inputs]:
        path = cli.consolidate(ResultStore(args.out, experiment), args.shard)
        if path is not None:
            print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
