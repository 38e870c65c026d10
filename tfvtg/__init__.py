"""tfvtg: training-free video temporal grounding.

A video and a sentence go in; the moment it describes (start and end, in
seconds) comes out. Pipeline, one module per stage::

    video (tfvtg.video) -> features (tfvtg.features, tfvtg.encoder)
      -> similarity curve (tfvtg.similarity) -> proposals (tfvtg.proposals)
      -> combination (tfvtg.combination) -> moments (tfvtg.moments)

Quick start::

    from tfvtg import ground
    moment = ground("clip.mp4", "a person opens the door").best

Heavy parts (torch, transformers, openai, matplotlib) load only when used, so
``import tfvtg`` is fast and the scoring core needs numpy and numba alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_EXPORTS = {
    "GroundingConfig": "config",
    "PRESETS": "config",
    "VideoFeatures": "features",
    "Moment": "moments",
    "GroundingResult": "moments",
    "Decomposition": "decomposition",
    "Grounder": "grounder",
    "ground": "grounder",
    "similarity_curves": "similarity",
    "Blip2Encoder": "encoder",
    "sample_frame_indices": "video",
    "read_frames": "video",
    "OpenAIDecomposer": "llm",
    "evaluate": "evaluation",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover
    from .config import PRESETS, GroundingConfig
    from .decomposition import Decomposition
    from .encoder import Blip2Encoder
    from .evaluation import evaluate
    from .features import VideoFeatures
    from .grounder import Grounder, ground
    from .llm import OpenAIDecomposer
    from .moments import GroundingResult, Moment
    from .similarity import similarity_curves
    from .video import read_frames, sample_frame_indices
