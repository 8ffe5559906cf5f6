#!/usr/bin/env python
"""CSC against training progress: retrain a small network with checkpoints and measure CSC on each.

Trains NETWORK once from its seeded initialisation with the settings of the
cached trained weights (csc_analyzers.models.training.DEFAULTS; --epochs
overrides the epochs), saving the weights at the checkpoint steps (optimizer
steps; 0 = the initialisation) to OUT/csc_training/<settings>/checkpoints/
(the weights cache is not touched). On each checkpoint it runs the CSC
experiment (5 N(0, I) relevance vectors per image injected at the top
layer; pooled median of |cos| over locations, vector pairs and images) and
writes OUT/csc_training.csv (1 - median CSC at the input and at the first
convolution per checkpoint and method, with the checkpoint's test accuracy)
and OUT/csc_training_NETWORK.png (1 - median CSC at the input against the
step, log scale, with the 1e-6 of the Figure 5d claim marked).

This retrains the network (about 6 minutes for the CIFAR net on 2 cores,
plus the CSC runs) and is not part of the default reproduction.

Examples:
    python scripts/csc_training_progress.py --out results
    python scripts/csc_training_progress.py --data cifar10 --out results_cifar10
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.errors import ArgumentError  # noqa: E402

SMALL_NETWORKS = ("cifar-net", "small-resnet")
DEFAULT_CHECKPOINTS = "0,100,400,epochs"


def parse_checkpoints(text: str) -> tuple:
    """'0,100,400,epochs' -> ((0, 100, 400), True): steps and whether every epoch's end is added."""
    steps, every_epoch = [], False
    for token in (t.strip() for t in str(text).split(",")):
        if not token:
            continue
        if token == "epochs":
            every_epoch = True
            continue
        try:
            step = int(token)
        except ValueError:
            raise ArgumentError(f"--checkpoints {text}: {token!r} is neither an optimizer "
                                "step (integer >= 0) nor 'epochs'") from None
        if step < 0:
            raise ArgumentError(f"--checkpoints {text}: step {step} must be >= 0")
        steps.append(step)
    if not steps and not every_epoch:
        raise ArgumentError(f"--checkpoints {text!r}: no checkpoint given")
    return tuple(steps), every_epoch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("Examples:\n")[0],
        epilog="Examples:\n" + __doc__.split("Examples:\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=SMALL_NETWORKS, default="cifar-net")
    parser.add_argument("--data", choices=("builtin", "cifar10"), default="builtin",
                        help="training and test data: the built-in images, or CIFAR-10 "
                             "(csc_analyzers.data.cifar10; downloaded if missing)")
    parser.add_argument("--n-images", type=int, default=16,
                        help="test images the CSC is measured on (default 16)")
    parser.add_argument("--methods", default="LRP a1b0,Gradient,LRP-z,DTD",
                        help="comma-separated method names from the registry")
    parser.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS,
                        help="comma-separated optimizer steps (0 = initialisation); "
                             "'epochs' adds the end of every epoch (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the network's trained-weights setting)")
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation, shuffling, images and relevance vectors")
    parser.add_argument("--cache-dir", default=None,
                        help="data cache directory (default: $CSC_CACHE_DIR or "
                             "~/.cache/csc_analyzers); no weights are written there")
    parser.add_argument("--out", required=True, help="results directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_args(args):
    """Everything that can be checked before TensorFlow is imported."""
    from csc_analyzers import checks

    checks.check_positive(args.n_images, argument="--n-images")
    if args.epochs is not None:
        checks.check_positive(args.epochs, argument="--epochs")
    steps, every_epoch = parse_checkpoints(args.checkpoints)
    specs = checks.check_methods(args.methods)
    return steps, every_epoch, [spec.name for spec in specs]


def main(argv=None) -> int:
    args = parse_args(argv)
    from csc_analyzers import checks

    with checks.exit_on_input_error("csc_training_progress.py"):
        steps, every_epoch, methods = check_args(args)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from csc_analyzers.experiments.training_progress import run_training_progress
        from csc_analyzers.models.training import TrainConfig

        config = TrainConfig(network=args.network, dataset=args.data, epochs=args.epochs,
                             seed=args.seed)
        try:
            table = run_training_progress(args.network, config=config, early_steps=steps,
                                          every_epoch=every_epoch, methods=methods,
                                          n_images=args.n_images, seed=args.seed,
                                          out_dir=args.out, cache_dir=args.cache_dir,
                                          progress=not args.quiet)
        except ValueError as error:
            raise ArgumentError(str(error)) from None
    at_input = table[table["layer"] == "input"]
    print(at_input.pivot(index="checkpoint_step", columns="method",
                         values="one_minus_csc").to_string(float_format="%.2e"))
    print(f"wrote {Path(args.out) / 'csc_training.csv'} and "
          f"{Path(args.out) / f'csc_training_{args.network}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
