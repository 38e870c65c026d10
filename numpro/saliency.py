"""Highlight detection with a video MLLM: per-clip saliency (QVHighlights
scores 2-second clips) from one question.

One frame per clip (``fps = 1 / clip``) is numbered and shown; the model
lists the frames that show the query with a score from 1 to 4 (unlisted
frames score 0). A clip's saliency is the best score among its frames; a
clip without a frame of its own takes its nearest frame's. When the reply
holds no scores but a frame span ("From Frame x to Frame y"), the span's
frames score 1 and the others 0; when it holds neither, every clip scores 0
and ``error`` says why.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfvtg.errors import InvalidInputError

from .errors import MLLMConfigurationError
from .grounding import _CALL_ERRORS, NumProSettings, _base_settings, _color_name, _present
from .mllm import MLLM
from .parse import parse_answer
from .prompt import clean_query
from .source import as_video

__all__ = ["highlights", "Highlights", "HighlightPrompt", "parse_scores", "clip_scores"]


@dataclass(frozen=True)
class HighlightPrompt:
    """The highlight question; ``{query}``, ``{color}``, ``{position}``,
    ``{scale}`` are filled in; ``frames_intro`` / ``grid_intro`` say what the
    numbers are in each layout."""

    frames_intro: str = ("Every frame of this video has its frame number painted in {color} in the {position} "
                         "corner.")
    grid_intro: str = ("The images are grids of consecutive video frames, read left to right and top to bottom; "
                       "under each frame is its frame number and its time in seconds.")
    question: str = ("Which frames show {query}? List only those frames, each with a score from 1 (barely) to "
                     "{scale} (clearly), one per line in this format: 'Frame k: score'.")
    version: str = "numpro-highlights-1"

    @property
    def label(self) -> str:
        return self.version

    def render(self, query: str, color: str = "red", position: str = "bottom_right", layout: str = "frames",
               scale: int = 4) -> str:
        q = clean_query(query)
        intro = self.grid_intro if layout == "grid" else self.frames_intro.format(
            color=color, position=position.replace("_", " "))
        return " ".join([intro, self.question.format(query=q, scale=scale)])


HIGHLIGHT_PROMPT = HighlightPrompt()


@dataclass
class Highlights:
    """Per-clip saliency of one query.

    Attributes:
        query: the sentence.
        scores: (n_clips,) saliency of each clip (0 to ``scale``), clip c
            covering [c * clip, (c + 1) * clip) seconds.
        clip: clip length in seconds.
        frame_scores: (n,) score of each numbered frame.
        times: (n,) seconds of each numbered frame.
        raw: the model's reply ("" when it was not reached).
        error: why the scores are all 0 or come from a span only, if so.
        settings: what decided the answer (as :class:`numpro.NumProResult`).
    """

    query: str
    scores: np.ndarray
    clip: float
    frame_scores: np.ndarray
    times: np.ndarray
    raw: str = ""
    error: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 1) -> list[int]:
        """Indices of the k best clips, best first (ties: earlier first)."""
        return [int(i) for i in np.argsort(-self.scores, kind="stable")[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "clip": self.clip, "scores": [float(x) for x in self.scores],
                "answer": self.raw, "error": self.error, "settings": self.settings}


_PAIR = re.compile(r"(?:frames?\s*#?\s*)?\b(\d+)\s*[:=]\s*(\d+(?:\.\d+)?)", re.I)
_LISTED_FRAMES = re.compile(r"frames?\s+(?:are\s+)?(?:in\s+)?(?:the\s+)?((?:\d+\s*,\s*)*\d+)", re.I)
_LISTED_SCORES = re.compile(r"scores?\s+(?:are|is|:)\s*((?:\d+(?:\.\d+)?\s*,\s*)*\d+(?:\.\d+)?)", re.I)


def parse_scores(text: str, n_frames: int, scale: float = 4.0) -> tuple[np.ndarray, str]:
    """Frame scores from a reply: lines "Frame k: s" (or "k: s"), or the
    listed form "frames are 3, 4, 5 ... scores are 1.5, 2, 3". Frames not
    named score 0; scores are clipped to [0, scale]; numbers past the last
    frame are dropped.

    Returns:
        ((n_frames,) float scores, reason) where reason is "" when at least
        one frame was scored.
    """
    scores = np.zeros(max(n_frames, 0), np.float64)
    body = text if isinstance(text, str) else ""
    pairs: list[tuple[int, float]] = []
    frames_m, scores_m = _LISTED_FRAMES.search(body), _LISTED_SCORES.search(body)
    if frames_m and scores_m:
        ks = [int(x) for x in re.findall(r"\d+", frames_m.group(1))]
        vs = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", scores_m.group(1))]
        if len(ks) == len(vs):
            pairs = list(zip(ks, vs))
    if not pairs:
        pairs = [(int(m.group(1)), float(m.group(2))) for m in _PAIR.finditer(body)]
    dropped = 0
    used = 0
    for k, v in pairs:
        if not (0 <= k < n_frames) or not math.isfinite(v):
            dropped += 1
            continue
        scores[k] = max(scores[k], min(max(v, 0.0), scale))
        used += 1
    if used:
        return scores, ""
    if dropped:
        return scores, f"every scored frame is past the last frame {n_frames - 1}"
    return scores, "no frame scores in the answer"


def clip_scores(frame_scores: np.ndarray, times: np.ndarray, duration: float, clip: float = 2.0) -> np.ndarray:
    """(n_clips,) clip saliency from frame scores: the best frame inside
    each clip, else the nearest frame's score; n_clips = ceil(duration / clip)."""
    n_clips = max(1, math.ceil(duration / clip - 1e-9))
    out = np.full(n_clips, np.nan)
    if len(times) == 0:
        return np.zeros(n_clips)
    which = np.minimum((np.asarray(times) / clip + 1e-9).astype(np.int64), n_clips - 1)
    for c, v in zip(which, frame_scores):
        out[c] = v if np.isnan(out[c]) else max(out[c], v)
    empty = np.flatnonzero(np.isnan(out))
    if len(empty):
        centers = (empty + 0.5) * clip
        nearest = np.abs(np.asarray(times)[None, :] - centers[:, None]).argmin(axis=1)
        out[empty] = np.asarray(frame_scores)[nearest]
    return out


def _raise_token_limit(mllm: Any, tokens: int) -> tuple[str, int] | None:
    """Let a long answer through: the backends' answer-length attribute is
    raised for one call (restored by the caller)."""
    for name in ("max_new_tokens", "max_tokens"):
        current = getattr(mllm, name, None)
        if isinstance(current, int) and current < tokens:
            setattr(mllm, name, tokens)
            return name, current
    return None


def highlights(video: Any, query: str, mllm: MLLM, clip: float = 2.0, fps: float | None = None,
               prompt: HighlightPrompt = HIGHLIGHT_PROMPT, scale: int = 4, max_answer_tokens: int = 512,
               **options: Any) -> Highlights:
    """Per-clip saliency of ``query`` in ``video`` from one MLLM call.

    Args:
        video: a video file, a (T, H, W, 3) array sampled at ``fps``, or a
            :class:`numpro.InMemoryVideo`.
        clip: clip length in seconds (QVHighlights: 2).
        fps: frames shown per second (default one per clip, 1 / ``clip``).
        scale: the top score the model is asked for (QVHighlights' labels: 4).
        max_answer_tokens: answer length allowed for this call (a list of
            frames is longer than a span).
        options: :class:`numpro.NumProSettings` display fields (layout,
            rows, cols, font_size, color, position, max_pixels, ...).

    A model that fails or times out gives all-zero scores with ``error``
    set; :class:`numpro.MLLMConfigurationError` is raised.
    """
    if clip <= 0:
        raise InvalidInputError(f"clip must be a positive number of seconds, got {clip!r}")
    rate = float(fps) if fps is not None else 1.0 / clip
    s = NumProSettings.make(fps=rate, **options)
    source = as_video(video, rate)
    duration = float(source.duration)
    sampled = source.sample(rate)
    n = len(sampled.frames)
    settings = _base_settings(mllm, s, sampled.fps, n, duration, "numpro-highlights", prompt)
    settings.update(clip=clip, scale=scale)
    if n == 0:
        return Highlights(query, clip_scores(np.zeros(0), sampled.times, duration, clip), clip, np.zeros(0),
                          sampled.times, "", "no frames to show", settings)
    images, fps_arg, spans, shown = _present(sampled.frames, sampled.times, sampled.owned, sampled.fps, mllm, s)
    text_prompt = prompt.render(query, _color_name(s.color), s.position, layout=s.layout, scale=scale)
    if spans:
        text_prompt = " ".join([f"Image {i + 1}: frames {a} to {b} ({t0:.1f}s to {t1:.1f}s)."
                                for i, (a, b, t0, t1) in enumerate(spans)] + [text_prompt])
    settings.update(shown, prompt=text_prompt)
    raised = _raise_token_limit(mllm, max_answer_tokens)
    try:
        raw = mllm.answer(list(images), text_prompt, fps=fps_arg)
    except MLLMConfigurationError:
        raise
    except _CALL_ERRORS as exc:
        zeros = np.zeros(n)
        return Highlights(query, clip_scores(zeros, sampled.times, duration, clip), clip, zeros, sampled.times, "",
                          f"{type(exc).__name__}: {exc}", settings)
    finally:
        if raised is not None:
            setattr(mllm, raised[0], raised[1])
    raw = raw if isinstance(raw, str) else str(raw)
    frame_scores, reason = parse_scores(raw, n, scale)
    if reason:
        span = parse_answer(raw, n, fps=sampled.fps)
        if span.ok and span.first is not None and span.last is not None:
            frame_scores[span.first:span.last + 1] = 1.0
            reason = "no scores in the answer; the frame span it names scores 1"
    return Highlights(query, clip_scores(frame_scores, sampled.times, duration, clip), clip, frame_scores,
                      sampled.times, raw, reason, settings)
