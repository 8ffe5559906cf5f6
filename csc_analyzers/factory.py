"""``create_analyzer`` and the ``analyzers`` table of analyzer names.

The table is a superset of innvestigate 2.1.2's ``innvestigate.analyzer.analyzers``:
every innvestigate name maps to a subclass of innvestigate's class that adds
relevance injection (:class:`csc_analyzers.injection.InjectionMixin`); the
project's own analyzers are added by name below.
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.analyzer as ianalyzer
from innvestigate.analyzer.reverse_base import ReverseAnalyzerBase

from .contrastive import ContrastiveLRP
from .excitation import ContrastiveExcitationBackprop, ExcitationBackprop
from .injection import InjectionMixin
from .logits import logit_model
from .lrp_presets import LRPCMPAlpha1Beta0, LRPCMPAlpha2Beta1
from .rectgrad import RectGrad
from .smoothgrad import IntegratedGradients, SeededSmoothGrad


def with_injection(cls):
    """Subclass of an innvestigate reverse analyzer class with :meth:`propagate`."""
    if not issubclass(cls, ReverseAnalyzerBase) or issubclass(cls, InjectionMixin):
        return cls
    return type(cls.__name__, (InjectionMixin, cls), {
        "__doc__": cls.__doc__,
        "__module__": __name__,
    })


def _innvestigate_table() -> dict:
    return {name: with_injection(cls) for name, cls in ianalyzer.analyzers.items()}


analyzers: dict = _innvestigate_table()

# --- project analyzers (one line per name) ---------------------------------
analyzers["rectgrad"] = RectGrad
analyzers["excitation_backprop"] = ExcitationBackprop
analyzers["excitation_backprop.contrastive"] = ContrastiveExcitationBackprop
analyzers["lrp.contrastive"] = ContrastiveLRP
analyzers["lrp.cmp_alpha_1_beta_0"] = LRPCMPAlpha1Beta0
analyzers["lrp.cmp_alpha_2_beta_1"] = LRPCMPAlpha2Beta1
analyzers["smoothgrad.seeded"] = SeededSmoothGrad
analyzers["integrated_gradients"] = IntegratedGradients  # chunked, with propagate
# --- end of project analyzers ----------------------------------------------


def create_analyzer(name: str, model, **kwargs):
    """Build the analyzer called ``name`` for ``model``.

    Works like ``innvestigate.create_analyzer``; a model that ends in a
    softmax is analysed on its logits (see :func:`csc_analyzers.logits.logit_model`),
    the user's model is not changed. Raises ``KeyError`` listing the valid
    names for an unknown ``name``.
    """
    try:
        cls = analyzers[name]
    except KeyError:
        raise KeyError(
            f"unknown analyzer {name!r}; valid names: {sorted(analyzers)}") from None
    return cls(logit_model(model), **kwargs)
