"""csc_analyzers: does an attribution method still depend on a network's later layers?

Analyzers for the modified-backprop methods studied in Sixt, Granz & Landgraf,
"When Explanations Lie" (ICML 2020), relevance injection, and the metrics
(cosine similarity convergence, SSIM sanity checks, random logit).
"""
from residual_support import _tf  # noqa: F401  (graph mode and deeplift first)

from .factory import analyzers, create_analyzer, load_analyzer, load_analyzer_npz  # noqa: E402
from .registry import PAPER_METHODS, EXTRA_METHODS, MethodSpec, get_method  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "analyzers",
    "create_analyzer",
    "load_analyzer",
    "load_analyzer_npz",
    "PAPER_METHODS",
    "EXTRA_METHODS",
    "MethodSpec",
    "get_method",
]
