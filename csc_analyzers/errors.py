"""The project's error classes for bad input.

Every error a user can fix by changing a file, a model or a command-line
argument is an :class:`InputError` (a ``ValueError``). Its message names the
culprit (file, layer or argument) and says what to do. The command-line
scripts print it as one line and exit with status 2, without a traceback.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input that the user can fix; the message names the culprit."""


class ModelFileError(InputError):
    """A model file or SavedModel directory that is missing or cannot be loaded."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model path that does not exist."""


class UnsupportedLayerError(InputError):
    """A layer (or a layer option) that a method cannot handle."""


class ActivationError(InputError):
    """A non-ReLU activation in a model given to a method defined for ReLU networks."""


class InputShapeError(InputError):
    """Images whose shape the model cannot take."""


class ImageDirectoryError(InputError):
    """An image directory that is missing, unreadable, empty or wrongly laid out."""


class ImageDirectoryNotFoundError(ImageDirectoryError, FileNotFoundError):
    """An image directory that does not exist."""


class ImagesFileError(InputError):
    """An image array file (.npz / .npy) that is missing, unreadable or malformed."""


class PatternsFileError(InputError):
    """A patterns file that is missing, unreadable, or made for another model."""


class EagerModelError(InputError):
    """A model built or loaded in eager mode, before ``import csc_analyzers``
    switched TensorFlow to graph mode, that cannot be copied into the graph."""


class EmptyBatchError(InputError):
    """An input batch with no image."""


class NonFiniteInputError(InputError):
    """An input array holding NaN or Inf values."""


class NeuronSelectionError(InputError):
    """A ``neuron_selection`` that names no output of the model."""


class ArgumentError(InputError):
    """A command-line or keyword argument that makes no sense."""


class RelevanceExplosionWarning(UserWarning):
    """Relevance that grew far beyond the logit it explains (e.g. LRP alpha5-beta4
    through many layers): the map is finite but its values mean little."""


class ModelChangedError(RuntimeError):
    """The weights or the file of the user's model changed during an analysis
    (a bug of the project, never the user's fault)."""


__all__ = ["InputError", "ModelFileError", "ModelFileNotFoundError", "UnsupportedLayerError",
           "ActivationError", "InputShapeError", "ImageDirectoryError",
           "ImageDirectoryNotFoundError", "ImagesFileError", "PatternsFileError",
           "ArgumentError", "ModelChangedError", "EagerModelError", "EmptyBatchError",
           "NonFiniteInputError", "NeuronSelectionError", "RelevanceExplosionWarning"]
