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


class ArgumentError(InputError):
    """A command-line or keyword argument that makes no sense."""


class ModelChangedError(RuntimeError):
    """The weights or the file of the user's model changed during an analysis
    (a bug of the project, never the user's fault)."""


__all__ = ["InputError", "ModelFileError", "ModelFileNotFoundError", "UnsupportedLayerError",
           "ActivationError", "InputShapeError", "ImageDirectoryError",
           "ImageDirectoryNotFoundError", "ImagesFileError", "PatternsFileError",
           "ArgumentError", "ModelChangedError"]
