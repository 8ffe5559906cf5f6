"""Cosine similarity convergence (CSC) of attribution methods on a network.

Random N(0, I) relevance vectors are set at each of the paper's injection
layers and backpropagated with every method; the cosine similarity of the
resulting relevances is measured at every lower layer (section 3 of "When
Explanations Lie"). Results go to OUT/csc.csv (tidy table) and
OUT/csc_histograms.csv; finished (method, image) units are kept in OUT/csc/
and skipped when the command is run again.

Examples:
    python scripts/run_csc.py --network cifar-net --methods all --n-images 200 --out results
    python scripts/run_csc.py --network resnet50 --recipe plain --out results_plain

--recipe paper (the default) runs the methods as the paper's code did: on
resnet50 the alpha-beta and CMP methods clip the relevance at every Add to
[0, 1000] and DTD is left out; --recipe plain runs them unclipped, with DTD.

Each method runs as a task in a graph of its own, released when the method is
done (memory stays that of the heaviest method); --executor process runs each
task in a fresh child process, --executor ray as Ray tasks (see
scripts/reproduce.py).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residual_support import _tf  # noqa: F401,E402  (graph mode first)

from csc_analyzers import checks
from csc_analyzers.errors import ImagesFileError, ModelFileError
from csc_analyzers.experiments.csc import (check_settings, plan_methods, write_baseline,
                                           write_tables)
from csc_analyzers.experiments.cli import add_recipe_argument
from csc_analyzers.experiments.executors import executor_arguments, executor_from_args, run_tasks
from csc_analyzers.experiments.progress import progress_bar
from csc_analyzers.experiments.store import ResultStore
from csc_analyzers.experiments.tasks import ExperimentInputs, NetworkSource, plan_tasks
from csc_analyzers.registry import ALL_METHODS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", required=True,
                        help="network name (csc_analyzers.models.NETWORK_NAMES)")
    parser.add_argument("--weights", default="default",
                        help="weights for load_network: 'default', a dataset name, a file, "
                             "or 'random' (initial weights drawn with --seed)")
    parser.add_argument("--cache-dir", default=None, help="weights cache directory")
    parser.add_argument("--methods", default="all",
                        help="comma-separated display names from the registry, 'all' (paper "
                             "methods) or 'extra'; valid names: "
                             + ", ".join(s.name for s in ALL_METHODS))
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--n-vectors", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images-npy", default=None,
                        help="uint8 array N x H x W x 3 (.npy) of images to use instead of "
                             "the built-in test images (e.g. ImageNet validation images)")
    parser.add_argument("--patterns", default=None,
                        help="pattern file for PatternNet / PatternAttribution "
                             "(scripts/train_patterns.py); without it they are skipped")
    parser.add_argument("--out", required=True, help="results directory")
    parser.add_argument("--shard", default=None, help="run shard i/N of the units")
    parser.add_argument("--exact-max-dim", type=int, default=64,
                        help="compute the exact derivation matrix (sigma1/sigma2) for "
                             "injection layers with at most this many units")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_recipe_argument(parser)
    executor_arguments(parser)
    return parser.parse_args(argv)


def load_images(network, args) -> np.ndarray:
    """Preprocessed images for ``network``: --images-npy, or the built-in test
    images resized to the network's input size."""
    if args.images_npy:
        path = Path(args.images_npy)
        if not path.is_file():
            raise ImagesFileError(f"--images-npy {path}: no such file; pass a uint8 array "
                                  "N x H x W x 3 saved with np.save")
        try:
            images = np.load(path, allow_pickle=False)[:args.n_images]
        except Exception as error:
            raise ImagesFileError(f"--images-npy {path}: cannot be read as .npy "
                                  f"({type(error).__name__}: {str(error)[:120]})") from None
    else:
        from csc_analyzers.data.builtin import load
        images, _labels, _masks = load("test", n=args.n_images, seed=args.seed)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ImagesFileError(f"--images-npy {args.images_npy}: images must be uint8 "
                              f"N x H x W x 3, got {images.dtype} {images.shape}")
    size = tuple(int(d) for d in network.model.inputs[0].shape[1:3])
    if images.shape[1:3] != size:
        from skimage.transform import resize
        images = np.stack([(resize(im, size, order=1, preserve_range=True,
                                   anti_aliasing=True)).round().astype(np.uint8)
                           for im in images])
    return network.preprocess(images)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with checks.exit_on_input_error("run_csc.py"):
        return _run(args)


def _run(args) -> int:
    shard = checks.check_shard(args.shard)
    methods = checks.check_methods(args.methods)
    checks.check_positive(args.n_images, argument="--n-images")
    checks.check_positive(args.n_vectors, argument="--n-vectors", minimum=2)
    checks.check_network_name(args.network, allow_files=False)
    executor = executor_from_args(args)
    from csc_analyzers.models import load_network
    weights = None if args.weights == "random" else args.weights
    try:
        network = load_network(args.network, weights=weights, cache_dir=args.cache_dir,
                               seed=args.seed)
    except FileNotFoundError as error:
        raise ModelFileError(f"--weights {args.weights}: {error}") from None
    images = load_images(network, args)
    runnable, skipped = plan_methods(network, methods, patterns=args.patterns,
                                      recipe=args.recipe)
    if args.patterns:
        checks.check_patterns_file(args.patterns, network.model)
    for warning in checks.preflight(network.model, runnable, images=images,
                                    argument="--images-npy"):
        print(f"warning: {warning}", file=sys.stderr)
    store = ResultStore(args.out, "csc")
    check_settings(store, network.name, n_vectors=args.n_vectors, seed=args.seed,
                   recipe=args.recipe)
    write_baseline(network, out_dir=args.out, seed=args.seed)
    source = NetworkSource(args.network, weights=weights, seed=args.seed,
                           cache_dir=args.cache_dir)
    tasks = plan_tasks(network, source, methods,
                       [ExperimentInputs("csc", range(len(images)), images)], out=args.out,
                       seed=args.seed, shard=shard, recipe=args.recipe, patterns=args.patterns,
                       n_vectors=args.n_vectors, exact_max_dim=args.exact_max_dim,
                       block_size=args.block_size)
    with progress_bar(sum(t.n_units for t in tasks), f"CSC {network.name}",
                      disable=args.no_progress) as bar:
        run_tasks(tasks, progress=bar.update, **executor)
    result = write_tables(network, store, out_dir=args.out, seed=args.seed, skipped=skipped)
    table = result["table"]
    top = network.csc_layers[0]
    medians = table[(table["network"] == network.name) & (table["statistic"] == "median")
                    & (table["injection_layer"] == top) & (table["layer"] == "input")]
    for _, row in medians.iterrows():
        print(f"{row['method']:>28s}  median CSC at the input (from {top}): {row['value']:.6f}")
    for name, reason in result["skipped"]:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'csc.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
