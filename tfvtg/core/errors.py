"""The error family. Every error tfvtg raises is a :class:`TfvtgError`, and
each also keeps the builtin parent a caller would catch without knowing
tfvtg (a bad value is still a ``ValueError``, a missing model an
``OSError``, a timeout a ``TimeoutError``).

The classes live in core (which may import nothing outside numpy, numba and
scipy) so that every layer can raise them; :mod:`tfvtg.errors` is their
public home.
"""
from __future__ import annotations

__all__ = [
    "TfvtgError", "InvalidInputError", "InvalidTypeError", "ConfigError", "EncoderMismatchError",
    "MissingFileError", "MissingExtraError", "ModelUnavailableError", "IncompatibleModelError",
    "VideoDecodeError", "DatasetError", "DecompositionError", "LLMTimeoutError", "LLMConfigurationError",
    "CacheError", "ResultsFileError", "LibraryError", "UnknownVideoError", "LibraryFormatError",
]


class TfvtgError(Exception):
    """Base of every error raised by tfvtg (and numpro)."""


class InvalidInputError(TfvtgError, ValueError):
    """A value the caller passed is out of range or malformed."""


class InvalidTypeError(TfvtgError, TypeError):
    """An argument has the wrong type."""


class ConfigError(InvalidInputError):
    """A :class:`~tfvtg.GroundingConfig` field is invalid."""


class EncoderMismatchError(InvalidInputError):
    """Features and text embeddings come from different encoders (embedding spaces)."""


class MissingFileError(TfvtgError, FileNotFoundError):
    """A file or folder the caller named does not exist."""


class MissingExtraError(TfvtgError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra."""


class ModelUnavailableError(TfvtgError, OSError):
    """Model weights cannot be loaded (offline, wrong path, no access)."""


class IncompatibleModelError(TfvtgError, ValueError):
    """A checkpoint loads but is not the kind of model the caller asked for."""


class VideoDecodeError(TfvtgError, ValueError):
    """A video file cannot be opened or decoded."""


class DatasetError(TfvtgError, ValueError):
    """An annotation file cannot be read (strict mode) or names no usable query."""


class DecompositionError(TfvtgError, RuntimeError):
    """An LLM decomposition could not be obtained."""


class LLMTimeoutError(DecompositionError, TimeoutError):
    """The LLM gave no answer within the timeout."""


class LLMConfigurationError(DecompositionError):
    """The LLM server refused the key or the model (HTTP 401/403/404): no
    retry helps, so a batch stops."""


class CacheError(TfvtgError, OSError):
    """An on-disk cache cannot be used."""


class ResultsFileError(TfvtgError, RuntimeError):
    """An evaluation results file belongs to another run or is in use."""


class LibraryError(TfvtgError, RuntimeError):
    """A video library cannot carry out the request."""


class UnknownVideoError(LibraryError, KeyError):
    """No video with that id is in the library."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class LibraryFormatError(LibraryError):
    """A library directory was written by a newer (or foreign) format version."""
