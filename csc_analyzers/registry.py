"""The method registry: the one source of method names.

``PAPER_METHODS`` lists the paper's 17 method configurations in the paper's
order, with its display names (section 3 and the paper's code): the analyzer
key for :func:`csc_analyzers.create_analyzer`, its keyword arguments, the
heatmap post-processing (``sum`` over channels or ``abs.max``), the SSIM
normalisation percentile, the experiments and networks it is left out of,
what each *recipe* changes on which network, and a plot style shared by every
figure. ``EXTRA_METHODS`` holds the methods of the paper's discussion
(section 5) and Integrated Gradients.

CLI choices, test parametrisation, figure labels and result tables all read
from here.

Exclusions in every recipe (each spec's ``note`` says why):

* SmoothGrad is left out of the CSC experiment, as in the paper's code
  (``exclude_cos_sim``): it averages gradients of 50 noisy inputs, so there is
  no single relevance chain whose convergence CSC measures. Its analyzer still
  has ``propagate`` (the average of the injected gradient over the same noisy
  inputs); the sanity check and random-logit experiments include it.
* The paper left PatternAttribution (and PatternNet) out on ResNet-50
  (``exclude_resnet50``): innvestigate shipped patterns only for VGG-16. The
  project keeps that exclusion for ``resnet50`` only; the small ResNet runs
  them with patterns trained by this project.

Recipes (:data:`RECIPES`): how the methods run on a network, beyond the
configuration above.

* ``plain``: the configuration above and nothing else. On ResNet-50 every
  rule passes relevance through ``Add`` unclipped (conserving it) and DTD
  runs (with this project's residual rules).
* ``paper``: what the paper's code did. Its ResNet-50 support
  (``monkey_patch_lrp_resnet.py``, used through ``get_custom_rule`` for
  ``lrp.alpha_beta`` and the sequential presets A/B) passed the relevance
  through ``Add`` with the method's alpha-beta rule and clipped the relevance
  leaving every ``Add`` to [0, 1000]; its method list marks DTD (and the
  pattern methods) ``exclude_resnet50``, so the paper did *not* run DTD on
  ResNet-50. So on ``resnet50`` the ``paper`` recipe gives LRP a1b0, LRP
  a2b1, LRP a5b4, LRP CMP a1b0 and LRP CMP a2b1 ``add_relevance_clip=(0,
  1000)`` (see :class:`residual_support.ResidualRulesMixin`; the clip breaks
  relevance conservation) and leaves DTD out. The patch replaced only the
  Add and BN reverse layers, so average pooling kept innvestigate's z-rule:
  on ``resnet50`` and ``small-resnet`` those five methods take
  ``residual_rule="paper"`` (their rule through Add and BN, the z-rule
  through (global) average pooling; ``plain`` keeps ``"analyzer"``, their
  rule through pooling too, which scales the relevance by alpha where a
  pooling unit's inputs are all non-negative). On every network of the study
  (:data:`STUDY_NETWORKS`) the three DeepLIFT configurations take deeplift's
  own max-pool rule (``maxpool_mode="gradient"``: the whole multiplier goes
  to the input that is the maximum at ``x``), the rule the paper's code got
  from the ``deeplift`` package's Keras conversion; ``plain`` keeps the
  project's interpolating rule, whose scores sum exactly to f(x) - f(x0).
  Nothing else differs between the recipes, and on a network outside the
  study (an audited model) ``paper`` is the same as ``plain``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class InputRange:
    """A keyword value computed from the network's input range ``(low, high)``:
    ``kind`` "low" or "high" picks that end, "width" gives ``scale * (high - low)``."""

    kind: str  # "low", "high" or "width"
    scale: float = 1.0

    def resolve(self, low: float, high: float) -> float:
        if self.kind == "low":
            return float(low)
        if self.kind == "high":
            return float(high)
        return float(self.scale * (high - low))


INPUT_LOW = InputRange("low")
INPUT_HIGH = InputRange("high")

PLAIN = "plain"
PAPER = "paper"
#: The recipes and what each does (the ``--recipe`` help text reads these).
RECIPES = {
    PAPER: "the paper's code: DeepLIFT uses deeplift's own max-pool rule "
           "(maxpool_mode='gradient'); on resnet50, LRP a1b0/a2b1/a5b4 and LRP CMP "
           "a1b0/a2b1 clip the relevance leaving every Add to [0, 1000] "
           "(add_relevance_clip; breaks relevance conservation) and DTD is left out; "
           "on resnet50 and small-resnet those five take the z-rule through average "
           "pooling (residual_rule='paper')",
    PLAIN: "no recipe changes: DeepLIFT's interpolating max-pool rule (exact "
           "summation-to-delta), relevance passes Add unclipped and DTD runs on resnet50",
}
#: The clip the paper's code applied at every ``Add`` (``K.clip(x, 0, 1000)``).
PAPER_ADD_CLIP = (0.0, 1000.0)
#: The networks of the study (``csc_analyzers.models.NETWORK_NAMES``); the
#: ``paper`` recipe changes methods only on these.
STUDY_NETWORKS = ("cifar-net", "small-resnet", "vgg16", "resnet50")


def check_recipe(recipe: str) -> str:
    """``recipe`` if it is a name of :data:`RECIPES`; ValueError listing them otherwise."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    return recipe


@dataclass(frozen=True)
class RecipeChange:
    """What a recipe changes for one method on one network: extra analyzer
    keyword arguments, or leaving the method out (``exclude``)."""

    kwargs: Mapping = field(default_factory=dict)
    exclude: bool = False
    note: str = ""


@dataclass(frozen=True)
class RelativeCost:
    """A method's cost relative to Gradient's on the same model: building
    and first-running its analyzer (``build``), one CSC unit (``csc``), one
    saliency map (``map``), the growth of the process's peak memory over
    the loaded model's while the method runs alone (``memory``). Measured
    by ``scripts/benchmark_method_costs.py`` (geometric mean over
    MobileNetV2 and ResNet50V2 with random weights at 224 x 224 px, each
    method in a TensorFlow graph of its own, oneDNN off); LRP a5b4, whose
    relevance is non-finite on both, takes LRP a2b1's; PatternNet and
    PatternAttribution, which do not apply to MobileNetV2's depthwise
    convolutions, are ResNet50V2's. The audit predicts a
    method's cost from one measured method with these
    (:func:`csc_analyzers.audit.cost.predict_cost`)."""

    build: float = 1.0
    csc: float = 1.0
    map: float = 1.0
    memory: float = 1.0  # growth of the process's peak memory over the model's


@dataclass(frozen=True)
class MethodSpec:
    """One method configuration of the study."""

    name: str
    analyzer: str
    kwargs: Mapping = field(default_factory=dict)
    postprocess: str = "sum"  # "sum" over channels or "abs.max"
    ssim_percentile: float = 99.5
    exclude_experiments: frozenset = frozenset()
    exclude_networks: frozenset = frozenset()
    needs_patterns: bool = False
    color: str = "black"
    marker: str = "o"
    linestyle: str = "-"
    note: str = ""  # why the method is excluded somewhere, or how it is configured
    #: (recipe, network) -> :class:`RecipeChange`; absent pairs change nothing
    recipes: Mapping = field(default_factory=dict)
    cost: RelativeCost = RelativeCost()  # relative to Gradient, for the audit's estimate

    def recipe_change(self, network: str | None, recipe: str = PLAIN) -> RecipeChange | None:
        """What ``recipe`` changes for this method on ``network`` (None: nothing).
        ValueError for an unknown recipe, or for a recipe other than ``plain``
        without a network (recipes change methods per network)."""
        check_recipe(recipe)
        if recipe == PLAIN:
            return None
        if network is None:
            raise ValueError(f"{self.name}: recipe {recipe!r} changes methods per network; "
                             "pass network=")
        return self.recipes.get((recipe, network))

    def analyzer_kwargs(self, input_range: tuple = (0.0, 1.0), *, network: str | None = None,
                        recipe: str = PLAIN) -> dict:
        """Keyword arguments with input-range dependent values resolved, plus
        those ``recipe`` adds on ``network``."""
        low, high = input_range
        kwargs = {key: value.resolve(low, high) if isinstance(value, InputRange) else value
                  for key, value in self.kwargs.items()}
        change = self.recipe_change(network, recipe)
        if change is not None:
            kwargs.update(change.kwargs)
        return kwargs

    def runs_on(self, network: str, experiment: str | None = None, *,
                recipe: str = PLAIN) -> bool:
        """False if the method is left out of this network or experiment
        (under ``recipe``)."""
        if network in self.exclude_networks:
            return False
        change = self.recipe_change(network, recipe)
        if change is not None and change.exclude:
            return False
        return experiment is None or experiment not in self.exclude_experiments

    @property
    def style(self) -> dict:
        """Matplotlib keyword arguments for this method's lines and markers."""
        return {"color": self.color, "marker": self.marker,
                "linestyle": self.linestyle, "label": self.name}


#: The residual handling of every LRP / DTD method of the study: the method's
#: own rule through Add, BatchNormalization and average pooling
#: (:data:`residual_support.rules.RESIDUAL_RULES`). The paper's code
#: (``monkey_patch_lrp_resnet.py``, ``custom_add_bn_rule``) passed the relevance
#: through Add and BatchNormalization with the method's alpha-beta rule; the
#: innvestigate names' own default, "innvestigate", would use the z-rule there.
#: Its innvestigate 1.0.8 took the z-rule through average pooling; after a ReLU
#: the method's alpha-beta rule there is alpha times the z-rule, so the
#: relevance below the pooling is scaled by alpha (a1b0: identical), which the
#: scale-free CSC and SSIM do not see, except through the [0, 1000] clip of the
#: paper recipe on ResNet-50.
ANALYZER_RULE = "analyzer"

_Z_FAMILY = "#d62728"
#: what the paper's code did with the alpha-beta rules and the CMP composites
#: on residual networks (``get_custom_rule`` + ``monkey_patch_lrp_resnet.py``):
#: the method's rule through Add and BN, innvestigate's z-rule through average
#: pooling, and on ResNet-50 the relevance leaving every Add clipped to [0, 1000]
PAPER_RESIDUAL_RULE = "paper"
_PAPER_ALPHA_BETA = {
    (PAPER, "resnet50"): RecipeChange(
        {"add_relevance_clip": PAPER_ADD_CLIP, "residual_rule": PAPER_RESIDUAL_RULE},
        note="paper recipe on ResNet-50: relevance leaving every Add clipped to [0, 1000] "
             "and the z-rule through average pooling, as in the paper's code"),
    (PAPER, "small-resnet"): RecipeChange(
        {"residual_rule": PAPER_RESIDUAL_RULE},
        note="paper recipe on a residual network: the z-rule through average pooling, "
             "as in the paper's code")}
_PAPER_NO_DTD = {(PAPER, "resnet50"): RecipeChange(
    exclude=True, note="paper recipe: left out on ResNet-50 as in the paper's code "
                       "(exclude_resnet50)")}
_PAPER_DEEPLIFT = {(PAPER, network): RecipeChange(
    {"maxpool_mode": "gradient"},
    note="paper recipe: deeplift's own max-pool rule (the whole multiplier to the "
         "maximum at x), as the paper's code got from the deeplift package")
    for network in STUDY_NETWORKS}
_NO_RESNET50_PATTERNS = ("left out on ResNet-50 as in the paper (no ImageNet ResNet-50 "
                         "patterns); runs on the small ResNet")

PAPER_METHODS: tuple = (
    MethodSpec("GuidedBP", "guided_backprop", postprocess="abs.max",
               color="#1f77b4", marker="^",
               cost=RelativeCost(0.96, 0.88, 0.99, 0.67)),
    MethodSpec("Deconv", "deconvnet", postprocess="abs.max",
               color="#aec7e8", marker="v",
               cost=RelativeCost(0.98, 0.90, 0.88, 1.01)),
    MethodSpec("RectGrad", "rectgrad", {"percentile": 98}, postprocess="abs.max",
               ssim_percentile=100.0, color="#17becf", marker="<",
               cost=RelativeCost(1.02, 1.02, 1.49, 1.00)),
    MethodSpec("Gradient", "gradient", postprocess="abs.max",
               color="#7f7f7f", marker="o", linestyle="--"),
    MethodSpec("SmoothGrad", "smoothgrad.seeded",
               {"augment_by_n": 50, "noise_scale": InputRange("width", 0.15), "seed": 0},
               postprocess="abs.max", exclude_experiments=frozenset({"csc"}),
               color="#c7c7c7", marker="o", linestyle=":",
               note="left out of CSC as in the paper: an average over noisy inputs, "
                    "not one relevance chain",
               cost=RelativeCost(1.94, 0.00, 35.91, 1.09)),
    MethodSpec("DTD", "deep_taylor.bounded",
               {"low": INPUT_LOW, "high": INPUT_HIGH, "residual_rule": ANALYZER_RULE},
               color="#ff7f0e", marker="s", recipes=_PAPER_NO_DTD,
               cost=RelativeCost(0.89, 0.98, 1.26, 1.37)),
    MethodSpec("PatternAttr.", "pattern.attribution", needs_patterns=True,
               exclude_networks=frozenset({"resnet50"}), color="#2ca02c", marker="D",
               note=_NO_RESNET50_PATTERNS,
               cost=RelativeCost(1.41, 0.75, 1.04, 1.82)),
    MethodSpec("PatternNet", "pattern.net", needs_patterns=True,
               exclude_networks=frozenset({"resnet50"}), color="#98df8a", marker="d",
               note=_NO_RESNET50_PATTERNS,
               cost=RelativeCost(1.24, 0.77, 0.96, 1.74)),
    MethodSpec("LRP a1b0", "lrp.alpha_1_beta_0", {"residual_rule": ANALYZER_RULE},
               color=_Z_FAMILY, marker="P",
               recipes=_PAPER_ALPHA_BETA,
               cost=RelativeCost(1.10, 1.19, 1.32, 1.27)),
    MethodSpec("LRP a2b1", "lrp.alpha_2_beta_1", {"residual_rule": ANALYZER_RULE},
               color="#ff9896", marker="X",
               recipes=_PAPER_ALPHA_BETA,
               cost=RelativeCost(1.63, 1.47, 1.84, 1.58)),
    MethodSpec("LRP a5b4", "lrp.alpha_beta",
               {"alpha": 5, "beta": 4, "residual_rule": ANALYZER_RULE},
               color="#e377c2", marker="*", recipes=_PAPER_ALPHA_BETA,
               cost=RelativeCost(1.63, 1.47, 1.84, 1.58)),
    MethodSpec("LRP-z", "lrp.z", {"residual_rule": ANALYZER_RULE},
               color="#8c564b", marker="h", linestyle="--",
               cost=RelativeCost(0.96, 1.01, 1.03, 1.15)),
    MethodSpec("LRP CMP a1b0", "lrp.cmp_alpha_1_beta_0", {"residual_rule": ANALYZER_RULE},
               color="#9467bd", marker="p",
               recipes=_PAPER_ALPHA_BETA,
               cost=RelativeCost(1.05, 1.14, 1.25, 1.34)),
    MethodSpec("LRP CMP a2b1", "lrp.cmp_alpha_2_beta_1", {"residual_rule": ANALYZER_RULE},
               color="#c5b0d5", marker="H",
               recipes=_PAPER_ALPHA_BETA,
               cost=RelativeCost(1.70, 1.66, 2.43, 1.64)),
    MethodSpec("DeepLIFT Rev.C.", "deep_lift.wrapper", {"nonlinear_mode": "reveal_cancel"},
               color="#bcbd22", marker="8", linestyle="--", recipes=_PAPER_DEEPLIFT,
               cost=RelativeCost(1.94, 3.68, 9.26, 2.06)),
    MethodSpec("DeepLIFT Resc.", "deep_lift.wrapper", {"nonlinear_mode": "rescale"},
               color="#dbdb8d", marker="o", linestyle="--", recipes=_PAPER_DEEPLIFT,
               cost=RelativeCost(1.51, 3.70, 6.00, 2.01)),
    MethodSpec("DeepLIFT Abla.", "deep_lift.wrapper",
               {"nonlinear_mode": "rescale", "cross_mxts": False},
               color="#393b79", marker="x", recipes=_PAPER_DEEPLIFT,
               cost=RelativeCost(1.40, 2.92, 4.28, 1.75)),
)

EXTRA_METHODS: tuple = (
    MethodSpec("Excitation BP", "excitation_backprop", color="#843c39", marker="1",
               note="z+ without bias from a one-hot start; the map is LRP z+ / y_k",
               cost=RelativeCost(0.97, 0.95, 1.21, 1.46)),
    MethodSpec("c-Excitation BP", "excitation_backprop.contrastive",
               color="#ad494a", marker="2",
               cost=RelativeCost(0.93, 0.93, 1.32, 1.37)),
    MethodSpec("Contrastive LRP", "lrp.contrastive", color="#e7969c", marker="3",
               cost=RelativeCost(1.35, 0.96, 1.76, 1.36)),
    MethodSpec("Contrastive LRP (no max)", "lrp.contrastive", {"use_max": False},
               color="#7b4173", marker="4",
               cost=RelativeCost(1.41, 1.07, 1.76, 1.40)),
    MethodSpec("LRP z+", "lrp.z_plus", {"residual_rule": ANALYZER_RULE},
               color="#a55194", marker="+",
               note="alpha1-beta0 without bias from the logit; through BatchNormalization "
                    "the map sums to less than the logit unless canonize=True (see "
                    "csc_analyzers.methods.excitation)",
               cost=RelativeCost(0.88, 1.01, 1.24, 1.45)),
    MethodSpec("Integrated Gradients", "integrated_gradients",
               color="#636363", marker=".", linestyle="-.",
               note="an attribution (x - x0) * mean gradient that sums to about "
                    "f(x) - f(x0): summed over channels like LRP-z",
               cost=RelativeCost(4.15, 15.86, 40.08, 2.13)),
)

ALL_METHODS: tuple = PAPER_METHODS + EXTRA_METHODS


def effective_recipe(network: str, recipe: str, specs=ALL_METHODS) -> str:
    """``recipe`` if it changes any of ``specs`` on ``network``, else ``plain``
    (the same runs): what a result store records for that network."""
    check_recipe(recipe)
    if recipe == PLAIN:
        return PLAIN
    changed = any(spec.recipe_change(network, recipe) is not None for spec in specs)
    return recipe if changed else PLAIN


def recipe_settings(network: str, recipe: str, specs=ALL_METHODS) -> dict:
    """What a result store records about the recipe on ``network``: the
    effective recipe (:func:`effective_recipe`) and, per method it changes,
    the keyword arguments it adds or ``"left out"`` (JSON values), so that a
    store made under an older definition of a recipe is not resumed with
    other numbers. :data:`RECIPE_SETTINGS_DEFAULTS` is what a store written
    before these keys existed counts as."""
    changes = {}
    if check_recipe(recipe) != PLAIN:
        for spec in specs:
            change = spec.recipe_change(network, recipe)
            if change is not None:
                changes[spec.name] = "left out" if change.exclude else {
                    key: list(value) if isinstance(value, tuple) else value
                    for key, value in sorted(change.kwargs.items())}
    return {"recipe": effective_recipe(network, recipe, specs), "recipe_changes": changes}


#: Stored settings without recipe keys were made before recipes existed: plain.
RECIPE_SETTINGS_DEFAULTS = {"recipe": PLAIN, "recipe_changes": {}}


def recipe_help() -> str:
    """The ``--recipe`` help text: every recipe and what it does."""
    return "; ".join(f"'{name}': {text}" for name, text in RECIPES.items())


def get_method(name: str) -> MethodSpec:
    """The method spec with display name ``name`` (KeyError lists valid names)."""
    for spec in ALL_METHODS:
        if spec.name == name:
            return spec
    raise KeyError(
        f"unknown method {name!r}; valid names: {[s.name for s in ALL_METHODS]}")


def available_methods(specs=ALL_METHODS, table: Mapping | None = None) -> list:
    """The specs whose analyzer key is registered in ``table``
    (default: :data:`csc_analyzers.analyzers`)."""
    if table is None:
        from .factory import analyzers as table
    return [spec for spec in specs if spec.analyzer in table]


def select_methods(names, specs=ALL_METHODS) -> list:
    """Specs for a list of display names; ``"all"`` means every paper method,
    ``"extra"`` the extras."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen: list = []
    for name in names:
        if name == "all":
            chosen.extend(PAPER_METHODS)
        elif name == "extra":
            chosen.extend(EXTRA_METHODS)
        else:
            chosen.append(get_method(name))
    seen, unique = set(), []
    for spec in chosen:
        if spec.name not in seen:
            seen.add(spec.name)
            unique.append(spec)
    return unique


__all__ = ["MethodSpec", "InputRange", "INPUT_LOW", "INPUT_HIGH", "PAPER_METHODS",
           "EXTRA_METHODS", "ALL_METHODS", "get_method", "available_methods",
           "select_methods", "RecipeChange", "RECIPES", "PLAIN", "PAPER", "PAPER_ADD_CLIP",
           "STUDY_NETWORKS", "check_recipe", "effective_recipe", "recipe_settings",
           "RECIPE_SETTINGS_DEFAULTS", "recipe_help", "ANALYZER_RULE",
           "PAPER_RESIDUAL_RULE"]
