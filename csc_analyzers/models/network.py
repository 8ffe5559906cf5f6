"""``load_network``: the four networks of the project by name, with their
friendly layer names, preprocessing and input range.

The friendly names are the layer names of the paper's figures; every one of
them maps to a Keras layer (``Network.aliases``, also set as
``model._csc_layer_aliases`` so that :class:`csc_analyzers.injection.LayerNames`
resolves them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from residual_support import _tf  # noqa: F401  (graph mode first)

from . import cifar_net, imagenet, small_resnet
from ..registry import STUDY_NETWORKS
from .training import TrainConfig, cached_weights

NETWORK_NAMES = STUDY_NETWORKS
SMALL_WEIGHTS = ("builtin", "cifar10")


@dataclass
class Network:
    """A Keras model (ending in a softmax) and what the experiments need to know."""
    name: str
    model: object
    aliases: dict
    layers: tuple
    csc_layers: tuple
    sanity_layers: tuple
    input_range: tuple
    preprocess: Callable
    class_names: tuple
    n_classes: int
    weights: str
    analyzer_cache: dict = field(default_factory=dict, repr=False)  # method -> analyzer

    def layer(self, friendly: str):
        """The Keras layer behind a friendly (or Keras) name."""
        return self.model.get_layer(self.aliases.get(friendly, friendly))


def _small_weights(name: str, weights, cache_dir, train_if_missing: bool, progress: bool):
    if weights is None:
        return None, "random"
    if isinstance(weights, str) and weights in SMALL_WEIGHTS:
        config = TrainConfig(network=name, dataset=weights)
        path, record = cached_weights(config, cache_dir, progress=progress,
                                      train_if_missing=train_if_missing)
        return path, f"trained on {weights} (test accuracy {record['test_accuracy']:.3f})"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {name} not found: {path}")
    return path, str(path)


def _class_names(dataset) -> tuple:
    from ..data import builtin, cifar10

    return cifar10.CLASS_NAMES if dataset == "cifar10" else builtin.CLASS_NAMES


def load_network(name: str, weights="default", cache_dir=None, *,
                 download: bool = True, train_if_missing: bool = True,
                 progress: bool = True, seed: int = 0) -> Network:
    """Build network ``name`` (one of ``NETWORK_NAMES``) with its weights.

    ``weights``: ``"default"`` ("builtin" for the small networks, "imagenet"
    for VGG-16 / ResNet-50); for cifar-net and small-resnet ``"builtin"`` or
    ``"cifar10"`` (trained weights from the cache in ``cache_dir``, trained
    now if missing and ``train_if_missing``); for vgg16 / resnet50
    ``"imagenet"`` (Keras cache, downloaded if missing and ``download``);
    for every network a path to a weights file, or ``None`` (random
    initialisation, ``Network.weights == "random"``: the initial weights
    are drawn from ``seed``, so every process builds the same network).
    """
    from ..integrity import seeded_initialization

    if name not in NETWORK_NAMES:
        raise ValueError(f"unknown network {name!r}; choose from {NETWORK_NAMES}")
    if name in ("cifar-net", "small-resnet"):
        weights = "builtin" if isinstance(weights, str) and weights == "default" else weights
        path, description = _small_weights(name, weights, cache_dir, train_if_missing, progress)
        module = cifar_net if name == "cifar-net" else small_resnet
        with seeded_initialization(seed):
            model = module.build()
        if path is not None:
            model.load_weights(str(path))
        dataset = weights if weights in SMALL_WEIGHTS else "builtin"
        class_names = _class_names(dataset)
        if name == "cifar-net":
            aliases = {layer: layer for layer in cifar_net.LAYERS[1:]}
            layers, csc, sanity = cifar_net.LAYERS, cifar_net.CSC_LAYERS, cifar_net.SANITY_LAYERS
        else:
            aliases = {n: n for n in small_resnet.friendly_layers(model)[1:]}
            aliases.update(small_resnet.aliases(model))
            layers = small_resnet.friendly_layers(model)
            csc, sanity = small_resnet.csc_layers(), small_resnet.sanity_layers()
        input_range = module.INPUT_RANGE
        preprocess = module.preprocess
    else:
        weights = "imagenet" if isinstance(weights, str) and weights == "default" else weights
        builder = imagenet.build_vgg16 if name == "vgg16" else imagenet.build_resnet50
        with seeded_initialization(seed):
            model, aliases, description = builder(weights, download=download)
        if name == "vgg16":
            layers = imagenet.vgg16_layers()
            csc, sanity = imagenet.VGG16_CSC_LAYERS, imagenet.VGG16_SANITY_LAYERS
        else:
            layers = imagenet.resnet50_layers()
            csc, sanity = imagenet.RESNET50_CSC_LAYERS, imagenet.RESNET50_SANITY_LAYERS
        from ..data.imagenet import class_names as imagenet_class_names

        class_names = imagenet_class_names()
        input_range = imagenet.INPUT_RANGE
        preprocess = imagenet.preprocess
    model._csc_layer_aliases = dict(aliases)
    return Network(name=name, model=model, aliases=dict(aliases), layers=tuple(layers),
                   csc_layers=tuple(csc), sanity_layers=tuple(sanity),
                   input_range=tuple(input_range), preprocess=preprocess,
                   class_names=tuple(class_names), n_classes=len(class_names),
                   weights=description)
