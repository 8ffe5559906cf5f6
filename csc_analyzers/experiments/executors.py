"""Executors: who runs the :class:`~csc_analyzers.experiments.tasks.Task` s of a run.

``serial`` (the default) runs them one after the other in this process,
each in a TF graph and session of its own that are released when it ends
(:func:`~csc_analyzers.experiments.tasks.run_task`). ``process`` runs each
task in a fresh child process (spawned; the child's memory goes back to the
system when it exits), one at a time. ``ray`` submits every task to a Ray
cluster (``ray_address``; None starts a local instance, ``"auto"`` joins
the cluster this machine belongs to): one Ray task per
:class:`~csc_analyzers.experiments.tasks.Task`, asking for one GPU when the
cluster has GPUs, run in a fresh worker process (``max_calls=1``) and
retried by Ray when its worker dies (``max_retries``; an exception raised by
the task itself is not retried and stops the run). The tasks write their
units into the result store themselves, so ``out`` must be a directory every
worker can write (a shared filesystem on a multi-machine cluster), and the
package must be importable on every node.

All executors write the same unit files, so the tables written afterwards
are the same whichever ran the tasks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from .progress import INTERVAL_ENV
from .tasks import KILL_ONCE_ENV, Task, run_task

EXECUTORS = ("serial", "process", "ray")
RAY_MAX_RETRIES = 3


def check_executor(name: str, ray_address: Optional[str] = None) -> str:
    """``name`` if it is an executor; ValueError naming the valid ones, or
    if ``ray_address`` is given without the ray executor."""
    if name not in EXECUTORS:
        raise ValueError(f"--executor {name!r}: choose from {', '.join(EXECUTORS)}")
    if ray_address and name != "ray":
        raise ValueError(f"--ray-address {ray_address!r} needs --executor ray")
    return name


def run_tasks(tasks: Sequence[Task], *, executor: str = "serial",
              ray_address: Optional[str] = None, progress: Optional[Callable] = None,
              on_task: Optional[Callable] = None, max_retries: int = RAY_MAX_RETRIES) -> int:
    """Run ``tasks`` with ``executor``; returns the number of units covered.
    ``progress(n)`` gets the units finished (per unit with ``serial``, per
    task otherwise); ``on_task(task)`` is called after each task ends, in
    this process."""
    check_executor(executor, ray_address)
    tasks = list(tasks)
    if executor == "serial":
        return _serial(tasks, progress, on_task)
    if executor == "process":
        return _processes(tasks, progress, on_task)
    return _ray(tasks, ray_address, progress, on_task, max_retries)


def _serial(tasks, progress, on_task) -> int:
    total = 0
    for task in tasks:
        total += run_task(task, progress=progress)
        if on_task is not None:
            on_task(task)
    return total


def _processes(tasks, progress, on_task) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    total = 0
    context = multiprocessing.get_context("spawn")
    for task in tasks:
        # one child per task: its memory is returned to the system when it exits
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            total += pool.submit(run_task, task).result()
        if progress is not None:
            progress(task.n_units)
        if on_task is not None:
            on_task(task)
    return total


def package_root() -> str:
    """The directory holding the ``csc_analyzers`` package in use (put on
    the Ray workers' PYTHONPATH, so that they import this very code)."""
    return str(Path(__file__).resolve().parents[2])


def ray_runtime_env() -> dict:
    """The runtime environment of the Ray tasks: PYTHONPATH starting with
    :func:`package_root`, and the variables that steer a run
    (progress interval, the executor tests' fault injection) when set."""
    path = [package_root()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
    for name in (KILL_ONCE_ENV, INTERVAL_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    return {"env_vars": env}


ARRAY_FIELDS = ("images", "labels", "masks")


def _share_arrays(tasks, put) -> list:
    """The tasks with the arrays of their parts replaced by object references
    (``put``), one per distinct block of memory: tasks over the same images
    share one copy in the object store."""
    import dataclasses

    refs, shared = {}, []
    for task in tasks:
        parts = []
        for part in task.parts:
            changes = {}
            for name in ARRAY_FIELDS:
                array = getattr(part, name)
                if array is None:
                    continue
                key = (array.__array_interface__["data"][0], array.shape, array.strides,
                       array.dtype.str)
                if key not in refs:
                    refs[key] = put(array)
                changes[name] = refs[key]
            parts.append(dataclasses.replace(part, **changes))
        shared.append(dataclasses.replace(task, parts=tuple(parts)))
    return shared


def _ray_task(task: Task) -> int:
    import dataclasses

    import ray

    parts = []
    for part in task.parts:
        changes = {name: ray.get(getattr(part, name)) for name in ARRAY_FIELDS
                   if isinstance(getattr(part, name), ray.ObjectRef)}
        parts.append(dataclasses.replace(part, **changes))
    return run_task(dataclasses.replace(task, parts=tuple(parts)))


def ray_init(address: Optional[str] = None):
    """Connect to the Ray cluster at ``address`` (None: start or reuse a
    local instance) unless already connected; returns the ``ray`` module.
    ImportError with the install command if Ray is missing."""
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install -e '.[ray]' "
                          "(or pip install 'ray==2.40.0')") from None
    if not ray.is_initialized():
        local = {"include_dashboard": False} if address is None else {}
        ray.init(address=address, runtime_env=ray_runtime_env(), **local)
    return ray


def ray_task_options(cluster_resources: dict, max_retries: int = RAY_MAX_RETRIES) -> dict:
    """The Ray options of a task on a cluster with ``cluster_resources``:
    one CPU, one GPU if the cluster has any, ``max_retries`` retries when the
    worker dies, and the runtime environment of :func:`ray_runtime_env`. (The
    remote function itself is declared with ``max_calls=1``: a fresh worker
    process per task.)"""
    gpus = 1 if float(cluster_resources.get("GPU", 0)) >= 1 else 0
    return {"num_cpus": 1, "num_gpus": gpus, "max_retries": int(max_retries),
            "retry_exceptions": False, "runtime_env": ray_runtime_env()}


def _ray(tasks, address, progress, on_task, max_retries) -> int:
    if not tasks:
        return 0
    ray = ray_init(address)
    remote = ray.remote(max_calls=1)(_ray_task)
    options = ray_task_options(ray.cluster_resources(), max_retries)
    futures = {remote.options(name=_task_name(task), **options).remote(shared): task
               for task, shared in zip(tasks, _share_arrays(tasks, ray.put))}
    total = 0
    waiting = list(futures)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for ref in done:
            task = futures[ref]
            try:
                total += ray.get(ref)
            except Exception as error:  # the task raised (not retried) or died too often
                for other in waiting:
                    ray.cancel(other)
                raise RuntimeError(f"Ray task {task.label} failed: {error}") from error
            if progress is not None:
                progress(task.n_units)
            if on_task is not None:
                on_task(task)
    return total


def _task_name(task: Task) -> str:
    return f"{task.source.name}:{task.spec.name}"[:120]


def executor_arguments(parser) -> None:
    """``--executor`` and ``--ray-address`` (and ``--block-size``) for a CLI."""
    parser.add_argument("--executor", choices=EXECUTORS, default="serial",
                        help="who runs the (network, method, image block) tasks: 'serial' "
                             "(default: this process, each method's graph released when it "
                             "is done), 'process' (a fresh child process per task) or 'ray' "
                             "(Ray tasks, one GPU each when the cluster has GPUs, retried "
                             "when a worker dies)")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address for --executor ray ('auto' or "
                             "ray://HOST:10001; default: start a local Ray instance)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="images per task and experiment (default: all images of a method "
                             "in one task, so each method's analyzer is built once)")


def executor_from_args(args) -> dict:
    """``{"executor", "ray_address"}`` from parsed arguments, checked;
    ArgumentError naming the option otherwise."""
    from ..errors import ArgumentError
    try:
        check_executor(args.executor, args.ray_address)
    except ValueError as error:
        raise ArgumentError(str(error)) from None
    if args.block_size is not None and args.block_size < 1:
        raise ArgumentError(f"--block-size {args.block_size}: expected a positive integer")
    return {"executor": args.executor, "ray_address": args.ray_address}


__all__ = ["EXECUTORS", "run_tasks", "check_executor", "ray_init", "ray_runtime_env",
           "ray_task_options",
           "package_root", "executor_arguments", "executor_from_args", "RAY_MAX_RETRIES"]
