"""residual_support: Add, BatchNormalization and pooling support for
innvestigate's rules and for the deeplift converter, so that every method
runs on residual networks.

- :func:`check_model`: unsupported layers give an error naming layer, type
  and method, before any graph is built.
- :func:`fold_batchnorm`: a new model with each BatchNormalization folded
  into the preceding Conv/Dense layer.
- :func:`flatten_model`: a model's nested models replaced by their layers.
- :func:`residual_support.layers.support_table_markdown`: the supported
  layers per method family (the single table the checks read).
- :class:`ResidualRulesMixin` / :class:`GradientResidualMixin`: put before an
  innvestigate analyzer class to run it on residual networks.
- :mod:`residual_support.rules` and :mod:`residual_support.linear`: the rules
  (z, epsilon, alpha-beta, z+, bounded, W**2, flat) for any layer seen as
  ``W x + b``.

Importing this package switches TensorFlow to graph mode (see ``_tf``).
"""
from . import _tf  # noqa: F401

from .canonize import fold_batchnorm  # noqa: E402
from .flatten import flatten_model  # noqa: E402
from .layers import UnsupportedLayerError, check_model  # noqa: E402
from .mixin import GradientResidualMixin, ResidualRulesMixin  # noqa: E402
from .rules import RuleSpec  # noqa: E402

__all__ = ["fold_batchnorm", "flatten_model", "check_model", "UnsupportedLayerError",
           "ResidualRulesMixin", "GradientResidualMixin", "RuleSpec"]
