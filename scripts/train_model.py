#!/usr/bin/env python
"""Train the paper's CIFAR net or the small ResNet and cache the weights.

Writes ``<cache>/<key>_weights.h5`` and ``<cache>/<key>.json`` (test accuracy,
wall and CPU times, settings), where ``<cache>`` is --cache-dir, else
$CSC_CACHE_DIR, else ~/.cache/csc_analyzers. ``load_network`` picks the
weights of the default settings up from there. Rerunning with the same
settings reuses the cached weights unless --force is given.

Examples:
    python scripts/train_model.py --network cifar-net
    python scripts/train_model.py --network small-resnet --seed 1
    python scripts/train_model.py --network cifar-net --dataset cifar10 --epochs 30
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.models.training import (  # noqa: E402
    BUILDERS, DATASETS, TrainConfig, cache_paths, cached_weights)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=sorted(BUILDERS), default="cifar-net")
    parser.add_argument("--dataset", choices=DATASETS, default="builtin")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the network's setting in training.DEFAULTS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None,
                        help="number of training images (default: the dataset's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--schedule", choices=("constant", "linear"), default=None,
                        help="learning-rate schedule: constant, or linear decay to zero "
                             "(default: the network's setting in training.DEFAULTS)")
    parser.add_argument("--cache-dir", default=None,
                        help="weights cache (default: $CSC_CACHE_DIR or ~/.cache/csc_analyzers)")
    parser.add_argument("--force", action="store_true",
                        help="retrain even if cached weights exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = TrainConfig(network=args.network, dataset=args.dataset, epochs=args.epochs,
                         seed=args.seed, n_train=args.n_train, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, schedule=args.schedule)
    weights_path, record_path = cache_paths(config, args.cache_dir)
    if args.force:
        for path in (record_path, weights_path):
            path.unlink(missing_ok=True)
    cached = weights_path.is_file() and record_path.is_file()
    weights_path, record = cached_weights(config, args.cache_dir, progress=not args.quiet)
    print(json.dumps(record, indent=2))
    print(f"{'reused' if cached else 'wrote'} {weights_path}")
    print(f"test accuracy of {config.network} on {config.dataset}: "
          f"{record['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
