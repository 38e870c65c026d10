"""The grounding pipeline: features + sentence -> ranked moments in seconds."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from .combination import combine_sub_events, interleave, vote
from .config import GroundingConfig
from .decomposition import Decomposition
from .features import VideoFeatures
from .moments import GroundingResult, Moment
from .proposals import Proposals, propose
from .similarity import similarity_curves

__all__ = ["Grounder", "ground", "TextEncoder", "proposal_rows"]


class TextEncoder(Protocol):
    """Anything that embeds sentences into the frame features' space."""

    def encode_text(self, texts: list[str]) -> Any:  # (n, D)
        ...


class Decomposer(Protocol):
    def decompose(self, query: str) -> Decomposition:
        ...


def _resolve_config(config: GroundingConfig | str | None) -> GroundingConfig:
    if config is None:
        return GroundingConfig.preset("default")
    if isinstance(config, str):
        return GroundingConfig.preset(config)
    if not isinstance(config, GroundingConfig):
        raise TypeError(f"config must be a GroundingConfig or a preset name, got {type(config).__name__}")
    return config


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"the query must be a non-empty sentence, got {query!r}")
    return query


class Grounder:
    """Grounds sentences in videos whose frame features are already extracted.

    Args:
        text_encoder: object with ``encode_text(list[str]) -> (n, D)``, in the
            same space as the frame features (e.g. :class:`tfvtg.Blip2Encoder`).
        config: a :class:`GroundingConfig` or a preset name ("charades",
            "activitynet", "qvhighlights", "default"); default "default".
        decomposer: optional object with ``decompose(query) -> Decomposition``
            (e.g. :class:`tfvtg.OpenAIDecomposer`); used when ``ground`` gets
            no decomposition.
    """

    def __init__(self, text_encoder: TextEncoder, config: GroundingConfig | str | None = None,
                 decomposer: Decomposer | None = None):
        if not callable(getattr(text_encoder, "encode_text", None)):
            raise TypeError("text_encoder needs an encode_text(list[str]) -> (n, D) method")
        self.text_encoder = text_encoder
        self.config = _resolve_config(config)
        self.decomposer = decomposer

    # -- public -----------------------------------------------------------
    def ground(self, features: VideoFeatures, query: str,
               decomposition: Decomposition | Mapping[str, Any] | None = None) -> GroundingResult:
        """Find the moment ``query`` describes.

        Args:
            features: the video's frame features.
            query: the sentence to ground.
            decomposition: a :class:`Decomposition` or a dict in TFVTG's
                published LLM-output format; when None and a decomposer was
                given, the query is decomposed first; otherwise VLM only.

        Returns:
            A :class:`GroundingResult` with moments in seconds, best first.
        """
        _check_features(features)
        query = _check_query(query)
        if decomposition is None and self.decomposer is not None:
            decomposition = self.decomposer.decompose(query)
        if decomposition is None:
            return self._ground_vlm(features, [query])[0]
        if not isinstance(decomposition, Decomposition):
            decomposition = Decomposition.from_tfvtg(decomposition)
        return self._ground_decomposed(features, query, decomposition)

    def ground_many(self, features: VideoFeatures, queries: Sequence[str],
                    decompositions: Sequence[Decomposition | Mapping[str, Any] | None] | None = None
                    ) -> list[GroundingResult]:
        """Ground several sentences in one video.

        Text is encoded in one batch and the frame tokens are reused, so this
        is much faster than calling :meth:`ground` in a loop.
        """
        _check_features(features)
        queries = [_check_query(q) for q in queries]
        if decompositions is None and self.decomposer is None:
            return self._ground_vlm(features, queries)
        if decompositions is None:
            decompositions = [None] * len(queries)
        if len(decompositions) != len(queries):
            raise ValueError(f"got {len(decompositions)} decompositions for {len(queries)} queries")
        return [self.ground(features, q, d) for q, d in zip(queries, decompositions)]

    # -- internals --------------------------------------------------------
    def _curves(self, features: VideoFeatures, texts: list[str]) -> np.ndarray:
        embeddings = self.text_encoder.encode_text(list(texts))
        curves = similarity_curves(features, embeddings)
        if curves.shape[0] != len(texts):
            raise ValueError(f"the text encoder returned {curves.shape[0]} embeddings for {len(texts)} texts")
        return curves

    def _ground_vlm(self, features: VideoFeatures, queries: list[str]) -> list[GroundingResult]:
        curves = self._curves(features, queries)
        results = []
        for query, curve in zip(queries, curves):
            rows = proposal_rows(propose(curve, self.config), features.duration, self.config.nan_safe)
            results.append(GroundingResult(query=query, moments=_moments(rows), duration=features.duration,
                                           curve=curve, config=self.config))
        return results

    def _ground_decomposed(self, features: VideoFeatures, query: str, dec: Decomposition) -> GroundingResult:
        cfg = self.config
        # every description is localised on its own, as the reference does
        query_texts = [query, *dec.query_descriptions]
        event_texts = [list(ev) for ev in dec.sub_events]
        all_texts = query_texts + [t for ev in event_texts for t in ev]
        unique = list(dict.fromkeys(all_texts))
        curves = self._curves(features, unique)
        rows_of = {text: proposal_rows(propose(curve, cfg), features.duration, cfg.nan_safe)
                   for text, curve in zip(unique, curves)}

        depth = cfg.description_candidates
        sub_candidates = []
        sub_curves = []
        for texts in event_texts:
            merged = interleave([rows_of[t] for t in texts], depth)
            sub_candidates.append(vote(merged, cfg.vote_gamma)[: cfg.sub_event_top_k])
            sub_curves.append(curves[[unique.index(t) for t in texts]].mean(axis=0))
        integrated = combine_sub_events(sub_candidates, dec.relationship, integration=cfg.integration,
                                        gamma=cfg.vote_gamma, keep=cfg.integrated_candidates)
        query_rows = interleave([rows_of[t] for t in query_texts], depth)[: cfg.query_candidates]
        final = vote(np.concatenate([query_rows, integrated]), cfg.vote_gamma)
        return GroundingResult(
            query=query,
            moments=_moments(final),
            duration=features.duration,
            curve=curves[0],
            decomposition=dec,
            sub_event_moments=[_moments(c) for c in sub_candidates],
            sub_event_curves=sub_curves,
            config=cfg,
        )


def proposal_rows(proposals: Proposals, duration: float, nan_safe: bool = False) -> np.ndarray:
    """(k, 3) ``[start, end, confidence]`` rows in seconds for one curve's
    proposals (frame f maps to ``f / T * duration`` seconds).

    With no proposal at all (no frame above the mask threshold), the
    reference answers three empty spans at 0 s with confidence 1; the
    nan-safe mode answers the whole video with confidence 0 instead.
    """
    if len(proposals) == 0:
        if nan_safe:
            return np.array([[0.0, duration, 0.0]])
        return np.array([[0.0, 0.0, 1.0]] * 3)
    t = proposals.num_frames
    rows = np.empty((len(proposals), 3))
    rows[:, 0] = proposals.start * (duration / t)
    rows[:, 1] = proposals.end * (duration / t)
    rows[:, 2] = proposals.confidence()
    return rows


def _moments(rows: np.ndarray) -> list[Moment]:
    return [Moment._make(r) for r in rows.tolist()]


def _check_features(features: Any) -> None:
    if not isinstance(features, VideoFeatures):
        raise TypeError(
            f"features must be a VideoFeatures, got {type(features).__name__}; "
            "wrap an array with VideoFeatures(array, duration=seconds)"
        )


def ground(video: VideoFeatures | str | os.PathLike[str], query: str, *,
           text_encoder: TextEncoder | None = None,
           config: GroundingConfig | str | None = None,
           decomposition: Decomposition | Mapping[str, Any] | None = None,
           decomposer: Decomposer | None = None,
           fps: float = 3.0) -> GroundingResult:
    """One call from a video (file path or :class:`VideoFeatures`) and a
    sentence to ranked moments in seconds.

    A video path is decoded and encoded with the default BLIP-2 encoder
    (cached on disk, keyed by the file's content, the model and ``fps``);
    ``text_encoder`` defaults to that same encoder. ``config`` is a
    :class:`GroundingConfig` or a preset name (default "default"). Without a
    decomposition or decomposer, an LLM configured through the environment
    (OPENAI_API_KEY or TFVTG_LLM_BASE_URL) decomposes the query; with none,
    grounding is VLM-only.
    """
    if isinstance(video, (str, os.PathLike)):
        from .encoder import default_encoder, features_for_video

        encoder = default_encoder() if text_encoder is None else text_encoder
        features = features_for_video(Path(video), encoder=encoder, fps=fps)
        text_encoder = encoder
    elif isinstance(video, VideoFeatures):
        features = video
        if text_encoder is None:
            from .encoder import default_encoder

            text_encoder = default_encoder()
    else:
        raise TypeError(
            f"video must be a path to a video file or a VideoFeatures, got {type(video).__name__}"
        )
    if decomposition is None and decomposer is None:
        from .llm import default_decomposer

        decomposer = default_decomposer()  # None, with a one-line notice, when no LLM is configured
    return Grounder(text_encoder, config, decomposer).ground(features, query, decomposition)
