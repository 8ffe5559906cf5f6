"""Relevance injection: start a method's backward pass at any layer.

The paper's CSC metric (section 3) sets the relevance of layer k to chosen
vectors, ``r_k(x) := v``, and backpropagates them with the method's rule.
In TF1 graph mode a ``feed_dict`` may override any intermediate tensor, so an
analyzer graph built once serves every layer and every batch of vectors: the
reversed tensor of layer k is fed with ``v`` and the reversed tensors of the
layers below are fetched.

:class:`InjectionMixin` adds :meth:`propagate` to innvestigate reverse
analyzers. It records, while the analyzer graph is built, which reversed
tensor belongs to the output of which layer.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from residual_support import _tf  # noqa: F401  (graph mode first)

import inspect

import innvestigate.backend.graph as igraph
import tensorflow as tf
from tensorflow.keras import layers as klayers

INPUT = "input"


class ReversalStep(klayers.Layer):
    """One layer's reverse mapping, run inside a Keras layer call.

    The reverse mappings of innvestigate and of this project build raw
    TensorFlow ops. Outside a layer call, Keras (graph mode) wraps each raw
    op in a ``TensorFlowOpLayer`` when the next Keras layer or model is
    built on it, and evaluates every constant-foldable op input in its own
    session run; that made graph construction grow quadratically with depth.
    Inside a call the ops stay internal, the output carries Keras metadata,
    and the numbers are the same. Inputs are ``Xs + Ys + Rs`` of the mapped
    layer; outputs are the relevances of ``Xs`` (zeros where the mapping
    gives none).
    """

    def __init__(self, mapping, n_inputs: int, n_outputs: int, reverse_state: dict, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._mapping = mapping
        self._n_inputs = n_inputs
        self._n_outputs = n_outputs
        self._reverse_state = reverse_state

    @tf.autograph.experimental.do_not_convert
    def call(self, tensors):
        xs = list(tensors[:self._n_inputs])
        ys = list(tensors[self._n_inputs:self._n_inputs + self._n_outputs])
        rs = list(tensors[self._n_inputs + self._n_outputs:])
        found = self._mapping(xs, ys, rs, self._reverse_state)
        found = found if isinstance(found, (list, tuple)) else [found]
        return [tf.zeros_like(x) if r is None else r for x, r in zip(xs, found)]


def _resolve_mapping(meta, layer, model):
    """The callable ``f(Xs, Ys, Rs, state)`` for innvestigate's mapping forms:
    a ReverseMappingBase subclass, a ``f(layer, state)`` factory or ``f`` itself."""
    state = {"model": model, "layer": layer}
    if inspect.isclass(meta) and issubclass(meta, igraph.ReverseMappingBase):
        return meta(layer, state).apply
    if callable(meta) and len(inspect.signature(meta).parameters) == 2:
        return meta(layer, state)
    return meta


def run_in_layer(mapping):
    """Wrap a resolved reverse mapping so that it runs in a :class:`ReversalStep`."""
    def mapped(Xs, Ys, Rs, reverse_state):
        Xs, Ys, Rs = list(Xs), list(Ys), list(Rs)
        step = ReversalStep(mapping, len(Xs), len(Ys), reverse_state)
        found = step(Xs + Ys + Rs)
        return found if isinstance(found, (list, tuple)) else [found]
    return mapped


def session():
    """The TF1 session Keras uses in graph mode."""
    return tf.compat.v1.keras.backend.get_session()


def broadcast_inputs(x: np.ndarray, n: int) -> np.ndarray:
    """Repeat a batch-1 input ``n`` times; a batch of ``n`` is returned as is."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] == n:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, n, axis=0)
    raise ValueError(
        f"x has batch size {x.shape[0]}, relevance has {n} vectors: "
        "give x with batch 1 (broadcast) or the same batch size as the relevance"
    )


class LayerNames:
    """Resolve user-facing layer names to the Keras layers of a model.

    Accepts Keras layer names, the friendly names of the paper's figures
    (``aliases``: friendly name -> Keras name, from the network definitions)
    and ``"input"`` for the model input.
    """

    def __init__(self, model, aliases: Mapping[str, str] | None = None):
        self._model = model
        self._aliases = dict(aliases or getattr(model, "_csc_layer_aliases", {}) or {})

    def resolve(self, name: str) -> str:
        if name == INPUT:
            return INPUT
        keras_names = {layer.name for layer in self._model.layers}
        if name in keras_names:
            return name
        if name in self._aliases and self._aliases[name] in keras_names:
            return self._aliases[name]
        valid = sorted(keras_names | set(self._aliases) | {INPUT})
        raise KeyError(
            f"unknown layer {name!r} in model {self._model.name!r}; valid names: {valid}"
        )


class InjectionMixin:
    """Adds :meth:`propagate` (relevance injection) to a reverse analyzer.

    Must come before the innvestigate analyzer class in the bases. The mixin
    overrides ``_reverse_model`` to keep, per layer name, the forward output
    tensor and its reversed (relevance) tensor in the analyzer graph.
    """

    layer_aliases: Mapping[str, str] | None = None

    def _reverse_model(self, model, stop_analysis_at_tensors=None,
                       return_all_reversed_tensors=False):
        trace = igraph.trace_model_execution(model)
        _layers, execution_list, _outputs = trace

        def mapping_for(layer):
            meta = self._reverse_mapping(layer)
            if meta is None:
                meta = self._default_reverse_mapping
            return run_in_layer(_resolve_mapping(meta, layer, model))

        reversed_input_tensors, reversed_tensors = igraph.reverse_model(
            model,
            reverse_mappings=mapping_for,
            default_reverse_mapping=None,
            head_mapping=self._head_mapping,
            stop_mapping_at_tensors=stop_analysis_at_tensors or [],
            verbose=self._reverse_verbose,
            clip_all_reversed_tensors=self._reverse_clip_values,
            project_bottleneck_tensors=self._reverse_project_bottleneck_layers,
            return_all_reversed_tensors=True,
            execution_trace=trace,
        )
        self._record_reversed(model, execution_list, reversed_tensors)
        if return_all_reversed_tensors:
            return reversed_input_tensors, reversed_tensors
        return reversed_input_tensors, None

    def _record_reversed(self, model, execution_list, reversed_tensors) -> None:
        """Map layer names to (forward output tensor, reversed tensor); helper
        layers the analyzer adds (e.g. neuron selection) are left out."""
        self._injection_points = {}
        own = {layer.name for layer in self._model.layers}
        for layer, _xs, ys in execution_list:
            if not isinstance(layer, klayers.InputLayer) and layer.name not in own:
                continue
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            if len(ys) != 1:
                continue
            entry = reversed_tensors.get(id(ys[0]))
            if entry is None or entry["final_tensor"] is None:
                continue
            name = INPUT if isinstance(layer, klayers.InputLayer) else layer.name
            self._injection_points[name] = (ys[0], entry["final_tensor"])
        model_input = model.inputs[0]
        entry = reversed_tensors.get(id(model_input))
        if entry is not None and entry["final_tensor"] is not None:
            self._injection_points[INPUT] = (model_input, entry["final_tensor"])
        self._injection_input = model_input

    def _ensure_graph(self) -> None:
        if not getattr(self, "_analyzer_model_done", False):
            self.create_analyzer_model()

    def injection_layers(self) -> list[str]:
        """Names of the layers whose relevance can be set or read."""
        self._ensure_graph()
        return list(self._injection_points)

    def relevance_shape(self, layer: str) -> tuple:
        """Shape (without batch) of the relevance tensor of ``layer``."""
        self._ensure_graph()
        name = LayerNames(self._model, self.layer_aliases).resolve(layer)
        return tuple(self._injection_points[name][0].shape[1:])

    def propagate(self, x: np.ndarray, relevance: np.ndarray, from_layer: str,
                  to_layers: Sequence[str] | str = (INPUT,)) -> dict:
        """Backpropagate ``relevance`` set at ``from_layer`` down to ``to_layers``.

        Computes r_l(x | r_k := v) of the paper (section 3) for every vector v
        in ``relevance`` (shape ``(n,) + output shape of from_layer``) in one
        session run. ``x`` has batch 1 (one image for every vector), n, or a
        divisor b of n (image i for the n/b consecutive vectors from i*n/b).
        With fewer images than vectors the forward pass runs once per image.
        Returns a dict from each requested name to an array of shape
        ``(n,) + output shape``.
        """
        self._ensure_graph()
        if isinstance(to_layers, str):
            to_layers = [to_layers]
        source = self._injection_point(from_layer)
        targets = [self._injection_point(t) for t in to_layers]
        forward, reversed_source = self._injection_points[source]
        relevance = np.asarray(relevance, dtype=np.float32)
        expected = tuple(forward.shape[1:])
        if relevance.shape[1:] != expected:
            raise ValueError(
                f"relevance for layer {from_layer!r} must have shape (n,) + {expected}, "
                f"got {relevance.shape}"
            )
        fetches = []
        for name in targets:
            if name == source:
                fetches.append(reversed_source)
            else:
                fetches.append(self._injection_points[name][1])
        feed = self._forward_feed(x, relevance.shape[0])
        feed[reversed_source] = relevance
        values = session().run(fetches, feed_dict=feed)
        return dict(zip(to_layers, values))

    def _forward_feed(self, x: np.ndarray, n: int) -> dict:
        """Feed dict of the forward pass for ``n`` relevance vectors.

        With fewer images than vectors (CSC: one image, several vectors) the
        forward pass runs once per image and every layer's output is fed,
        each image's row repeated for its vectors, so the session computes
        only the relevance-dependent part at batch ``n`` (the rules' own
        forward terms, e.g. z+, still run at batch ``n``). With one image
        per vector ``x`` itself is fed."""
        x = np.asarray(x, dtype=np.float32)
        b = x.shape[0]
        if b == n:
            return {self._injection_input: x}
        if b < 1 or n % b:
            raise ValueError(
                f"x has batch size {b}, relevance has {n} vectors: give x with batch 1 "
                f"(broadcast), {n}, or a divisor of {n} (each image for n/b vectors)")
        tensors = list({id(t): t for t, _ in self._injection_points.values()}.values())
        values = session().run(tensors, feed_dict={self._injection_input: x})
        feed = {t: np.repeat(v, n // b, axis=0) for t, v in zip(tensors, values)}
        feed[self._injection_input] = np.repeat(x, n // b, axis=0)
        return feed

    def forward_tensor(self, layer: str):
        """The graph tensor of ``layer``'s forward output (the model input for
        ``"input"``): the tensor the reversed tensor of that layer belongs to."""
        self._ensure_graph()
        return self._injection_points[self._injection_point(layer)][0]

    def _injection_point(self, layer: str) -> str:
        """The key of ``layer`` (a Keras name, alias or ``"input"``) in the
        injection points; KeyError naming the layer if it has none."""
        name = LayerNames(self._model, self.layer_aliases).resolve(layer)
        if name not in self._injection_points:
            raise KeyError(
                f"layer {name!r} has no relevance tensor in this analyzer "
                f"({type(self).__name__}); available: {list(self._injection_points)}")
        return name

    def forward(self, x: np.ndarray, layers: Iterable[str]) -> dict:
        """Forward activations of ``layers`` for input ``x`` (one session run)."""
        keys = list(layers)
        fetches = [self.forward_tensor(k) for k in keys]
        feed = {self._injection_input: np.asarray(x, np.float32)}
        values = session().run(fetches, feed_dict=feed)
        return dict(zip(keys, values))
