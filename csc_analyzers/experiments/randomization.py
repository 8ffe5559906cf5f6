"""Randomise the layers of a Keras model in place, and undo it exactly.

The sanity check of Adebayo et al. (2018), as run in the paper (section 3):
the parameters of a trained network are replaced by random ones, from the
last layer down to the first (*cascading*), or one level at a time
(*independent*), and the saliency maps are compared with the original ones.

Random weights come from a freshly initialised copy of the network: each
layer is cloned from its config (as ``keras.models.clone_model`` does, so
with the initialisers of its config, Keras's defaults unless the model's
builder chose others) and initialised in a private graph with its own seed,
derived from the run's seed and the layer's position among the weight layers.
A layer's random weights therefore do not depend on which other layers are
randomised.

:class:`Randomizer` assigns the values to the *existing* variables of the
model (``layer.set_weights``; Keras creates its assign ops once per variable),
so an analyzer graph built once reads the randomised weights at every level
and is never rebuilt. Leaving the ``with`` block restores the original
weights bit-identically, also on exceptions and ``KeyboardInterrupt``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import tensorflow as tf
from tensorflow import keras

from ..injection import LayerNames

MODES = ("cascading", "independent")


def weight_layers(model) -> list:
    """The layers of ``model`` that own weights, in ``model.layers`` order
    (inputs to outputs)."""
    return [layer for layer in model.layers if layer.weights]


def layer_seed(seed: int, position: int) -> int:
    """The seed of the weight layer at ``position`` for a run with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def seeded_config(config: dict, seed: int) -> dict:
    """A copy of a layer config whose random initialisers (those with a
    ``seed`` option) get seeds derived from ``seed``, one per initialiser."""
    config = dict(config)
    for k, key in enumerate(sorted(config)):
        value = config[key]
        if (key.endswith("_initializer") and isinstance(value, dict)
                and "seed" in value.get("config", {})):
            config[key] = {**value, "config": {**value["config"], "seed": layer_seed(seed, k)}}
    return config


def fresh_layer_weights(layer, seed: int) -> list:
    """Weights of a fresh clone of ``layer`` (same class and config, its
    initialisers, seeded from ``seed``) built for the layer's input shape in a
    private graph; returned in ``layer.get_weights()`` order."""
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"layer {layer.name!r} is a nested model; flatten the model before randomising")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(int(seed))
        clone = layer.__class__.from_config(seeded_config(layer.get_config(), seed))
        clone.build(layer.get_input_shape_at(0))
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.variables_initializer(clone.weights))
            values = sess.run(clone.weights)
    expected = [w.shape for w in layer.get_weights()]
    if [v.shape for v in values] != expected:
        raise ValueError(
            f"layer {layer.name!r}: a fresh clone has weights of shapes "
            f"{[v.shape for v in values]}, the layer has {expected}")
    return values


@dataclass(frozen=True)
class Level:
    """One randomisation level: ``index`` 1..L counted from the top, the scored
    ``layer`` (friendly name) and the Keras names of the layers it randomises."""

    index: int
    layer: str
    randomized: tuple


def randomization_levels(model, scored_layers: Sequence[str], *, mode: str = "cascading",
                         aliases=None) -> list:
    """The levels of a sanity check, top scored layer first.

    ``scored_layers`` (friendly or Keras names, any order) are sorted from the
    output down. Cascading level ``j`` randomises every weight layer at or
    above the ``j``-th scored layer (in ``model.layers`` order), as the paper's
    code does; independent level ``j`` randomises only what cascading level
    ``j`` adds to level ``j - 1`` (for a network whose weight layers are all
    scored: exactly that one layer).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    if not scored_layers:
        raise ValueError("scored_layers is empty: name at least one layer to randomise")
    names = LayerNames(model, aliases)
    index_of = {layer.name: k for k, layer in enumerate(model.layers)}
    resolved = []
    for friendly in scored_layers:
        keras_name = names.resolve(friendly)
        if keras_name not in index_of:
            raise ValueError(f"scored layer {friendly!r} ({keras_name!r}) is not a layer of "
                             f"model {model.name!r}")
        resolved.append((index_of[keras_name], friendly))
    resolved.sort(reverse=True)
    weighted = [(index_of[layer.name], layer.name) for layer in weight_layers(model)]
    levels, previous = [], set()
    for j, (start, friendly) in enumerate(resolved, start=1):
        cascade = {name for k, name in weighted if k >= start}
        chosen = cascade if mode == "cascading" else cascade - previous
        if not chosen:
            raise ValueError(
                f"scored layer {friendly!r}: no weight layer to randomise at level {j} "
                f"({mode}); is it listed twice or above the last weight layer?")
        ordered = tuple(name for _, name in weighted if name in chosen)
        levels.append(Level(j, friendly, ordered))
        previous = cascade
    return levels


class Randomizer:
    """Context manager that randomises layers of ``model`` in place.

    ``with Randomizer(model, seed=0) as rnd: rnd.set_randomized(names)`` makes
    exactly the layers ``names`` random (the others hold their original
    weights); :meth:`restore` or leaving the block puts every original weight
    back, bit-identically.
    """

    def __init__(self, model, *, seed: int = 0):
        self.model = model
        self.seed = int(seed)
        self._layers = {layer.name: layer for layer in weight_layers(model)}
        self._position = {name: k for k, name in enumerate(self._layers)}
        self._original: dict = {}
        self._random: dict = {}
        self._randomized: set = set()
        self._active = False

    def __enter__(self):
        self._original = self._read_weights()
        self._active = True
        return self

    def _read_weights(self) -> dict:
        """Layer name -> its weights (``layer.get_weights()`` order), all
        layers read in one session run: reading layer by layer costs a
        session run per layer (MobileNetV2: 105 of them, about 10 s in an
        analyzer's graph)."""
        variables = [w for layer in self._layers.values() for w in layer.weights]
        values = iter(read_values(variables)) if variables else iter(())
        return {name: [np.array(next(values), copy=True) for _ in layer.weights]
                for name, layer in self._layers.items()}

    def __exit__(self, exc_type, exc, tb):
        self.restore()
        self._active = False
        return False

    @property
    def randomized(self) -> frozenset:
        """Keras names of the layers that hold random weights now."""
        return frozenset(self._randomized)

    def random_weights(self, name: str) -> list:
        """The random weights of layer ``name`` (computed once, then cached)."""
        if name not in self._layers:
            raise KeyError(f"layer {name!r} of model {self.model.name!r} has no weights; "
                           f"weight layers: {list(self._layers)}")
        if name not in self._random:
            seed = layer_seed(self.seed, self._position[name])
            self._random[name] = fresh_layer_weights(self._layers[name], seed)
        return self._random[name]

    def set_randomized(self, names: Iterable[str]) -> list:
        """Make exactly the layers ``names`` random; only changed layers are
        assigned. Returns the names of the layers whose weights changed."""
        if not self._active:
            raise RuntimeError("Randomizer.set_randomized used outside its `with` block")
        target = set(names)
        for name in target:
            self.random_weights(name)
        changed = []
        for name in sorted(self._randomized - target, key=self._position.get):
            self._layers[name].set_weights(self._original[name])
            self._randomized.discard(name)
            changed.append(name)
        for name in sorted(target - self._randomized, key=self._position.get):
            self._layers[name].set_weights(self._random[name])
            self._randomized.add(name)
            changed.append(name)
        return changed

    def restore(self) -> None:
        """Put the original weights back into the layers that hold random
        weights and into any other layer whose weights were changed in the
        block by someone else (compared bit for bit; all layers read in one
        session run, which adds no operations). Only those are assigned: on a large graph each layer's
        first assignment adds operations, and the next session run copies the
        whole graph (assigning all 105 weight layers of MobileNetV2 next to
        its analyzers took minutes and GBs)."""
        changed = set(self._randomized)
        current = self._read_weights()
        for name in self._layers:
            if name not in changed and not _same_weights(current[name], self._original[name]):
                changed.add(name)
        for name in sorted(changed, key=self._position.get):
            self._layers[name].set_weights(self._original[name])
        self._randomized.clear()


def read_values(variables) -> list:
    """The values of ``variables`` as numpy arrays, read in one session run."""
    return keras.backend.batch_get_value(variables)


def _same_weights(current, original) -> bool:
    return len(current) == len(original) and all(
        np.array_equal(a, b) for a, b in zip(current, original))


__all__ = ["MODES", "Level", "Randomizer", "weight_layers", "layer_seed",
           "fresh_layer_weights", "seeded_config", "randomization_levels"]
