"""residual_support: Add, BatchNormalization and pooling support for
innvestigate's rules and for the deeplift converter, so that every method
runs on residual networks.

Importing this package switches TensorFlow to graph mode (see ``_tf``).
"""
from . import _tf  # noqa: F401
