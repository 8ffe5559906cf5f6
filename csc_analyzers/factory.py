"""``create_analyzer`` and the ``analyzers`` table of analyzer names.

The table is a superset of innvestigate 2.1.2's ``innvestigate.analyzer.analyzers``;
``deep_taylor`` and ``deep_taylor.bounded`` are the project's subclasses without
innvestigate's ReLU on the model output, so they explain negative logits
(:mod:`csc_analyzers.methods.deep_taylor`; ``relu_output=True`` gives innvestigate's maps).
Every entry, innvestigate's and the project's own, goes through one function,
:func:`compose`: a reverse analyzer gets relevance injection
(:class:`csc_analyzers.injection.InjectionMixin`) and residual-network support
(:class:`residual_support.ResidualRulesMixin` for LRP / Deep Taylor classes,
:class:`residual_support.GradientResidualMixin` for the other reverse
analyzers); wrappers (SmoothGrad, Integrated Gradients) are kept as they are,
their inner Gradient needs nothing for Add / BatchNormalization.

Under innvestigate's names the analyzers give innvestigate 2.1.2's numbers
(``tests/test_innvestigate_compat.py``) except for the deliberate deviations
of :mod:`csc_analyzers.deviations`. That includes residual networks: the
default ``residual_rule`` of an innvestigate name is ``"innvestigate"`` on
every model (LRP: z-rule through Add and average pooling; Deep Taylor: the
gradient there), because a name should mean one computation whatever the
model, innvestigate itself runs these names on networks with Add, and a
default that switched with the model's layers would change a plain CNN's
pooling rule as soon as a skip connection appears. The paper's residual
handling, the analyzer's own rule through Add / BatchNormalization /
pooling, is ``residual_rule="analyzer"``: the default of the project's own
names (``lrp.cmp_*``, ``excitation_backprop*``, ``lrp.contrastive``) and what
every LRP / DTD method of :mod:`csc_analyzers.registry` passes.

Each class of the table keeps innvestigate's class name under an
innvestigate name (``save()`` gives e.g. ``("LRPZ", state)``) and loads
back into the table's class with ``load`` / ``load_npz``
(:mod:`csc_analyzers.serialization`).
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

import innvestigate.analyzer as ianalyzer
from innvestigate.analyzer.deeptaylor import DeepTaylor
from innvestigate.analyzer.relevance_based.relevance_analyzer import LRP
from innvestigate.analyzer.reverse_base import ReverseAnalyzerBase
from innvestigate.analyzer.wrapper import AugmentReduceBase, GaussianSmoother, PathIntegrator

from residual_support import GradientResidualMixin, ResidualRulesMixin, fold_batchnorm
from residual_support.flatten import flatten_model
from residual_support.wrappers import AugmentInNumpyMixin

from .methods.contrastive import ContrastiveLRP
from .methods.deep_taylor import SignedBoundedDeepTaylor, SignedDeepTaylor
from .methods.deeplift_wrapper import DeepLiftAnalyzer
from .methods.excitation import ContrastiveExcitationBackprop, ExcitationBackprop
from .injection import InjectionMixin
from .logits import logit_model
from .methods.lrp_presets import LRPCMPAlpha1Beta0, LRPCMPAlpha2Beta1
from .pattern.analyzers import PatternAttribution, PatternNet
from .methods.rectgrad import RectGrad
from .serialization import SavedStateMixin, load_analyzer, load_analyzer_npz  # noqa: F401
from .methods.smoothgrad import IntegratedGradients, SeededSmoothGrad


def with_injection(cls):
    """Subclass of an innvestigate reverse analyzer class with :meth:`propagate`."""
    if not issubclass(cls, ReverseAnalyzerBase) or issubclass(cls, InjectionMixin):
        return cls
    return type(cls.__name__, (InjectionMixin, cls), {
        "__doc__": cls.__doc__,
        "__module__": __name__,
    })


def compose(cls, name: str | None = None):
    """The class the table holds for analyzer class ``cls`` (key ``name``).

    LRP / DeepTaylor subclasses (and classes with ``residual_rules = True``)
    get ``InjectionMixin`` + ``ResidualRulesMixin``; other innvestigate
    reverse analyzers get ``InjectionMixin`` + ``GradientResidualMixin``;
    innvestigate's SmoothGrad / Integrated Gradients wrappers (subclasses of
    ``GaussianSmoother`` / ``PathIntegrator`` that keep innvestigate's
    ``analyze``) get ``AugmentInNumpyMixin``; anything else (analyzers with
    their own ``analyze`` or ``propagate``) is returned unchanged. Mixins a
    class already has are not added twice.
    """
    # under one of innvestigate's names the class carries innvestigate's class
    # name, so that save() / load() work with innvestigate's AnalyzerBase.load too
    class_name = (INNVESTIGATE_ANALYZERS[name].__name__ if name in INNVESTIGATE_ANALYZERS
                  else getattr(cls, "__name__", None))
    namespace = {"__doc__": getattr(cls, "__doc__", None), "__module__": __name__,
                 "method_name": name}
    if (isinstance(cls, type) and issubclass(cls, (GaussianSmoother, PathIntegrator))
            and cls.analyze is AugmentReduceBase.analyze and not hasattr(cls, "propagate")):
        return type(class_name, (SavedStateMixin, AugmentInNumpyMixin, cls), namespace)
    if not isinstance(cls, type) or not issubclass(cls, ReverseAnalyzerBase):
        return cls
    if issubclass(cls, (LRP, DeepTaylor)) or getattr(cls, "residual_rules", False):
        wanted = (InjectionMixin, ResidualRulesMixin)
        if name in INNVESTIGATE_ANALYZERS:
            namespace["default_residual_rule"] = "innvestigate"
    else:
        wanted = (InjectionMixin, GradientResidualMixin)
    bases = tuple(mixin for mixin in (SavedStateMixin,) + wanted if not issubclass(cls, mixin))
    if not bases and name is None:
        return cls
    namespace["method_name"] = name or cls.__name__
    return type(class_name, bases + (cls,), namespace)


class AnalyzerTable(dict):
    """Name -> analyzer class; every class put in goes through :func:`compose`."""

    def __setitem__(self, name, cls):
        super().__setitem__(name, compose(cls, name))

    def update(self, *args, **kwargs):
        for name, cls in dict(*args, **kwargs).items():
            self[name] = cls

    def setdefault(self, name, cls=None):
        if name not in self:
            self[name] = cls
        return self[name]


#: innvestigate 2.1.2's analyzer table (name -> innvestigate's class), unchanged.
INNVESTIGATE_ANALYZERS: dict = dict(ianalyzer.analyzers)

analyzers: dict = AnalyzerTable()
analyzers.update(ianalyzer.analyzers)

# -- project analyzers: one line per name, analyzers["name"] = Class ---------
analyzers["deep_taylor"] = SignedDeepTaylor  # explains negative logits (no output ReLU)
analyzers["deep_taylor.bounded"] = SignedBoundedDeepTaylor
analyzers["rectgrad"] = RectGrad
analyzers["excitation_backprop"] = ExcitationBackprop
analyzers["excitation_backprop.contrastive"] = ContrastiveExcitationBackprop
analyzers["lrp.contrastive"] = ContrastiveLRP
analyzers["lrp.cmp_alpha_1_beta_0"] = LRPCMPAlpha1Beta0
analyzers["lrp.cmp_alpha_2_beta_1"] = LRPCMPAlpha2Beta1
analyzers["smoothgrad.seeded"] = SeededSmoothGrad
analyzers["integrated_gradients"] = IntegratedGradients  # chunked, with propagate
analyzers["pattern.net"] = PatternNet
analyzers["pattern.attribution"] = PatternAttribution
analyzers["deep_lift.wrapper"] = DeepLiftAnalyzer
# -- end of project analyzers ------------------------------------------------


def create_analyzer(name: str, model, *, canonize: bool = False, check_inputs: bool = True,
                    **kwargs):
    """Build the analyzer called ``name`` for ``model``.

    Works like ``innvestigate.create_analyzer``; a model that ends in a
    softmax is analysed on its logits (see :func:`csc_analyzers.logits.logit_model`),
    the user's model is not changed; nested models are flattened
    (:func:`residual_support.flatten.flatten_model`). A model built before ``import
    csc_analyzers`` (eager) is analysed as a graph copy, and Keras' layer-name
    counters are moved past the model's names
    (:func:`csc_analyzers.model_input.prepare_model`). ``canonize=True`` checks
    the layers first, then analyses :func:`residual_support.fold_batchnorm` of
    the model (each BatchNormalization folded into its Conv/Dense layer)
    instead of passing the rule through the BatchNormalization layers.
    ``check_inputs`` (default) makes ``analyze`` / ``propagate`` refuse an
    empty batch, NaN / Inf values and out-of-range ``neuron_selection`` and
    warn when relevance explodes (:class:`csc_analyzers.model_input.InputCheckMixin`).
    Raises ``KeyError`` listing the valid names for an unknown ``name``.
    """
    from .model_input import prepare_model, with_input_checks

    try:
        cls = analyzers[name]
    except KeyError:
        raise KeyError(
            f"unknown analyzer {name!r}; valid names: {sorted(analyzers)}") from None
    model = logit_model(flatten_model(prepare_model(model)))
    if canonize:
        from .checks import check_layers
        check_layers(model, [name])
        model = fold_batchnorm(model, name=model.name)
    return (with_input_checks(cls, name) if check_inputs else cls)(model, **kwargs)
