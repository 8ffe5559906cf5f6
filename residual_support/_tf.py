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
3. imports the ``deeplift`` package, whose modules are TF1 code that says
   ``import tensorflow as tf`` and then calls ``tf.placeholder`` and friends:
   during that import ``tensorflow.compat.v1`` stands in for ``tensorflow`` in
   ``sys.modules``; the real module is put back right afterwards.

Nothing else in the project patches third-party modules.
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
