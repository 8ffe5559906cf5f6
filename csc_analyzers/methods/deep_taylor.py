"""Deep Taylor decomposition that explains negative logits too.

innvestigate 2.1.2's ``DeepTaylor`` and ``BoundedDeepTaylor`` put a ReLU on
the model output before the backward pass (``_prepare_model``), so the
relevance starts at ``relu(f_k(x))``: a negative logit gives an all-zero map.
The paper's code removed that ReLU (Sixt et al. 2020, repository
``berleon/when-explanations-lie``, ``monkey_patch_lrp_resnet.py``) so that DTD
explains every logit. :class:`SignedDeepTaylor` and
:class:`SignedBoundedDeepTaylor` do the same by overriding ``_prepare_model``.

What this gives: the backward pass starts at the logit value ``f_k(x)``
itself. Every Deep Taylor rule (z+ on ReLU layers, z^B on the first layer,
the gradient through max pooling) is linear in the incoming relevance once
``x`` is fixed, so for a negative logit the map is ``f_k(x) / |f_k(x)|``
times the map started from ``|f_k(x)|``: the same pattern with the logit's
sign, and it sums to a value of the logit's sign. For a positive logit the
map is unchanged. ``relu_output=True`` restores innvestigate's behaviour.
"""
from __future__ import annotations

from residual_support import _tf  # noqa: F401  (graph mode first)

from innvestigate.analyzer.deeptaylor import BoundedDeepTaylor, DeepTaylor


class SignedOutputMixin:
    """Starts Deep Taylor's backward pass at the logit, not at ``relu(logit)``.

    Goes before an innvestigate ``DeepTaylor`` class in the bases.
    ``relu_output=True`` keeps innvestigate's ReLU on the output (a negative
    logit then gives an all-zero map)."""

    def __init__(self, model, *args, relu_output: bool = False, **kwargs):
        if not isinstance(self, DeepTaylor):
            raise TypeError(f"{type(self).__name__}: SignedOutputMixin needs an "
                            "innvestigate DeepTaylor class after it in the bases")
        self._relu_output = bool(relu_output)
        super().__init__(model, *args, **kwargs)

    def _prepare_model(self, model):
        """innvestigate's neuron selection on ``model``; DeepTaylor's ReLU on
        the output only with ``relu_output=True``."""
        if self._relu_output:
            return super()._prepare_model(model)
        return super(DeepTaylor, self)._prepare_model(model)

    def _get_state(self):
        state = super()._get_state()
        state["relu_output"] = self._relu_output
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        relu_output = state.pop("relu_output")
        kwargs = super()._state_to_kwargs(state)
        kwargs["relu_output"] = relu_output
        return kwargs


class SignedDeepTaylor(SignedOutputMixin, DeepTaylor):
    """innvestigate's ``DeepTaylor`` (z+ everywhere) without the ReLU on the
    output: the map of a negative logit is negative (see the module docstring)."""


class SignedBoundedDeepTaylor(SignedOutputMixin, BoundedDeepTaylor):
    """innvestigate's ``BoundedDeepTaylor`` (z^B on the first layer with
    bounds ``low``, ``high``; z+ above) without the ReLU on the output: the map
    of a negative logit is negative (see the module docstring)."""


__all__ = ["SignedOutputMixin", "SignedDeepTaylor", "SignedBoundedDeepTaylor"]
