"""The conveniences: ``ground()`` and the defaults it reads from the
environment and the on-disk caches. The pure pipeline is
:class:`tfvtg.Grounder` (``tfvtg.core``); this layer only picks the encoder,
the LLM and the cache for a caller who gave none.

Environment: TFVTG_BLIP2_MODEL (encoder checkpoint), TFVTG_CACHE_DIR
(feature and LLM caches), OPENAI_API_KEY / TFVTG_LLM_BASE_URL /
TFVTG_LLM_MODEL (query decomposition).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .core.config import GroundingConfig
from .core.decomposition import Decomposition
from .core.features import VideoFeatures
from .core.grounder import Decomposer, Grounder, TextEncoder
from .core.moments import GroundingResult
from .errors import InvalidInputError, InvalidTypeError, MissingExtraError

__all__ = ["ground", "default_encoder", "features_for_video"]


@functools.lru_cache(maxsize=1)
def default_encoder() -> Any:
    """The process-wide default encoder (``load_encoder(None)``: BLIP-2
    "blip2-coco", or TFVTG_BLIP2_MODEL), loaded once, on first use."""
    from .encoders import load_encoder

    return load_encoder(None)


def features_for_video(path: str | os.PathLike[str], encoder: Any = None, fps: float = 3.0,
                       cache: bool | str | os.PathLike[str] = True) -> VideoFeatures:
    """Features of a video file (sampled at ``fps`` frames per second),
    extracted once and then read from the cache.

    The cache key is the file's content identity (size, modification time and
    a hash of its first and last MiB), the encoder's name and ``fps``; a
    changed file is extracted again. ``cache`` is True (TFVTG_CACHE_DIR/features
    or ~/.cache/tfvtg/features), a directory, or False. A damaged entry is
    extracted again; an unusable cache directory is bypassed with a warning.
    """
    from .cache import FeatureCache

    encoder = encoder or default_encoder()
    if not callable(getattr(encoder, "encode_video", None)):
        raise InvalidTypeError(
            f"{type(encoder).__name__} cannot encode videos (no encode_video method); "
            "pass an encoder such as tfvtg.Blip2Encoder, or features you extracted")
    if not cache:
        return encoder.encode_video(path, fps=fps)
    store = FeatureCache(None if cache is True else cache)
    return store.fetch(path, encoder, fps)


def ground(video: VideoFeatures | str | os.PathLike[str], query: str, *,
           text_encoder: TextEncoder | None = None,
           config: GroundingConfig | str | None = None,
           decomposition: Decomposition | Mapping[str, Any] | None = None,
           decomposer: Decomposer | None = None,
           fps: float = 3.0,
           use_llm: bool = True,
           mllm: Any = None) -> GroundingResult:
    """One call from a video (file path or :class:`VideoFeatures`) and a
    sentence to ranked moments in seconds.

    A video path is decoded at ``fps`` frames per second and encoded with
    the default encoder (BLIP-2; cached on disk, keyed by the file's content,
    the model and ``fps``); ``text_encoder`` defaults to that same encoder.
    ``config`` is a :class:`GroundingConfig` or a preset name (default
    "default"). Without a decomposition or decomposer, an LLM configured
    through the environment (OPENAI_API_KEY or TFVTG_LLM_BASE_URL) decomposes
    the query unless ``use_llm=False``; with none, or when the LLM fails,
    grounding is VLM-only (``result.decomposition.fallback`` tells).

    ``mllm`` (a model name or directory, or an MLLM object) lets a video
    MLLM choose among the top proposals (numpro's reranker, found through
    the ``tfvtg.rerankers`` entry point "mllm"; one MLLM call; the scorer's
    ranking stands when its answer is unusable). It needs the video file.
    """
    reranker = None
    if mllm is not None:
        if not isinstance(video, (str, os.PathLike)):
            raise InvalidInputError("mllm= shows the MLLM the video's frames: pass the video file, not its features")
        reranker = _mllm_reranker()
    if isinstance(video, (str, os.PathLike)):
        encoder = default_encoder() if text_encoder is None else text_encoder
        features = features_for_video(Path(video), encoder=encoder, fps=fps)
        text_encoder = encoder
    elif isinstance(video, VideoFeatures):
        features = video
        if text_encoder is None:
            text_encoder = default_encoder()
    else:
        raise InvalidTypeError(
            f"video must be a path to a video file or a VideoFeatures, got {type(video).__name__}")
    if decomposition is None and decomposer is None and use_llm:
        from .llm import default_decomposer

        decomposer = default_decomposer()  # None, with a one-line notice, when no LLM is configured
    result = Grounder(text_encoder, config, decomposer).ground(features, query, decomposition)
    if reranker is not None:
        result = reranker(result, video, query, mllm)
    return result


def _mllm_reranker() -> Any:
    """numpro's MLLM reranker, found through its entry point (tfvtg never
    imports numpro)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="tfvtg.rerankers") if ep.name == "mllm"]
    if not found:
        raise MissingExtraError(
            "mllm= needs numpro's MLLM reranker (entry point 'mllm' in group 'tfvtg.rerankers'), which is not "
            "installed: install tfvtg with its vision extra (pip install \"tfvtg[vision,llm]\"; numpro ships "
            "with it), or reinstall it so that its entry points are registered", name="numpro")
    return found[0].load()
