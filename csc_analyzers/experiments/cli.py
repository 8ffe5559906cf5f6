"""Command-line plumbing shared by ``scripts/run_sanity_checks.py`` and
``scripts/run_random_logit.py``: arguments, loading the network and images,
the patterns provider, progress bars, merging shards."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from tensorflow import keras

from ..registry import select_methods
from .common import ModelNetwork, ROW_COLUMNS
from .store import ResultStore, merge_stores, parse_shard

SORT_BY = ("network", "method", "image_id", "experiment", "level", "metric")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True,
                        help="a network name (cifar-net, small-resnet, vgg16, resnet50) or the "
                             "path of a saved Keras model (.h5/.keras)")
    parser.add_argument("--weights", default=None,
                        help="weights for a named network (passed to load_network)")
    parser.add_argument("--methods", default="all",
                        help="comma-separated display names, 'all' (paper) or 'extra'")
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results", help="results directory")
    parser.add_argument("--shard", default=None, help="i/N: run the i-th of N shards")
    parser.add_argument("--images", default=None,
                        help=".npz with 'images' (preprocessed, N x H x W x C) and 'labels'; "
                             "default: the built-in data of the network")
    parser.add_argument("--split", default="test", help="built-in data split")
    parser.add_argument("--patterns", default=None,
                        help=".npz of PatternNet/PatternAttribution patterns (arrays in layer "
                             "order); without it the pattern methods are skipped")
    parser.add_argument("--save-maps", type=int, default=1,
                        help="save the maps of the first K images (figures)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="SHARD_DIR",
                        help="merge these shard result directories into --out and exit")
    parser.add_argument("--no-progress", action="store_true")


def load_network_arg(args):
    """A :class:`Network` (named) or :class:`ModelNetwork` (model file)."""
    path = Path(args.network)
    if path.suffix in {".h5", ".keras"}:
        if not path.exists():
            raise SystemExit(f"--network {args.network}: file not found")
        model = keras.models.load_model(path, compile=False)
        return ModelNetwork(name=path.stem, model=model)
    from ..models import load_network  # the networks module
    kwargs = {} if args.weights is None else {"weights": args.weights}
    return load_network(args.network, **kwargs)


def load_images_arg(args, network):
    """``(images, labels, image_ids)``: the first ``--n-images`` images."""
    if args.images:
        data = np.load(args.images)
        for name in ("images", "labels"):
            if name not in data:
                raise SystemExit(f"--images {args.images}: no array {name!r}")
        images, labels = data["images"][:args.n_images], data["labels"][:args.n_images]
    else:
        from ..data.builtin import load
        raw, labels, _masks = load(args.split, n=args.n_images, seed=args.seed)
        images = network.preprocess(raw)
    if isinstance(network, ModelNetwork) and args.images:
        network.input_range = (float(np.min(images)), float(np.max(images)))
    return np.asarray(images, np.float32), np.asarray(labels).astype(int), list(range(len(images)))


def patterns_provider(args):
    if not args.patterns:
        return None
    data = np.load(args.patterns)
    patterns = [data[key] for key in data.files]
    return lambda network: patterns


def methods_arg(args):
    try:
        return select_methods(args.methods)
    except KeyError as error:
        raise SystemExit(f"--methods: {error}") from None


def progress_bar(total: int, desc: str, disabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=disabled, unit="unit")


def merge(args, experiments) -> None:
    for experiment in experiments:
        store = merge_stores(args.merge, args.out, experiment)
        if store.units_dir.exists():
            path = store.consolidate(sort_by=SORT_BY)
            print(f"merged {experiment}: {path}")


def consolidate(store: ResultStore, shard) -> Path | None:
    """Write the whole table when this process ran every unit (no shard)."""
    if parse_shard(shard).count == 1:
        return store.consolidate(sort_by=SORT_BY)
    return None


__all__ = ["add_common_arguments", "load_network_arg", "load_images_arg", "patterns_provider",
           "methods_arg", "progress_bar", "merge", "consolidate", "SORT_BY", "ROW_COLUMNS"]
