"""Units of work that any executor can run: one method on one network for a
block of images, across the experiments (CSC, sanity check, random logit,
class sensitivity).

A :class:`Task` is plain data (picklable): how to build the network
(:class:`NetworkSource`), the method spec, the images of each experiment
part, and the settings. :func:`run_task` builds the network and the
method's analyzer in a TensorFlow graph and session of its own, runs the
experiments' units through their usual functions (so each unit's rows
go to the :class:`~csc_analyzers.experiments.store.ResultStore` exactly as
in a serial run, and finished units are skipped), then closes the session
and drops the graph, so the memory of a process that runs many tasks
stays that of its heaviest task. :func:`plan_tasks` turns the pending units
of a run (the same shard selection and resume as the experiment functions)
into tasks, method by method, optionally split into image blocks.

The networks are rebuilt from their source in every task: named networks
come from :func:`~csc_analyzers.models.load_network` (random weights are
drawn from the seed, so every task and process builds the same network),
model files from :func:`~csc_analyzers.checks.load_user_model`; patterns
are read from their file. Results do not depend on which task or process
ran a unit (the CSC vectors, SmoothGrad noise, random classes and random
weights are seeded per image, layer and run seed).
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf

from ..registry import PLAIN, MethodSpec
from .store import Shard

CSC = "csc"
RANDOM_LOGIT = "random_logit"
CLASS_SENSITIVITY = "class_sensitivity"
SANITY_MODES = ("cascading", "independent")
EXPERIMENT_KINDS = (CSC, RANDOM_LOGIT, CLASS_SENSITIVITY) + tuple(f"sanity_{m}"
                                                                   for m in SANITY_MODES)
# fault injection for the executor tests: a task run with this variable set to a
# path that does not exist yet creates it and ends its process after its first
# written unit (one simulated worker death per marker file)
KILL_ONCE_ENV = "CSC_TEST_KILL_ONCE"


@dataclass(frozen=True)
class NetworkSource:
    """How a task builds its network: a named network
    (:func:`~csc_analyzers.models.load_network` with ``weights``, ``seed``,
    ``cache_dir``; ``weights=None`` draws random weights from ``seed``) or,
    with ``model_file``, a saved Keras model wrapped in a
    :class:`~csc_analyzers.experiments.common.ModelNetwork` named ``name``
    (``input_range`` set if given)."""

    name: str
    weights: object = "default"
    seed: int = 0
    cache_dir: Optional[str] = None
    model_file: Optional[str] = None
    input_range: Optional[tuple] = None

    def load(self):
        if self.model_file is not None:
            from .. import checks
            from .common import ModelNetwork
            model = checks.load_user_model(Path(self.model_file), argument="--network")
            network = ModelNetwork(name=self.name, model=model)
        else:
            from ..models import load_network
            network = load_network(self.name, weights=self.weights, cache_dir=self.cache_dir,
                                   progress=False, seed=self.seed)
        if self.input_range is not None:
            network.input_range = tuple(self.input_range)
        return network


@dataclass(frozen=True)
class Part:
    """The images of one experiment in a task: ``image_ids`` (the unit keys'
    image ids), ``images`` (preprocessed, one per id), ``labels`` (N, or
    N x 2 for class sensitivity), ``masks`` (class sensitivity) and the ids
    whose maps are saved."""

    experiment: str
    image_ids: tuple
    images: np.ndarray
    labels: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None
    save_maps_for: tuple = ()


@dataclass(frozen=True)
class Task:
    """One method on one network for the images of ``parts`` (see the module
    docstring); ``patterns`` is a pattern file path (or None)."""

    source: NetworkSource
    spec: MethodSpec
    parts: tuple
    out: str
    seed: int = 0
    recipe: str = PLAIN
    patterns: Optional[str] = None
    n_vectors: int = 5
    exact_max_dim: int = 64
    chunk: int = 8

    @property
    def n_units(self) -> int:
        return sum(len(part.image_ids) for part in self.parts)

    @property
    def label(self) -> str:
        counts = ", ".join(f"{part.experiment} {len(part.image_ids)}" for part in self.parts)
        return f"{self.source.name} / {self.spec.name} ({counts})"


@dataclass
class ExperimentInputs:
    """What :func:`plan_tasks` needs to know of one experiment of a run:
    its name (:data:`EXPERIMENT_KINDS`), all its image ids (in unit order),
    the images, labels, masks, and the ids whose maps are saved."""

    experiment: str
    image_ids: Sequence[int]
    images: np.ndarray
    labels: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None
    save_maps_for: Sequence[int] = field(default_factory=tuple)

    def __post_init__(self):
        if self.experiment not in EXPERIMENT_KINDS:
            raise ValueError(f"experiment {self.experiment!r}: choose from {EXPERIMENT_KINDS}")
        self.image_ids = [int(i) for i in self.image_ids]
        if len(self.image_ids) != len(self.images):
            raise ValueError(f"{self.experiment}: {len(self.image_ids)} image ids for "
                             f"{len(self.images)} images")


def runnable_specs(network, specs: Sequence[MethodSpec], experiment: str, *,
                   patterns=None, recipe: str = PLAIN) -> list:
    """The specs that ``experiment`` runs on ``network`` (the experiment
    functions' own choice: :func:`~csc_analyzers.experiments.csc.plan_methods`
    for CSC, :func:`~csc_analyzers.experiments.common.select_for` otherwise)."""
    if experiment == CSC:
        from .csc import plan_methods
        return list(plan_methods(network, specs, patterns=patterns, recipe=recipe)[0])
    from .common import select_for
    kind = "sanity" if experiment.startswith("sanity_") else experiment
    return list(select_for(network, specs, kind, patterns, recipe=recipe)[0])


def _blocks(items: list, size: Optional[int]) -> list:
    if not items:
        return []
    if size is None or size <= 0:
        return [items]
    return [items[k:k + size] for k in range(0, len(items), size)]


def _take(array, index: list):
    """``array[index]``: a view (no copy) when ``index`` is a run of
    consecutive positions, so that tasks over the same images share them."""
    if array is None:
        return None
    array = np.asarray(array)
    if index and index == list(range(index[0], index[0] + len(index))):
        return array[index[0]:index[0] + len(index)]
    return array[index]


def plan_tasks(network, source: NetworkSource, specs: Sequence[MethodSpec],
               inputs: Sequence[ExperimentInputs], *, out, seed: int = 0,
               shard: Shard = Shard(), recipe: str = PLAIN, patterns: Optional[str] = None,
               n_vectors: int = 5, exact_max_dim: int = 64, chunk: int = 8,
               block_size: Optional[int] = None) -> list:
    """The tasks that run the pending units of ``inputs`` on ``network``:
    one per method (in the order of ``specs``) and image block.

    The units of an experiment and the shard's share of them are those the
    experiment function itself would run (method-major unit order, unit k to
    shard k mod N, finished units left out). ``block_size`` images per task
    and experiment (None: all of a method's images in one task, so its
    analyzer is built once per network)."""
    from .common import unit_keys
    from .store import ResultStore

    provider = None if patterns is None else (lambda _network: patterns)
    pending = {}  # method name -> experiment -> pending image ids
    for entry in inputs:
        runnable = runnable_specs(network, specs, entry.experiment, patterns=provider,
                                  recipe=recipe)
        store = ResultStore(out, entry.experiment)
        keys = store.pending(shard.select(unit_keys(network.name, runnable, entry.image_ids)))
        for _name, method, image_id in keys:
            pending.setdefault(method, {}).setdefault(entry.experiment, []).append(image_id)
    tasks = []
    for spec in specs:
        todo = pending.get(spec.name)
        if not todo:
            continue
        blocks = {entry.experiment: _blocks(todo.get(entry.experiment, []), block_size)
                  for entry in inputs}
        for j in range(max(len(b) for b in blocks.values())):
            parts = []
            for entry in inputs:
                if j >= len(blocks[entry.experiment]):
                    continue
                ids = blocks[entry.experiment][j]
                where = {i: k for k, i in enumerate(entry.image_ids)}
                index = [where[i] for i in ids]
                keep = tuple(i for i in ids if i in set(int(s) for s in entry.save_maps_for))
                parts.append(Part(entry.experiment, tuple(ids), _take(entry.images, index),
                                  _take(entry.labels, index), _take(entry.masks, index), keep))
            tasks.append(Task(source, spec, tuple(parts), str(out), seed=seed, recipe=recipe,
                              patterns=None if patterns is None else str(patterns),
                              n_vectors=n_vectors, exact_max_dim=exact_max_dim, chunk=chunk))
    return tasks


def _release_malloc() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``;
    nothing elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _forget_graph(graph) -> None:
    """Drop Keras' own references to ``graph``. After
    ``keras.backend.clear_session()`` Keras 2.14 keeps the learning phase of
    every graph in a plain dict (no longer a weak one), which would keep
    each task's graph, and with it its model and analyzer, alive."""
    backend = sys.modules.get("keras.src.backend")
    for name in ("_GRAPH_LEARNING_PHASES", "_GRAPH_VARIABLES", "_GRAPH_TF_OPTIMIZERS",
                 "PER_GRAPH_OBJECT_NAME_UIDS"):
        table = getattr(backend, name, None)
        if table is not None and hasattr(table, "pop"):
            table.pop(graph, None)


def _gradient_table() -> dict:
    """TensorFlow's global gradient registry (op type -> gradient function);
    empty where TensorFlow keeps it elsewhere."""
    registry = getattr(sys.modules.get("tensorflow.python.framework.ops"),
                       "_gradient_registry", None)
    table = getattr(registry, "_registry", None)
    return table if isinstance(table, dict) else {}


def _custom_gradient_names() -> set:
    """The names of the gradient functions that ``tf.custom_gradient`` has
    registered in TensorFlow's global gradient registry (``CustomGradient-N``)."""
    return {name for name in _gradient_table() if str(name).startswith("CustomGradient-")}


def _forget_custom_gradients(before: set) -> None:
    """Remove from TensorFlow's gradient registry the ``tf.custom_gradient``
    functions registered since ``before`` was taken. In graph mode every call
    of such a function (``tf.nn.silu``, i.e. Keras' swish) registers a
    gradient whose closure holds that call's tensors, so without this each
    released graph, with its model and analyzer, stays alive (EfficientNetB0
    at 224 px: 0.13 GiB per graph)."""
    table = _gradient_table()
    for name in _custom_gradient_names() - before:
        table.pop(name, None)


def session_config():
    """The configuration of :func:`isolated_graph`'s session: soft placement
    and, on a machine without a GPU, TensorFlow's graph optimiser (Grappler)
    off. Grappler optimises the graph again for every new combination of
    fed and fetched tensors; on CPU that is most of the cost of a method's
    first runs and buys no speed afterwards (ResNet50V2 at 224 px: the first
    CSC propagation of LRP z+ 3.0 s against 4.9 s, DeepLIFT Rescale 5.6 s
    against 12.3 s, its first map 0.9 s against 4.3 s; later runs and
    Integrated Gradients' 64-step maps equally fast). The results are the
    same up to float rounding. With a GPU its layout and fusion rewrites
    matter, and Grappler stays on."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    if not tf.config.list_physical_devices("GPU"):
        config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


@contextmanager
def isolated_graph():
    """A fresh TF1 graph and session (configured by :func:`session_config`),
    default for Keras and innvestigate inside the block; on exit the session
    is closed, the graph dropped (with Keras' references to it and the
    ``tf.custom_gradient`` gradients registered for it) and freed memory
    handed back (the model and analyzers built inside must not be used
    afterwards)."""
    graph = tf.Graph()
    session = None
    custom_gradients = _custom_gradient_names()
    try:
        with graph.as_default():
            session = tf.compat.v1.Session(graph=graph, config=session_config())
            with session.as_default():
                yield graph
    finally:
        if session is not None:
            session.close()
        _forget_graph(graph)
        _forget_custom_gradients(custom_gradients)
        del session, graph
        gc.collect()
        _release_malloc()


def _kill_once_if_asked() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"killed pid {os.getpid()}\n".encode())
    os.close(fd)
    os._exit(17)


def _patterns_provider(path: Optional[str]):
    if path is None:
        return None
    from ..pattern.storage import load_patterns
    cache = {}

    def provider(network):
        if "patterns" not in cache:
            cache["patterns"] = load_patterns(path, network.model)
        return cache["patterns"]
    return provider


def _run_part(task: Task, part: Part, network, patterns, progress: Callable) -> None:
    spec, out, seed, recipe = task.spec, task.out, task.seed, task.recipe
    if part.experiment == CSC:
        from .csc import run_csc
        run_csc(network, [spec], part.images, out_dir=out, n_vectors=task.n_vectors, seed=seed,
                patterns=patterns, image_ids=part.image_ids, exact_max_dim=task.exact_max_dim,
                on_unit=lambda _key: progress(1), recipe=recipe, write=False)
    elif part.experiment.startswith("sanity_"):
        from .sanity import run_sanity
        run_sanity(network, part.images, part.labels, part.image_ids, [spec], out,
                   mode=part.experiment[len("sanity_"):], seed=seed, patterns=patterns,
                   chunk=task.chunk, save_maps_for=part.save_maps_for, progress=progress,
                   recipe=recipe)
    elif part.experiment == RANDOM_LOGIT:
        from .random_logit import run_random_logit
        run_random_logit(network, part.images, part.labels, part.image_ids, [spec], out,
                         seed=seed, patterns=patterns, save_maps_for=part.save_maps_for,
                         progress=progress, recipe=recipe)
    elif part.experiment == CLASS_SENSITIVITY:
        from .class_sensitivity import run_class_sensitivity
        run_class_sensitivity(network, part.images, part.masks, part.labels, part.image_ids,
                              [spec], out, seed=seed, patterns=patterns,
                              save_maps_for=part.save_maps_for, progress=progress,
                              recipe=recipe)
    else:
        raise ValueError(f"task part of unknown experiment {part.experiment!r}; "
                         f"choose from {EXPERIMENT_KINDS}")


def run_task(task: Task, progress: Optional[Callable] = None) -> int:
    """Run ``task`` in a graph and session of its own (:func:`isolated_graph`)
    and release them; returns the number of units it covered. ``progress``
    receives the number of units finished (1 per unit)."""
    def step(n=1):
        _kill_once_if_asked()
        if progress is not None:
            progress(n)

    with isolated_graph():
        network = task.source.load()
        patterns = _patterns_provider(task.patterns)
        try:
            for part in task.parts:
                _run_part(task, part, network, patterns, step)
        finally:
            cache = getattr(network, "analyzer_cache", None)
            if cache is not None:
                cache.clear()
            del network, patterns
    return task.n_units


__all__ = ["NetworkSource", "Part", "Task", "ExperimentInputs", "plan_tasks", "run_task",
           "runnable_specs", "isolated_graph", "session_config", "EXPERIMENT_KINDS",
           "KILL_ONCE_ENV"]
