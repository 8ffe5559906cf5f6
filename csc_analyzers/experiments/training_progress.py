"""CSC against training progress: how "1 - median CSC < 1e-6" depends on the weights.

The claim of Figure 5d (LRP a1b0 on the small network, median CSC at the
input above 1 - 1e-6) holds or fails depending on the weights it is measured
on: the seeded initialisation converges far more strongly than the trained
network. :func:`run_training_progress` trains ``network`` once from the
seeded initialisation (:func:`csc_analyzers.models.training.train` with the
same :class:`~csc_analyzers.models.training.TrainConfig` as the cached
weights), saves the weights at the requested checkpoints (optimizer steps:
0 is the initialisation, an epoch ends at a multiple of the steps per epoch)
to ``out_dir/csc_training/<config key>/`` (never to the weights cache),
and runs the CSC experiment (:func:`csc_analyzers.experiments.csc.run_csc`,
``n_vectors`` N(0, I) vectors per image, relevance injected at the top
injection layer only, no exact derivation matrices) on each checkpoint's
weights. The CSC of one (checkpoint, method, layer) is the pooled median of
|cos| over all locations, vector pairs and images, exactly the ``median``
row of ``csc.csv`` (read from the experiment's fine histogram bins). The
images are the built-in test images of ``seed`` (as scripts/run_csc.py
draws them) or the first CIFAR-10 test images; the test accuracy of a
checkpoint is measured on the training run's test set.

Writes ``out_dir/csc_training.csv`` (:data:`COLUMNS`, one row per
checkpoint, method and layer: the input and the first convolution) and
``out_dir/csc_training_<network>.png``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from residual_support import _tf  # noqa: F401  (graph mode first)

from ..injection import INPUT
from ..models.training import BUILDERS, TrainConfig, evaluate, load_dataset, train
from ..registry import PLAIN, select_methods
from .csc import first_conv_layer, run_csc
from .store import atomic_write_csv, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ("network", "dataset", "checkpoint_step", "epoch", "method", "injection_layer",
           "layer", "median_csc", "one_minus_csc", "n_images", "n_vectors", "test_accuracy",
           "undefined")
DEFAULT_METHODS = ("LRP a1b0", "Gradient", "LRP-z", "DTD")
EARLY_STEPS = (0, 100, 400)
CLAIM_THRESHOLD = 1e-6  # the claim: 1 - median CSC at the input below this
SUBDIR = "csc_training"


def steps_per_epoch(config: TrainConfig, cache_dir=None) -> int:
    """Optimizer steps of one epoch of ``config`` (the training set size over the batch size)."""
    if config.n_train is not None:
        n = int(config.n_train)
    elif config.dataset == "builtin":
        from ..data import builtin
        n = builtin.DEFAULT_SIZES["train"]
    else:
        n = len(load_dataset(config.dataset, "train", None, 0, cache_dir)[1])
    return int(np.ceil(n / config.batch_size))


def total_steps(config: TrainConfig, per_epoch: int) -> int:
    total = per_epoch * config.epochs
    return total if config.max_steps is None else min(total, int(config.max_steps))


def checkpoint_steps(config: TrainConfig, per_epoch: int, early=EARLY_STEPS,
                     every_epoch: bool = True) -> tuple:
    """Sorted distinct steps: ``early`` (0 = initialisation) and, if
    ``every_epoch``, the end of every epoch (and the last step). A step below
    0 or after the last step of ``config`` raises ValueError."""
    total = total_steps(config, per_epoch)
    steps = set()
    for step in early:
        step = int(step)
        if step < 0 or step > total:
            raise ValueError(f"checkpoint step {step} is outside the training run "
                             f"(0 to {total} optimizer steps)")
        steps.add(step)
    if every_epoch:
        steps.update(s for s in range(per_epoch, total + 1, per_epoch))
        steps.add(total)
    if not steps:
        raise ValueError("no checkpoint steps given")
    return tuple(sorted(steps))


def train_with_checkpoints(config: TrainConfig, steps: Sequence[int], directory, *,
                           cache_dir=None, progress: bool = False) -> list:
    """Train ``config`` once, saving the weights after each step in ``steps``
    to ``directory/step_<n>_weights.h5``; returns one dict per checkpoint
    (step, epoch = step / steps per epoch, test accuracy, weights path).
    A directory that already holds all checkpoints of ``config``
    (``checkpoints.json``, written last) is reused without training."""
    directory = Path(directory)
    record_path = directory / "checkpoints.json"
    wanted = sorted(int(s) for s in steps)
    if record_path.is_file():
        stored = json.loads(record_path.read_text())
        if (stored.get("config") == dataclasses.asdict(config)
                and [c["step"] for c in stored["checkpoints"]] == wanted
                and all(Path(c["weights"]).is_file() for c in stored["checkpoints"])):
            return stored["checkpoints"]
    directory.mkdir(parents=True, exist_ok=True)
    module = BUILDERS[config.network]
    x_test, y_test = load_dataset(config.dataset, "test", config.n_test, 0, cache_dir)
    steps = set(wanted)
    saved = []

    def on_step(model, step, per_epoch):
        if step not in steps:
            return
        path = directory / f"step_{step}_weights.h5"
        tmp = path.with_name(path.stem + ".tmp.h5")
        model.save_weights(str(tmp))
        tmp.replace(path)
        saved.append({"step": int(step), "epoch": step / per_epoch,
                      "test_accuracy": evaluate(model, x_test, y_test, module.preprocess),
                      "weights": str(path)})

    _model, record = train(config, progress=progress, cache_dir=cache_dir, on_step=on_step)
    missing = sorted(steps - {c["step"] for c in saved})
    if missing:
        raise ValueError(f"checkpoint steps {missing} were not reached: the run made "
                         f"{record['steps']} steps")
    atomic_write_text(record_path, json.dumps({"config": dataclasses.asdict(config),
                                               "checkpoints": saved}, indent=2))
    return saved


def csc_images(config: TrainConfig, n_images: int, seed: int, cache_dir=None) -> np.ndarray:
    """The uint8 test images the CSC is measured on: the built-in test images
    of ``seed`` (as scripts/run_csc.py takes them), or the first CIFAR-10 test images."""
    if config.dataset == "builtin":
        from ..data import builtin
        return builtin.load("test", n=n_images, seed=seed)[0]
    return load_dataset(config.dataset, "test", n_images, 0, cache_dir)[0]


def checkpoint_rows(network, methods, images, checkpoint: dict, *, out_dir, n_vectors: int,
                    seed: int, dataset: str, recipe: str = PLAIN) -> list:
    """Rows of :data:`COLUMNS` for one checkpoint: the CSC experiment on
    ``network`` (holding the checkpoint's weights), relevance injected at the
    top injection layer, medians at the input and at the first convolution."""
    top = network.csc_layers[0]
    only_top = dataclasses.replace(network, csc_layers=(top,), analyzer_cache={})
    result = run_csc(only_top, methods, images, out_dir=out_dir, n_vectors=n_vectors,
                     seed=seed, exact_max_dim=0, recipe=recipe)
    table = result["table"]
    layers = [INPUT] + [name for name in [first_conv_layer(network)] if name]
    picked = table[(table["statistic"] == "median") & (table["injection_layer"] == top)
                   & table["layer"].isin(layers)]
    rows = []
    for _, row in picked.iterrows():
        value = float(row["value"])
        rows.append({"network": network.name, "dataset": dataset,
                     "checkpoint_step": checkpoint["step"], "epoch": checkpoint["epoch"],
                     "method": row["method"], "injection_layer": top, "layer": row["layer"],
                     "median_csc": value, "one_minus_csc": 1.0 - value,
                     "n_images": int(row["n_images"]), "n_vectors": int(row["n_vectors"]),
                     "test_accuracy": checkpoint["test_accuracy"],
                     "undefined": row["undefined"] if isinstance(row["undefined"], str) else ""})
    return rows


def run_training_progress(network_name: str = "cifar-net", *, config: Optional[TrainConfig] = None,
                          early_steps: Sequence[int] = EARLY_STEPS, every_epoch: bool = True,
                          methods: Sequence[str] = DEFAULT_METHODS, n_images: int = 16,
                          n_vectors: int = 5, seed: int = 0, out_dir, cache_dir=None,
                          progress: bool = False, plot: bool = True,
                          recipe: str = PLAIN) -> pd.DataFrame:
    """Train once with checkpoints and measure the CSC on each (module
    docstring); returns the table written to ``out_dir/csc_training.csv``.
    ``config`` defaults to ``TrainConfig(network_name, seed=seed)`` (the
    settings of the cached built-in weights); the images are drawn with ``seed``."""
    from tensorflow import keras

    from ..models import load_network

    config = TrainConfig(network=network_name, seed=seed) if config is None else config
    if config.network != network_name:
        raise ValueError(f"config is for {config.network!r}, network is {network_name!r}")
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    specs = select_methods(list(methods))
    per_epoch = steps_per_epoch(config, cache_dir)
    steps = checkpoint_steps(config, per_epoch, early_steps, every_epoch)
    out_dir = Path(out_dir)
    work = out_dir / SUBDIR / config.key()
    checkpoints = train_with_checkpoints(config, steps, work / "checkpoints",
                                         cache_dir=cache_dir, progress=progress)
    raw = csc_images(config, n_images, seed, cache_dir)
    rows = []
    for checkpoint in checkpoints:
        keras.backend.clear_session()
        network = load_network(network_name, weights=checkpoint["weights"],
                               progress=False, seed=config.seed)
        images = network.preprocess(raw)
        rows += checkpoint_rows(network, specs, images, checkpoint,
                                out_dir=work / f"step_{checkpoint['step']}",
                                n_vectors=n_vectors, seed=seed, dataset=config.dataset,
                                recipe=recipe)
        log.info("CSC at checkpoint step %d done", checkpoint["step"])
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write_csv(out_dir / "csc_training.csv", table)
    if plot:
        plot_training_progress(table, out_dir / f"csc_training_{network_name}.png")
    return table


def plot_training_progress(table: pd.DataFrame, path, *, layer: str = INPUT) -> Path:
    """1 - median CSC at ``layer`` (log scale) against the training step, one
    line per method, the claim's 1e-6 marked; written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = table[table["layer"] == layer]
    if part.empty:
        raise ValueError(f"no rows at layer {layer!r} to plot")
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, group in part.groupby("method", sort=False):
        group = group.sort_values("checkpoint_step")
        # a gap of exactly 0 (CSC rounded to 1) would vanish on the log axis
        gap = group["one_minus_csc"].clip(lower=1e-12)
        ax.plot(group["checkpoint_step"], gap, marker="o", label=method)
    ax.axhline(CLAIM_THRESHOLD, color="black", linestyle="--", linewidth=1,
               label="claim: 1 - CSC < 1e-6")
    ax.set_yscale("log")
    ax.set_xscale("symlog", linthresh=100)  # linear up to step 100, so step 0 is shown
    ax.set_xlim(left=-10, right=part["checkpoint_step"].max() * 1.2)
    ax.set_xlabel("training step (optimizer steps; 0 = initialisation)")
    ax.set_ylabel(f"1 - median CSC at the {layer}")
    network = part["network"].iloc[0]
    ax.set_title(f"{network}: CSC during training ({part['dataset'].iloc[0]} data)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
