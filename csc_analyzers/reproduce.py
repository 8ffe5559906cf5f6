"""The whole study for one or more networks: CSC, cascading sanity checks,
random logit, class sensitivity, the Theorem 1 simulation and the singular
value analysis of the patterns, then the figures and ``REPORT.md``.

Every experiment writes finished (method, image) units through
:class:`~csc_analyzers.experiments.store.ResultStore`, so a rerun after an
interruption continues where the last run stopped, and ``shard`` splits the
units across processes (``merge`` joins the shard directories). The pending
units of a network are run as tasks (one per method and image block, see
:mod:`csc_analyzers.experiments.tasks`) by the executor of the settings:
``serial`` (default; each method's graph is released when its task ends, so
the memory stays that of the heaviest method), ``process`` or ``ray``
(:mod:`csc_analyzers.experiments.executors`).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from residual_support import _tf  # noqa: F401  (graph mode first)

from .experiments.cli import SORT_BY
from .experiments.csc import write_baseline, write_tables
from .experiments.executors import check_executor, run_tasks
from .experiments.progress import progress_bar
from .experiments.tasks import ExperimentInputs, NetworkSource, plan_tasks
from .experiments.store import ResultStore, Shard, atomic_write_csv, merge_stores
from .registry import PAPER, MethodSpec, check_recipe

log = logging.getLogger(__name__)

EXPERIMENTS = ("csc", "sanity_cascading", "random_logit", "class_sensitivity")


@dataclass
class Settings:
    """What one reproduction run does (the CLI of ``scripts/reproduce.py``).
    ``recipe``: :data:`~csc_analyzers.registry.RECIPES` (default ``paper``);
    ``executor``: :data:`~csc_analyzers.experiments.executors.EXECUTORS`
    (default ``serial``), ``ray_address`` its cluster, ``block_size`` the
    images per task (None: a method's images in one task)."""

    networks: Sequence[str] = ("cifar-net",)
    weights: object = "default"
    data: str = "builtin"
    data_dir: Optional[str] = None
    methods: Sequence[MethodSpec] = ()
    n_images: int = 24
    n_vectors: int = 5
    n_composites: int = 64
    n_pattern_images: int = 1024
    seed: int = 0
    out: Path = Path("results")
    figures: Path = Path("figures")
    shard: Shard = field(default_factory=Shard)
    progress: bool = True
    recipe: str = PAPER
    executor: str = "serial"
    ray_address: Optional[str] = None
    block_size: Optional[int] = None

    def __post_init__(self):
        check_recipe(self.recipe)
        check_executor(self.executor, self.ray_address)


def _stage(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_images(network, settings: Settings):
    """``(images, labels)``: preprocessed inputs and their true labels (for
    photos without an ImageNet class, the network's predicted class)."""
    from .data import builtin, cifar10, imagenet

    n = settings.n_images
    if settings.data == "builtin":
        raw, labels, _masks = builtin.load("test", n=n, seed=settings.seed)
    elif settings.data == "cifar10":
        raw, labels = cifar10.load("test", n=n, path=settings.data_dir)
    elif settings.data == "imagenet":
        raw, labels, _paths = imagenet.sample_validation_dir(settings.data_dir, n=n,
                                                             seed=settings.seed)
    else:
        raw, labels, _names = imagenet.sample_photos()
        raw, labels = raw[:n], labels[:n]
    images = network.preprocess(raw)
    labels = np.asarray(labels, int)
    unknown = labels < 0
    if unknown.any():
        from .logits import logit_model
        predicted = logit_model(network.model).predict(images[unknown], verbose=0)
        labels[unknown] = predicted.argmax(axis=1)
    return images, labels


def pattern_images(network, settings: Settings):
    """uint8 training images for the patterns: the built-in or CIFAR-10 training
    split, the ImageNet directory, or scikit-image's photos (augmented crops)."""
    from .data import builtin, cifar10
    from .pattern.training import directory_images, skimage_photos

    n = settings.n_pattern_images
    if settings.data == "builtin":
        return builtin.load("train", n=n, seed=settings.seed)[0]
    if settings.data == "cifar10":
        return cifar10.load("train", n=n, path=settings.data_dir)[0]
    size = tuple(network.model.input_shape[1:3])
    if settings.data == "imagenet":
        return np.stack(list(directory_images(settings.data_dir, n, size)))
    return np.stack(list(skimage_photos(min(n, 64), size, seed=settings.seed)))


def pattern_file(network, settings: Settings) -> Path:
    """The patterns file of ``network`` (two-component ReLU estimator from
    the network's training data) in ``out/patterns/<network>.npz``, estimated
    now if it is missing; tasks read it (checked against the weights)."""
    from .pattern.training import batches_of, train_patterns

    path = Path(settings.out) / "patterns" / f"{network.name}.npz"
    if not path.is_file():
        images = pattern_images(network, settings)
        batch = 64 if images.shape[1] <= 64 else 8
        train_patterns(network.model, batches_of(iter(images), batch, network.preprocess),
                       out=path, estimator="relu", n_batches=-(-len(images) // batch),
                       progress=settings.progress)
    return path


def pattern_provider(network, settings: Settings):
    """The patterns of :func:`pattern_file`, loaded and checked against the
    network's weights, as a provider ``network -> patterns``."""
    from .pattern.storage import load_patterns

    patterns = load_patterns(pattern_file(network, settings), network.model)
    return lambda _network: patterns


def experiment_inputs(network, images, labels, settings: Settings) -> list:
    """The :class:`~csc_analyzers.experiments.tasks.ExperimentInputs` of a
    run: CSC, cascading sanity check and random logit on ``images``; class
    sensitivity on the built-in two-object images (built-in data only). The
    maps of the first image of each are saved (Figure 1)."""
    from .data import builtin

    ids = list(range(len(images)))
    inputs = [ExperimentInputs("csc", ids, images),
              ExperimentInputs("sanity_cascading", ids, images, labels, save_maps_for=ids[:1]),
              ExperimentInputs("random_logit", ids, images, labels, save_maps_for=ids[:1])]
    if settings.data == "builtin" and settings.n_composites > 0:
        raw, masks, pair_labels = builtin.composites(settings.n_composites, seed=settings.seed)
        comp_ids = list(range(len(raw)))
        inputs.append(ExperimentInputs("class_sensitivity", comp_ids, network.preprocess(raw),
                                       pair_labels, masks, save_maps_for=comp_ids[:1]))
    return inputs


def check_stores(network, inputs, settings: Settings) -> None:
    """Record the run's settings in each experiment's store (ArgumentError,
    before any work, if the stores hold units made with other settings)."""
    from .experiments.common import record_recipe
    from .experiments.csc import check_settings

    for entry in inputs:
        store = ResultStore(settings.out, entry.experiment)
        if entry.experiment == "csc":
            check_settings(store, network.name, n_vectors=settings.n_vectors,
                           seed=settings.seed, recipe=settings.recipe)
        else:
            record_recipe(store, network, settings.recipe)


def run_network(name: str, settings: Settings) -> dict:
    """All per-network experiments for network ``name`` (their pending units
    as tasks, one per method and image block, run by ``settings.executor``);
    returns what was skipped."""
    from .models import load_network
    from .experiments.csc import plan_methods

    _stage(f"{name}: loading the network ({settings.weights})")
    network = load_network(name, weights=settings.weights, progress=settings.progress,
                           seed=settings.seed)
    images, labels = load_images(network, settings)
    recipe = settings.recipe
    specs = [spec for spec in settings.methods if spec.runs_on(name, recipe=recipe)]
    patterns = path = None
    if any(spec.needs_patterns for spec in specs):
        _stage(f"{name}: patterns for PatternNet / PatternAttribution")
        path = pattern_file(network, settings)
        patterns = pattern_provider(network, settings)
    inputs = experiment_inputs(network, images, labels, settings)
    check_stores(network, inputs, settings)
    write_baseline(network, out_dir=settings.out, seed=settings.seed)
    source = NetworkSource(name, weights=settings.weights, seed=settings.seed)
    tasks = plan_tasks(network, source, specs, inputs, out=settings.out, seed=settings.seed,
                       shard=settings.shard, recipe=recipe, patterns=path,
                       n_vectors=settings.n_vectors, block_size=settings.block_size)
    units = sum(task.n_units for task in tasks)
    _stage(f"{name}: CSC ({len(images)} images, {settings.n_vectors} vectors), cascading "
           f"parameter randomization, random logit"
           + (", class sensitivity" if len(inputs) > 3 else "")
           + f": {units} units in {len(tasks)} tasks ({settings.executor} executor)")
    with progress_bar(units, name, disable=not settings.progress) as bar:
        run_tasks(tasks, executor=settings.executor, ray_address=settings.ray_address,
                  progress=bar.update,
                  on_task=lambda task: _stage(f"{name}: done {task.label}"))
    skipped = plan_methods(network, specs, patterns=patterns, recipe=recipe)[1]
    spectra = None
    if patterns is not None:
        spectra = pattern_spectra(network, patterns(network), data=settings.data)
    return {"network": network, "skipped": skipped, "spectra": spectra,
            "data": settings.data, "n_images": len(images)}


def pattern_spectra(network, patterns, *, data: str = "") -> pd.DataFrame:
    """Figure 3 as published (full matrices, centre slices, centre-to-centre
    T_l of A, W and A (.) W), with the network, its weights and the data the
    patterns were estimated from (the report scores the claim only for
    VGG-16 with trained weights and ImageNet patterns)."""
    from .pattern.spectra import figure3_spectra
    table = figure3_spectra(network.model, patterns)
    return table.assign(network=network.name, weights=str(network.weights), pattern_data=data)


def theorem1_table(seed: int) -> pd.DataFrame:
    """Appendix B: sigma1/sigma2 and CSC of random matrix products."""
    from .convergence import simulate_theorem1
    return simulate_theorem1(rng=np.random.default_rng(seed), n_factors=12, n_trials=3,
                             shapes=("square 64", "widening 16..512"))


def theorem1_vgg16_table(seed: int, networks: dict, out: Path) -> pd.DataFrame:
    """Appendix B's chains with VGG-16's shapes (alpha-beta alpha = 1..10, signed
    Gaussian, ReLU, the network's weights, A (.) W), 3 trials of 32 vectors.
    The weights of the run's VGG-16 (and its patterns, when this run
    estimated them) when VGG-16 was run, otherwise generated ones."""
    from .convergence_vgg16 import simulate_vgg16_chains

    model = patterns = label = None
    if "vgg16" in networks:
        network = networks["vgg16"]["network"]
        model, label = network.model, f"VGG-16 {network.weights}"
        path = Path(out) / "patterns" / "vgg16.npz"
        if path.is_file():
            from .pattern.storage import load_patterns
            patterns = load_patterns(path, model)
    return simulate_vgg16_chains(rng=np.random.default_rng(seed), n_trials=3, n_vectors=32,
                                 model=model, patterns=patterns, weights_label=label)


def consolidate(out: Path) -> dict:
    """Write each experiment's whole table (all finished units) to ``out``."""
    tables = {}
    for experiment in EXPERIMENTS[1:]:
        store = ResultStore(out, experiment)
        if store.units_dir.exists():
            tables[experiment] = store.consolidate(sort_by=SORT_BY)
    return tables


def merge(shard_dirs: Sequence[Path], out: Path) -> None:
    """Join shard result directories into ``out`` (same tables as one run)
    with the example maps the shards saved (for Figure 1)."""
    for experiment in EXPERIMENTS + ("csc_baseline",):
        merge_stores(shard_dirs, out, experiment)
    for shard in shard_dirs:
        maps = Path(shard) / "maps"
        if maps.is_dir():
            shutil.copytree(maps, Path(out) / "maps", dirs_exist_ok=True)


def finish(settings: Settings, networks: dict, started: float) -> Path:
    """Consolidate tables, write the cross-network tables, figures and the report."""
    from .report import write_report
    from .plotting.figures import make_all_figures

    out = Path(settings.out)
    for name, info in networks.items():
        write_tables(info["network"], ResultStore(out, "csc"), out_dir=out, seed=settings.seed,
                     skipped=info["skipped"])
    consolidate(out)
    theorem = theorem1_table(settings.seed)
    atomic_write_csv(out / "theorem1.csv", theorem)
    atomic_write_csv(out / "theorem1_vgg16.csv",
                     theorem1_vgg16_table(settings.seed, networks, out))
    spectra = [info["spectra"] for info in networks.values() if info["spectra"] is not None]
    if spectra:
        atomic_write_csv(out / "pattern_spectra.csv", pd.concat(spectra, ignore_index=True))
    _stage("figures")
    written = make_all_figures(out, settings.figures, seed=settings.seed)
    _stage("report")
    return write_report(out, settings=settings, networks=networks, figures=written,
                        wall_time=time.time() - started)


__all__ = ["Settings", "run_network", "finish", "merge", "consolidate", "load_images",
           "EXPERIMENTS"]
