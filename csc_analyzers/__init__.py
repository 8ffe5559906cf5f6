"""csc_analyzers: does an attribution method still depend on a network's later layers?

Analyzers for the modified-backprop methods studied in Sixt, Granz & Landgraf,
"When Explanations Lie" (ICML 2020), relevance injection, and the metrics
(cosine similarity convergence, SSIM sanity checks, random logit).

Import this package before building or loading a Keras model: it switches
TensorFlow to graph mode, as innvestigate requires. Load a saved model with
:func:`load_model` (``keras.models.load_model`` after the import gives the
same weights); a model built before the import is analysed as a graph copy.
"""
from residual_support import _tf  # noqa: F401  (graph mode and deeplift first)

from .factory import analyzers, create_analyzer, load_analyzer, load_analyzer_npz  # noqa: E402
from .model_input import load_model  # noqa: E402
from .registry import PAPER_METHODS, EXTRA_METHODS, MethodSpec, get_method  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "analyzers",
    "create_analyzer",
    "load_analyzer",
    "load_analyzer_npz",
    "PAPER_METHODS",
    "EXTRA_METHODS",
    "MethodSpec",
    "get_method",
]
