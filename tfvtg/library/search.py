"""Search results and the fine stage of a library search.

The fine stage is TFVTG's grounding (:class:`tfvtg.Grounder`, with its config
and decomposition) run on each candidate video the coarse index picked.
TFVTG's confidence is the proposal score divided by the video's best one: 1
for the best moment of every video, so it cannot rank moments of different
videos. Hits are merged by a score on the encoder's own cosine scale instead:

    Hit.score = mean over the moment's feature frames of the query's
                similarity curve (per frame, the best cosine similarity
                between the query and any of the frame's Q tokens)

It is the same quantity in every video (BLIP-2: background frames below
about 0.2, a clear match 0.3-0.45), needs no calibration, and is what the
coarse index bounds from below. TFVTG's own confidence stays in
``Hit.confidence``; within a video, TFVTG's ranking picks which moments are
hits, and ``Hit.score`` orders them across videos.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.decomposition import Decomposition
from ..core.features import VideoFeatures
from ..core.grounder import Grounder
from ..core.moments import GroundingResult
from ..errors import DecompositionError, InvalidTypeError

__all__ = ["Hit", "Hits", "moment_similarity", "CachedTextEncoder", "hits_from_result", "decompose_once"]


@dataclass(frozen=True)
class Hit:
    """One moment found by :meth:`tfvtg.Library.search`.

    Attributes:
        video: the video's id in the library.
        start, end: the moment, in seconds from the start of the video.
        score: the cross-video score (mean query-frame cosine similarity over
            the moment; see :mod:`tfvtg.library.search`). Higher is better.
        source: the video file, if the library knows it.
        confidence: TFVTG's confidence of the moment within its video (1 for
            the video's best moment).
        rank: the moment's rank in its video's TFVTG ranking (0 = best).
    """

    video: str
    start: float
    end: float
    score: float
    source: str | None = None
    confidence: float = 1.0
    rank: int = 0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "start": self.start, "end": self.end, "score": self.score,
                "source": self.source, "confidence": self.confidence, "rank": self.rank}


class Hits(list):
    """The hits of one search, best first (a ``list`` of :class:`Hit`).

    ``note`` says why the list is short or empty (e.g. an empty library),
    else None. ``candidates`` is how many videos the fine stage grounded;
    ``timings`` the milliseconds spent embedding the query, in the coarse
    stage and in the fine stage.
    """

    note: str | None = None
    candidates: int = 0
    timings: dict[str, float] = {}  # noqa: RUF012 (replaced per instance)


def moment_similarity(curve: np.ndarray, start_frame: float, end_frame: float) -> float:
    """Mean of ``curve`` over the frames [floor(start), ceil(end)) (at least one frame)."""
    t = curve.shape[0]
    a = min(max(int(math.floor(start_frame)), 0), t - 1)
    b = min(max(int(math.ceil(end_frame)), a + 1), t)
    return float(np.mean(curve[a:b], dtype=np.float64))


def hits_from_result(video: str, result: GroundingResult, features: VideoFeatures, source: str | None,
                     per_video: int, offset_seconds: float = 0.0) -> list[Hit]:
    """The ``per_video`` best of a video's moments by cross-video score."""
    curve = result.curve
    if curve is None or not result.moments:
        return []
    frames_per_second = features.num_frames / features.duration
    hits = []
    seen: set[tuple[float, float]] = set()
    for rank, m in enumerate(result.moments):
        if not m.end > m.start:  # the reference's empty "no proposal" spans
            continue
        if (m.start, m.end) in seen:  # voting with a decomposition can rank one span twice
            continue
        seen.add((m.start, m.end))
        score = moment_similarity(curve, m.start * frames_per_second, m.end * frames_per_second)
        confidence = float(m.score) if math.isfinite(m.score) else 0.0
        hits.append(Hit(video, offset_seconds + float(m.start), offset_seconds + float(m.end), score, source,
                        confidence, rank))
    hits.sort(key=lambda h: (-h.score, h.rank))
    return hits[:per_video]


class CachedTextEncoder:
    """Wraps a text encoder so that each sentence is embedded once per search
    (the fine stage grounds the same query in every candidate)."""

    def __init__(self, encoder: Any):
        if not callable(getattr(encoder, "encode_text", None)):
            raise InvalidTypeError(
                f"{type(encoder).__name__} cannot embed text (no encode_text method); pass an encoder such as "
                "tfvtg.Blip2Encoder or a registry name")
        self.encoder = encoder
        self._cache: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:  # space, mask_threshold, name...
        return getattr(self.encoder, name)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            emb = np.asarray(self.encoder.encode_text(list(missing)), dtype=np.float32)
            if emb.ndim == 1:
                emb = emb[None, :]
            for text, row in zip(missing, emb):
                self._cache[text] = row
        return np.stack([self._cache[t] for t in texts])

    def unit(self, text: str) -> np.ndarray:
        """The L2-normalised (D,) embedding of one sentence."""
        v = self.encode_text([text])[0].astype(np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)


def decompose_once(grounder: Grounder, query: str) -> Decomposition | None:
    """The query's decomposition from the grounder's decomposer (once per
    search, not once per candidate video); the query alone when the LLM fails."""
    if grounder.decomposer is None:
        return None
    try:
        return grounder.decomposer.decompose(query)
    except DecompositionError as exc:
        warnings.warn(f"the LLM could not decompose the query ({exc}); searching with the query alone",
                      RuntimeWarning, stacklevel=3)
        return Decomposition.single(query, fallback=True)
