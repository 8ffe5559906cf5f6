"""PatternNet and PatternAttribution: pattern estimation, analyzers, spectra.

* :mod:`.estimators`: streamed statistics and the linear / ReLU estimators;
* :mod:`.storage`: ``.npz`` pattern files tied to the model's weights;
* :mod:`.analyzers`: ``pattern.net`` and ``pattern.attribution``;
* :mod:`.spectra`: the singular-value analysis of the paper's Figure 3.
"""
from residual_support import _tf  # noqa: F401  (graph mode first)

from .analyzers import PatternAttribution, PatternNet  # noqa: E402
from .estimators import ESTIMATORS, PatternEstimator, estimate_patterns  # noqa: E402
from .storage import PatternSet, load_patterns, save_patterns  # noqa: E402

__all__ = ["PatternNet", "PatternAttribution", "PatternEstimator", "estimate_patterns",
           "ESTIMATORS", "PatternSet", "load_patterns", "save_patterns"]
