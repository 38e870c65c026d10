"""tfvtg: training-free video temporal grounding.

A video and a sentence go in; the moment it describes (start and end, in
seconds) comes out. The package, one folder per concern, arrows pointing
down::

    api (ground, defaults from the environment and caches)
      -> encoders (Encoder protocol, registry, BLIP-2), video (decoding),
         llm (query decomposition), eval (datasets, runner, metrics), viz
      -> core (features -> similarity -> proposals -> combination -> moments;
         numpy and numba only)

Quick start::

    from tfvtg import ground
    moment = ground("clip.mp4", "a person opens the door").best

Heavy parts (torch, transformers, openai, matplotlib) load only when used, so
``import tfvtg`` is fast and the scoring core needs numpy and numba alone.
Every error tfvtg raises is a :class:`TfvtgError`.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .core import hooks as _hooks
from .core.errors import (
    CacheError,
    ConfigError,
    DatasetError,
    DecompositionError,
    EncoderMismatchError,
    IncompatibleModelError,
    InvalidInputError,
    InvalidTypeError,
    LibraryError,
    LibraryFormatError,
    LLMConfigurationError,
    LLMTimeoutError,
    MissingExtraError,
    MissingFileError,
    ModelUnavailableError,
    ResultsFileError,
    TfvtgError,
    UnknownVideoError,
    VideoDecodeError,
)

__version__ = "0.2.0"

# public name -> module that defines it (imported on first access). No module
# here shares a public name, so importing one never shadows a function.
_EXPORTS = {
    "GroundingConfig": "core.config",
    "PRESETS": "core.config",
    "VideoFeatures": "core.features",
    "Moment": "core.moments",
    "GroundingResult": "core.moments",
    "Decomposition": "core.decomposition",
    "Grounder": "core.grounder",
    "similarity_curves": "core.similarity",
    "ground": "api",
    "features_for_video": "api",
    "Encoder": "encoders",
    "list_encoders": "encoders",
    "load_encoder": "encoders",
    "register_encoder": "encoders",
    "pick_device": "encoders",
    "Blip2Encoder": "encoders.blip2",
    "sample_frame_indices": "video",
    "read_frames": "video",
    "OpenAIDecomposer": "llm",
    "LLMUnreachableError": "llm.openai_setup",
    "evaluate": "eval",
    "Metrics": "eval",
    "Library": "library",
    "Hit": "library",
}
__all__ = [
    # the pipeline and its data
    "GroundingConfig", "PRESETS", "VideoFeatures", "Moment", "GroundingResult", "Decomposition", "Grounder",
    "similarity_curves", "ground", "features_for_video",
    # encoders, video, LLM, evaluation
    "Encoder", "list_encoders", "load_encoder", "register_encoder", "pick_device", "Blip2Encoder",
    "sample_frame_indices", "read_frames", "OpenAIDecomposer", "evaluate", "Metrics",
    # the searchable video library
    "Library", "Hit",
    # errors
    "TfvtgError", "InvalidInputError", "InvalidTypeError", "ConfigError", "EncoderMismatchError",
    "MissingFileError", "MissingExtraError", "ModelUnavailableError", "IncompatibleModelError",
    "VideoDecodeError", "DatasetError", "DecompositionError", "LLMTimeoutError", "LLMConfigurationError",
    "LLMUnreachableError", "CacheError", "ResultsFileError", "LibraryError", "UnknownVideoError", "LibraryFormatError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _EXPORTS.get(name)
    if home is None:
        raise AttributeError(f"module 'tfvtg' has no attribute {name!r}")
    value = getattr(import_module(f"tfvtg.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


# Core declares file I/O and plotting but must not implement them (it may
# not touch the disk or import matplotlib): wire them in, imported on use.
def _save_features(*args: Any, **kwargs: Any) -> Any:
    return import_module("tfvtg.io").save_features(*args, **kwargs)


def _load_features(*args: Any, **kwargs: Any) -> Any:
    return import_module("tfvtg.io").load_features(*args, **kwargs)


def _plot_result(*args: Any, **kwargs: Any) -> Any:
    return import_module("tfvtg.viz").plot_result(*args, **kwargs)


def _torch_op(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module("tfvtg.torch_ops"), name)(*args, **kwargs)
    return call


_hooks.provide("save_features", _save_features)
_hooks.provide("torch_normalise", _torch_op("normalise"))
_hooks.provide("torch_keep", _torch_op("keep"))
_hooks.provide("torch_curves", _torch_op("curves"))
_hooks.provide("load_features", _load_features)
_hooks.provide("plot_result", _plot_result)


if TYPE_CHECKING:  # pragma: no cover
    from .api import features_for_video, ground
    from .core.config import PRESETS, GroundingConfig
    from .core.decomposition import Decomposition
    from .core.features import VideoFeatures
    from .core.grounder import Grounder
    from .core.moments import GroundingResult, Moment
    from .core.similarity import similarity_curves
    from .encoders import Encoder, list_encoders, load_encoder, pick_device, register_encoder
    from .encoders.blip2 import Blip2Encoder
    from .eval import Metrics, evaluate
    from .library import Hit, Library
    from .llm import OpenAIDecomposer
    from .llm.openai_setup import LLMUnreachableError
    from .video import read_frames, sample_frame_indices
