"""Command-line plumbing shared by ``scripts/run_sanity_checks.py`` and
``scripts/run_random_logit.py``: arguments, loading the network and images,
the patterns provider, progress bars, merging shards."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

from .. import checks
from ..errors import ArgumentError, ImagesFileError, ModelFileError
from ..registry import PAPER, RECIPES, recipe_help
from .common import ModelNetwork, ROW_COLUMNS
from .executors import executor_arguments, executor_from_args, run_tasks
from .progress import progress_bar as _progress_bar
from .store import ResultStore, merge_stores
from .tasks import NetworkSource, plan_tasks

SORT_BY = ("network", "method", "image_id", "experiment", "level", "metric")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True,
                        help="a network name (cifar-net, small-resnet, vgg16, resnet50) or the "
                             "path of a saved Keras model (.h5/.keras)")
    parser.add_argument("--weights", default=None,
                        help="weights for a named network (passed to load_network); "
                             "'random': initial weights drawn with --seed")
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
                        help="pattern file of scripts/train_patterns.py for this network "
                             "(checked against its weights); without it the pattern methods "
                             "are skipped")
    parser.add_argument("--save-maps", type=int, default=1,
                        help="save the maps of the first K images (figures)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="SHARD_DIR",
                        help="merge these shard result directories into --out and exit")
    parser.add_argument("--no-progress", action="store_true")
    add_recipe_argument(parser)
    executor_arguments(parser)


def add_recipe_argument(parser: argparse.ArgumentParser, default: str = PAPER) -> None:
    """``--recipe`` with the recipes of the registry and what each does.

    The experiment scripts default to ``paper``, like ``scripts/reproduce.py``:
    they run the paper's experiments one at a time, so their rows equal (and
    can share a results directory with) a reproduction run; the recipe only
    changes anything on ``resnet50``."""
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=default,
                        help=f"how the methods run (default: {default}): {recipe_help()}. "
                             "The recipe is recorded in --out; a results directory holds one "
                             "recipe per network")


def load_network_arg(args):
    """A :class:`Network` (named) or :class:`ModelNetwork` (model file, see
    :func:`~csc_analyzers.checks.load_user_model`); bad names, files and
    weights raise :class:`~csc_analyzers.errors.InputError` naming them."""
    if checks.check_network_name(args.network) == "file":
        path = Path(args.network)
        model = checks.load_user_model(path, argument="--network")
        return ModelNetwork(name=path.stem if path.is_file() else path.name, model=model)
    from ..models import load_network  # the networks module
    kwargs = {} if args.weights is None else {"weights": args.weights}
    if args.weights == "random":
        kwargs["weights"] = None
    try:
        return load_network(args.network, seed=args.seed, **kwargs)
    except FileNotFoundError as error:
        raise ModelFileError(f"--weights {args.weights}: {error}") from None


def _read_images_file(path) -> tuple:
    path = Path(path)
    if not path.is_file():
        raise ImagesFileError(f"--images {path}: no such file; pass an .npz with arrays "
                              "'images' (N x H x W x C) and 'labels' (N)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in ("images", "labels") if name not in data.files]
            if missing:
                raise ImagesFileError(
                    f"--images {path}: no array {missing[0]!r} (it holds {data.files}); "
                    "save it with np.savez(path, images=..., labels=...)")
            return np.asarray(data["images"]), np.asarray(data["labels"])
    except ImagesFileError:
        raise
    except Exception as error:
        raise ImagesFileError(f"--images {path}: cannot be read as .npz ({type(error).__name__}: "
                              f"{str(error)[:120]}); save it with np.savez") from None


def load_images_arg(args, network):
    """``(images, labels, image_ids)``: the first ``--n-images`` images, checked
    against the model's input shape and class count."""
    checks.check_positive(args.n_images, argument="--n-images")
    if args.images:
        images, labels = _read_images_file(args.images)
        images, labels = images[:args.n_images], labels[:args.n_images]
        if len(images) != len(labels) or labels.ndim != 1:
            raise ImagesFileError(f"--images {args.images}: {len(images)} images but labels of "
                                  f"shape {labels.shape}; expected one label per image")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ImagesFileError(f"--images {args.images}: labels of dtype {labels.dtype}; "
                                  "expected integer class indices")
    elif isinstance(network, ModelNetwork):
        raise ArgumentError(f"--network {args.network} is a model file: pass its "
                            "(preprocessed) images with --images FILE.npz")
    else:
        from ..data.builtin import load
        raw, labels, _masks = load(args.split, n=args.n_images, seed=args.seed)
        images = network.preprocess(raw)
    checks.check_input_shape(network.model, images, argument="--images")
    n_classes = int(network.model.outputs[0].shape[-1])
    bad = [int(v) for v in np.asarray(labels).ravel() if not 0 <= int(v) < n_classes]
    if bad:
        raise ImagesFileError(f"--images {args.images}: labels {sorted(set(bad))[:5]} are not "
                              f"classes of the model (0..{n_classes - 1})")
    if not np.isfinite(np.asarray(images, dtype=np.float64)).all():
        raise ImagesFileError(f"--images {args.images}: the images hold NaN or Inf values")
    if isinstance(network, ModelNetwork) and args.images:
        network.input_range = (float(np.min(images)), float(np.max(images)))
    return np.asarray(images, np.float32), np.asarray(labels).astype(int), list(range(len(images)))


def patterns_provider(args):
    """``network -> patterns`` read from the ``--patterns`` file (checked
    against the network's weights), or None without ``--patterns``."""
    if not args.patterns:
        return None
    from ..pattern.storage import load_patterns

    return lambda network: load_patterns(args.patterns, network.model)


def methods_arg(args):
    """The registry specs of ``--methods`` (ArgumentError listing valid names)."""
    return checks.check_methods(args.methods)


def preflight(args, network, specs, images=None) -> list:
    """The checks of :func:`~csc_analyzers.checks.preflight` for the methods
    that will run, and the --patterns file against the model; returns warnings."""
    warnings = checks.preflight(network.model, specs, images=images)
    if args.patterns:
        checks.check_patterns_file(args.patterns, network.model)
    return warnings


def progress_bar(total: int, desc: str, disabled: bool):
    """A progress bar (:func:`~csc_analyzers.experiments.progress.progress_bar`:
    tqdm on a terminal, a timestamped line every few seconds in a log)."""
    return _progress_bar(total, desc, disable=disabled)


def network_source(args, network) -> NetworkSource:
    """How a task rebuilds the network of ``--network`` / ``--weights`` /
    ``--seed`` (a model file keeps the input range read from ``--images``)."""
    if checks.check_network_name(args.network) == "file":
        return NetworkSource(network.name, model_file=str(args.network),
                             input_range=tuple(network.input_range))
    weights = "default" if args.weights is None else args.weights
    return NetworkSource(args.network, weights=None if weights == "random" else weights,
                         seed=args.seed)


def run_inputs(args, network, specs, inputs, desc: str, **options) -> int:
    """Run the pending units of ``inputs`` (a list of
    :class:`~csc_analyzers.experiments.tasks.ExperimentInputs`) for ``specs``
    as tasks (:func:`~csc_analyzers.experiments.tasks.plan_tasks`) with the
    executor of ``--executor``; ``options`` go to ``plan_tasks``. Returns the
    number of units run."""
    from .common import record_recipe

    executor = executor_from_args(args)
    for entry in inputs:
        record_recipe(ResultStore(args.out, entry.experiment), network, args.recipe)
    tasks = plan_tasks(network, network_source(args, network), specs, inputs, out=args.out,
                       seed=args.seed, shard=checks.check_shard(args.shard),
                       recipe=args.recipe, patterns=args.patterns,
                       block_size=args.block_size, **options)
    units = sum(task.n_units for task in tasks)
    with progress_bar(units, desc, args.no_progress) as bar:
        return run_tasks(tasks, progress=bar.update, **executor)


def merge(args, experiments) -> None:
    for experiment in experiments:
        store = merge_stores(args.merge, args.out, experiment)
        if store.units_dir.exists():
            path = store.consolidate(sort_by=SORT_BY)
            print(f"merged {experiment}: {path}")


def consolidate(store: ResultStore, shard) -> Path | None:
    """Write the whole table when this process ran every unit (no shard)."""
    if checks.check_shard(shard).count == 1:
        return store.consolidate(sort_by=SORT_BY)
    return None


__all__ = ["add_common_arguments", "load_network_arg", "load_images_arg", "patterns_provider",
           "methods_arg", "preflight", "progress_bar", "merge", "consolidate", "SORT_BY",
           "ROW_COLUMNS", "network_source", "run_inputs"]
