"""save / load for the analyzer table's classes.

innvestigate's ``AnalyzerBase.load(class_name, state)`` looks the class up in
``innvestigate.analyzer``, so a saved project analyzer would come back as
innvestigate's plain class. :func:`load_analyzer` looks it up in
:data:`csc_analyzers.analyzers` first; every class of the table has it as
``load`` (and :func:`load_analyzer_npz` as ``load_npz``).

:class:`SavedStateMixin` (put first in the bases by
:func:`csc_analyzers.factory.compose`) completes the state where innvestigate
2.1.2 leaves out a constructor argument (the presets' ``epsilon``, say): it
keeps every keyword argument given to the constructor that the saved state
does not hold, and gives it back on load. ``save_npz`` stores rule classes
and functions defined inside a function (innvestigate's parameter-binding
proxy rules, which numpy cannot pickle) as None where the class rebuilds
them from its own parameters on load, and raises a ValueError naming them
otherwise.
"""
from __future__ import annotations

import numpy as np

_EXTRA = "csc_constructor_kwargs"
#: state keys a class rebuilds from its own parameters (never read on load)
_REBUILT_RULES = ("rule", "bn_layer_rule")


def _saved_class(class_name: str):
    """The table's class called ``class_name`` with the input checks
    ``create_analyzer`` adds, else innvestigate's."""
    import innvestigate.analyzer as ianalyzer

    from .factory import analyzers

    from .model_input import with_input_checks

    for name, cls in analyzers.items():
        if getattr(cls, "__name__", None) == class_name:
            return with_input_checks(cls, name)  # the class create_analyzer gives
    try:
        return getattr(ianalyzer, class_name)
    except AttributeError:
        raise KeyError(f"no analyzer class named {class_name!r} in csc_analyzers.analyzers "
                       "or innvestigate.analyzer") from None


def load_analyzer(class_name: str, state: dict):
    """The analyzer saved as ``(class_name, state)`` by ``analyzer.save()``, as
    an instance of the analyzer table's class of that name (it keeps
    ``propagate`` and the project's rules and options)."""
    cls = _saved_class(class_name)
    return cls(**cls._state_to_kwargs(dict(state)))


def load_analyzer_npz(fname):
    """:func:`load_analyzer` from a file written by ``analyzer.save_npz(fname)``."""
    with np.load(fname, allow_pickle=True) as npz_file:
        class_name = npz_file["class_name"].item()
        state = npz_file["state"].item()
    return load_analyzer(class_name, state)


def _is_local(value) -> bool:
    return callable(value) and "<locals>" in getattr(value, "__qualname__", "")


def _has_local(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_local(v) for v in value)
    return _is_local(value)


def _rebuilds_rules(cls) -> bool:
    """True if ``cls`` builds its rules from its own parameters on load
    (innvestigate's fixed-parameter LRP classes, the project's LRP classes
    with a fixed rule)."""
    from innvestigate.analyzer.relevance_based.relevance_analyzer import (
        LRPAlphaBeta, _LRPFixedParams)

    from .methods.contrastive import ContrastiveLRP
    from .methods.excitation import ExcitationBackprop

    return issubclass(cls, (_LRPFixedParams, LRPAlphaBeta, ContrastiveLRP, ExcitationBackprop))


class SavedStateMixin:
    """Complete save / load state (see the module docstring)."""

    load = staticmethod(load_analyzer)
    load_npz = staticmethod(load_analyzer_npz)

    def __init__(self, model, *args, **kwargs):
        self._constructor_kwargs = dict(kwargs)
        super().__init__(model, *args, **kwargs)

    def _get_state(self):
        state = super()._get_state()
        state[_EXTRA] = {key: value for key, value in self._constructor_kwargs.items()
                         if key not in state}
        return state

    @classmethod
    def _state_to_kwargs(cls, state):
        extra = state.pop(_EXTRA, {})
        kwargs = super()._state_to_kwargs(state)
        if issubclass(cls, _project_fixed_rule_classes()):
            for key in _REBUILT_RULES:
                kwargs.pop(key, None)
        kwargs.update(extra)
        return kwargs

    def save_npz(self, fname) -> None:
        """innvestigate's ``save_npz`` (read it back with ``load_npz``)."""
        class_name, state = self.save()
        local = [key for key, value in state.items() if _has_local(value)]
        if local and _rebuilds_rules(type(self)) and set(local) <= set(_REBUILT_RULES):
            state.update({key: None for key in local})
        elif local:
            raise ValueError(
                f"{class_name}.save_npz: state entries {local} hold classes or functions "
                "defined inside a function, which numpy cannot store; define them at "
                "module level, or keep the state of save() in memory")
        np.savez(fname, class_name=class_name, state=state)


def _project_fixed_rule_classes() -> tuple:
    from .methods.contrastive import ContrastiveLRP
    from .methods.excitation import ExcitationBackprop

    return (ContrastiveLRP, ExcitationBackprop)


__all__ = ["SavedStateMixin", "load_analyzer", "load_analyzer_npz"]
