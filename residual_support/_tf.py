"""The one place where the TensorFlow runtime is configured.

Both packages import this module before anything else. It

1. keeps TensorFlow's log flood off the terminal (C++ info/warning logs and
   the Python-side deprecation chatter) unless ``CSC_TF_VERBOSE=1`` is set;
2. turns on memory growth on every GPU (several processes can share one),
   then switches TensorFlow to graph mode (``disable_eager_execution``) once, as
   innvestigate 2.1.2 requires, before any Keras model is built;
   on a machine without a GPU it also turns Grappler, TensorFlow's graph
   rewriter, off (``tf.config.optimizer``): on VGG-16 its rewriting of each
   new graph cost 3-5 s at the first run and the runs after it were no faster
   (``scripts/benchmark.py`` measures both). With a GPU, Grappler stays on
   (its layout rewrite speeds up convolutions there); ``CSC_TF_GRAPPLER=1``
   keeps it on everywhere;
3. makes Keras' ``.keras`` loader work in graph mode: ``keras.models.load_model``
   of a ``.keras`` file (and ``model.load_weights`` of a ``.keras`` /
   ``.weights.h5`` file) assigns every saved weight with ``variable.assign``,
   which in graph mode only adds an assign operation to the graph; nothing
   runs it, and the first session run initialises the variables with their
   random initial values, so the loaded model silently predicts with random
   weights. :func:`_run_pending_assignments` wraps the two loader functions of
   ``keras.src.saving.saving_lib`` to run the assignments they created (HDF5
   files go through another loader that already sets the weights in the
   session);
4. imports the ``deeplift`` package, whose modules are TF1 code that says
   ``import tensorflow as tf`` and then calls ``tf.placeholder`` and friends:
   during that import ``tensorflow.compat.v1`` stands in for ``tensorflow`` in
   ``sys.modules``; the real module is put back right afterwards.

Nothing else in the project patches third-party modules. The loader patch
is applied once (a second import finds it in place) and changes nothing in
eager mode.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

VERBOSE_ENV = "CSC_TF_VERBOSE"
VERBOSE = os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
GRAPPLER_ENV = "CSC_TF_GRAPPLER"

if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

if not VERBOSE:
    tf.get_logger().setLevel(logging.ERROR)
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*Model.state_updates.*")
    warnings.filterwarnings("ignore", message=r".*layer.updates.*")

_GPUS = tf.config.list_physical_devices("GPU")
for _gpu in _GPUS:
    tf.config.experimental.set_memory_growth(_gpu, True)
GRAPPLER = bool(_GPUS) or (
    os.environ.get(GRAPPLER_ENV, "").strip().lower() in {"1", "true", "yes", "on"})
if not GRAPPLER:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

if tf.executing_eagerly():
    tf.compat.v1.disable_eager_execution()

def _run_pending_assignments(loader):
    """``loader`` (a Keras v3 loading function) that, in graph mode, runs the
    variable assignments it added to the default graph, in the order they
    were created (constant values: the last one of each variable, all in one
    session run). Variable initialisers are left out (they would put the
    random initial values back); the session initialises any variable that
    is still uninitialised first, as it would at its first run."""
    import functools

    @functools.wraps(loader)
    def load(*args, **kwargs):
        if tf.executing_eagerly():
            return loader(*args, **kwargs)
        graph = tf.compat.v1.get_default_graph()
        first = len(graph.get_operations())
        result = loader(*args, **kwargs)
        new = graph.get_operations()[first:]
        initializers = {v.initializer for v in graph.get_collection(
            tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
        assignments = [op for op in new if op.type in ("AssignVariableOp", "Assign")
                       and op not in initializers]
        if assignments:
            session = tf.compat.v1.keras.backend.get_session()
            last = {}  # variable -> its last assignment
            for op in assignments:
                last[op.inputs[0].name] = op
            if all(op.inputs[1].op.type == "Const" for op in last.values()):
                session.run(list(last.values()))  # constants: one run, same result
            else:
                for op in assignments:  # one at a time: a variable assigned twice ends last
                    session.run(op)
        return result

    load._csc_runs_assignments = True
    return load


def _patch_keras_v3_loading():
    from keras.src.saving import saving_lib

    for name in ("load_model", "load_weights_only"):
        function = getattr(saving_lib, name)
        if not getattr(function, "_csc_runs_assignments", False):
            setattr(saving_lib, name, _run_pending_assignments(function))


_patch_keras_v3_loading()

_DEEPLIFT_MODULES = (
    "deeplift",
    "deeplift.util",
    "deeplift.layers",
    "deeplift.models",
    "deeplift.conversion.kerasapi_conversion",
)


def _import_deeplift():
    """Import deeplift with ``tensorflow.compat.v1`` bound to ``tensorflow``."""
    real = sys.modules["tensorflow"]
    sys.modules["tensorflow"] = tf.compat.v1
    try:
        modules = [importlib.import_module(name) for name in _DEEPLIFT_MODULES]
    finally:
        sys.modules["tensorflow"] = real
    return modules[0]


deeplift = _import_deeplift()

__all__ = ["tf", "deeplift", "VERBOSE", "VERBOSE_ENV", "GRAPPLER", "GRAPPLER_ENV"]
