"""Ensemble: a scorer proposes, the MLLM chooses.

A scorer (TFVTG's, or TAG's, through :func:`tfvtg.ground`) ranks moments;
the MLLM is shown its top ``top_k`` candidates, ``frames_per_candidate``
frames each, and asked which one matches. The chosen candidate goes first,
the others keep the scorer's order. When the answer is unusable (no
candidate named, a number out of range, a refusal, a timeout or a server
error) the scorer's ranking stands and ``reason`` says why.

Cost: exactly one MLLM call per query, with ``top_k x frames_per_candidate``
images (20 by default; ``layout="grid"`` sends ``top_k`` grid images
instead) and a prompt of about 50 words, answered in a few tokens. With
Qwen2-VL at 448 x 252 pixels per frame that is about 20 x 144 = 2,900 image
tokens. Library time per query besides that call (choosing the frames from
a decoded video, painting, parsing, reordering) is measured in
benchmarks/bench_numpro.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfvtg import GroundingResult, Moment
from tfvtg.errors import InvalidInputError, InvalidTypeError

from .errors import MLLMConfigurationError
from .grid import tile_frames
from .grounding import _CALL_ERRORS
from .mllm import describe_mllm, load_mllm, mllm_max_pixels
from .overlay import POSITIONS, _paint, _rgb, resolve_font_size
from .prompt import clean_query
from .source import InMemoryVideo, VideoFile, as_video

__all__ = ["rerank", "ensemble", "Reranked", "ChoicePrompt", "CHOICE_PROMPT", "parse_choice", "rerank_result"]

log = logging.getLogger("numpro")


@dataclass(frozen=True)
class ChoicePrompt:
    """The question that picks a candidate; ``{k}``, ``{m}``, ``{color}``,
    ``{position}`` and ``{query}`` are filled in."""

    frames_intro: str = ("These frames come from {k} candidate moments of one video, {m} frames each, in time "
                         "order. Every frame has its candidate's number painted in {color} in the {position} corner.")
    grid_intro: str = ("Each image shows one candidate moment of a video: {m} frames in time order, each captioned "
                       "with its candidate's number and its time in seconds.")
    question: str = "Which candidate shows {query}? Answer only in this format: 'Candidate k'."
    version: str = "numpro-choice-1"

    @property
    def label(self) -> str:
        return self.version

    def render(self, query: str, k: int, m: int, layout: str = "frames", color: str = "red",
               position: str = "bottom_right") -> str:
        intro = self.grid_intro if layout == "grid" else self.frames_intro
        return " ".join([intro.format(k=k, m=m, color=color, position=position.replace("_", " ")),
                         self.question.format(query=clean_query(query))])


CHOICE_PROMPT = ChoicePrompt()

_NAMED = re.compile(r"\b(?:candidate|option|moment|clip|image)\s*(?:number\s*)?#?\s*(\d+)", re.I)
_BARE = re.compile(r"^\W*(\d+)\W*$")
_NONE = re.compile(r"\b(?:none of (?:the|them)|no candidate|neither|cannot (?:tell|determine)|can't (?:tell|determine))\b",
                   re.I)


def parse_choice(text: Any, k: int) -> tuple[int | None, str]:
    """The candidate (1..k) a reply names, or (None, reason)."""
    body = text.strip() if isinstance(text, str) else ""
    if not body:
        return None, "empty answer"
    m = _NAMED.search(body) or _BARE.match(body)
    if m is None:
        if _NONE.search(body):
            return None, "the model says no candidate matches"
        return None, "no candidate named in the answer"
    choice = int(m.group(1))
    if not 1 <= choice <= k:
        return None, f"candidate {choice} is not among 1..{k}"
    return choice, ""


@dataclass
class Reranked:
    """The outcome of one rerank.

    Attributes:
        result: the scorer's result with its moments reordered (the chosen
            candidate first; unchanged when the scorer's ranking stands).
        chosen: index of the chosen moment in the scorer's ranking, or None.
        candidates: the moments shown, in the scorer's order.
        raw: the model's reply ("" when it was not reached).
        reason: why the scorer's ranking stands, when it does.
        settings: what decided the answer (model, prompt and version,
            layout, frames per candidate, font, max pixels).
    """

    result: GroundingResult
    chosen: int | None
    candidates: list[Moment]
    raw: str = ""
    reason: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Moment:
        return self.result.best

    @property
    def fell_back(self) -> bool:
        return self.chosen is None


def _candidate_times(candidates: list[Moment], m: int) -> np.ndarray:
    """(k, m) seconds: the centres of m equal parts of each candidate."""
    starts = np.array([c.start for c in candidates], np.float64)
    ends = np.array([max(c.end, c.start) for c in candidates], np.float64)
    return starts[:, None] + (np.arange(m)[None, :] + 0.5) / m * (ends - starts)[:, None]


def _frames_at(source: Any, times: np.ndarray, sample_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frames nearest to ``times`` (flat (n,) seconds): straight from
    frames in memory, or from the file sampled at ``sample_fps`` (decoded
    once per source). Returns (decoded frames (T, H, W, 3), not to be
    changed; (n,) indices into them; (n,) their times)."""
    if isinstance(source, InMemoryVideo):
        idx = np.clip(np.round(times * source.fps).astype(np.int64), 0, len(source.frames) - 1)
        return source.frames, idx, idx / source.fps
    sampled = source.sample(sample_fps)
    if len(sampled.times) == 0:
        raise InvalidInputError(f"no frames could be sampled from {getattr(source, 'name', source)}")
    if len(sampled.times) == 1:
        return sampled.frames, np.zeros(len(times), np.int64), sampled.times[np.zeros(len(times), np.int64)]
    pos = np.clip(np.searchsorted(sampled.times, times), 1, len(sampled.times) - 1)
    left = sampled.times[pos - 1]
    nearest = np.where(np.abs(times - left) <= np.abs(sampled.times[pos] - times), pos - 1, pos)
    return sampled.frames, nearest, sampled.times[nearest]


def rerank(result: GroundingResult, video: Any, mllm: Any, query: str | None = None, top_k: int = 5,
           frames_per_candidate: int = 4, layout: str = "frames", prompt: ChoicePrompt = CHOICE_PROMPT,
           sample_fps: float = 2.0, font_size: float = 0.15, color: Any = "red", position: str = "bottom_right",
           max_pixels: int | None = None, tile_size: int | None = 336, base_url: str | None = None) -> Reranked:
    """Let ``mllm`` choose among the scorer's top ``top_k`` moments.

    Args:
        result: the scorer's :class:`tfvtg.GroundingResult` (its moments in
            seconds, best first).
        video: the video file, a :class:`numpro.VideoFile` (reused across
            queries, decoded once), or a :class:`numpro.InMemoryVideo`.
        mllm: an MLLM object, or a model name / directory (with
            ``base_url`` for a served model).
        query: the sentence (default ``result.query``).
        top_k: candidates shown (fewer when the scorer has fewer).
        frames_per_candidate: frames shown per candidate, at the centres of
            equal parts of its span.
        layout: "frames" (candidate number painted on each frame) or
            "grid" (one captioned grid image per candidate).
        sample_fps: rate a video file is decoded at to pick frames from.
        font_size, color, position: the painted candidate numbers.
        max_pixels: most pixels per grid image (default the model's).
        tile_size: longest tile side in pixels in the grid layout (T2SGrid's 336).

    Returns:
        :class:`Reranked`; one MLLM call; never raises for a bad answer, a
        timeout or a server error (the scorer's ranking stands, ``reason``
        says why). A model that cannot be used at all raises
        :class:`numpro.MLLMConfigurationError`.
    """
    if not isinstance(result, GroundingResult):
        raise InvalidTypeError(f"result must be a tfvtg.GroundingResult, got {type(result).__name__}")
    if layout not in ("frames", "grid"):
        raise InvalidInputError(f"layout must be 'frames' or 'grid', got {layout!r}")
    if position not in POSITIONS:
        raise InvalidInputError(f"position must be one of {POSITIONS}, got {position!r}")
    if top_k < 1 or frames_per_candidate < 1:
        raise InvalidInputError(f"top_k and frames_per_candidate must be at least 1, got {top_k}, "
                                f"{frames_per_candidate}")
    model = load_mllm(mllm, base_url=base_url)
    query = result.query if query is None else query
    candidates = list(result.moments[:top_k])
    m = int(frames_per_candidate)
    described = describe_mllm(model)
    settings: dict[str, Any] = {"method": "ensemble", "model": described.get("model"), "mllm": described,
                                "layout": layout, "top_k": top_k, "frames_per_candidate": m,
                                "prompt_version": prompt.label, "sample_fps": sample_fps}
    if len(candidates) < 2:
        reason = "the scorer proposed no moment" if not candidates else "one candidate: nothing to choose"
        return Reranked(result, 0 if candidates else None, candidates, "", reason if not candidates else "",
                        settings)
    source = as_video(video)
    # shown in time order, numbered from 1; shown[j] is the scorer's rank
    shown = sorted(range(len(candidates)), key=lambda i: (candidates[i].start, candidates[i].end))
    times = _candidate_times([candidates[i] for i in shown], m)
    decoded, picked, frame_times = _frames_at(source, times.ravel(), sample_fps)
    k = len(shown)
    if layout == "grid":
        limit = max_pixels or mllm_max_pixels(model)
        labels = [f"candidate {j // m + 1} | {t:.1f}s" for j, t in enumerate(frame_times)]
        grids = tile_frames(decoded, rows=1, cols=m, stride=m, max_pixels=limit, tile_size=tile_size, labels=labels,
                            indices=picked)
        images: list[np.ndarray] = [g.image for g in grids]
        settings.update(max_pixels=limit, grid={"rows": 1, "cols": m, "images": len(grids), "tile_size": tile_size},
                        font={"name": "Pillow default (Aileron)", "color": "white"})
    else:
        rgb = _rgb(color)
        painted = decoded[picked]  # a copy: painting it never touches the decoded video
        size = resolve_font_size(font_size, painted.shape[1])
        for j in range(len(painted)):
            _paint(painted[j], str(j // m + 1), size, rgb, position, 0)
        images = list(painted)
        settings.update(max_pixels=max_pixels or mllm_max_pixels(model), grid=None,
                        font={"name": "Pillow default (Aileron)", "size": font_size,
                              "color": color if isinstance(color, str) else list(color), "position": position})
    text = prompt.render(query, k, m, layout, color if isinstance(color, str) else "colored", position)
    settings.update(prompt=text, shown=[[candidates[i].start, candidates[i].end] for i in shown])
    try:
        raw = model.answer(images, text, fps=None)
    except MLLMConfigurationError:
        raise
    except _CALL_ERRORS as exc:
        return Reranked(result, None, candidates, "", f"{type(exc).__name__}: {exc}", settings)
    raw = raw if isinstance(raw, str) else str(raw)
    choice, reason = parse_choice(raw, k)
    if choice is None:
        return Reranked(result, None, candidates, raw, reason, settings)
    chosen = shown[choice - 1]
    order = [chosen] + [i for i in range(len(result.moments)) if i != chosen]
    reordered = dataclasses.replace(result, moments=[result.moments[i] for i in order])
    return Reranked(reordered, chosen, candidates, raw, "", settings)


def ensemble(video: str | os.PathLike[str], query: str, mllm: Any, scorer: Any = None, base_url: str | None = None,
             **options: Any) -> Reranked:
    """Ground ``query`` with a scorer, then let ``mllm`` choose among its
    top proposals (:func:`rerank`).

    Args:
        video: a video file.
        scorer: a callable ``(video, query) -> tfvtg.GroundingResult``, or
            None for :func:`tfvtg.ground` with its defaults (BLIP-2
            features, cached; an LLM decomposition when one is configured).
        options: :func:`rerank` options.
    """
    if scorer is None:
        from tfvtg import ground as tfvtg_ground

        result = tfvtg_ground(video, query)
    elif callable(scorer):
        result = scorer(video, query)
    else:
        raise InvalidTypeError(f"scorer must be a callable (video, query) -> GroundingResult, got {scorer!r}")
    return rerank(result, video, mllm, query=query, base_url=base_url, **options)


def rerank_result(result: GroundingResult, video: Any, query: str, mllm: Any, **options: Any) -> GroundingResult:
    """The ``tfvtg.rerankers`` entry point ("mllm") behind
    ``tfvtg.ground(..., mllm=...)``: the reordered result; a fallback to the
    scorer's ranking is logged (logger "numpro") with its reason."""
    if not isinstance(video, (str, os.PathLike, VideoFile, InMemoryVideo, np.ndarray)):
        raise InvalidInputError("mllm= needs the video itself (a file path), not only its features")
    out = rerank(result, video, mllm, query=query, **options)
    if out.reason:
        log.warning("numpro: the scorer's ranking stands for %r: %s", query, out.reason)
    return out.result
