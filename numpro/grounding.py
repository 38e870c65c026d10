"""NumPro grounding: sample, number (or tile), ask, parse, convert to seconds,
and optionally ask again around the first answer at a higher frame rate.

Frame number k is the k-th sampled frame; an answer "From Frame x to Frame
y" covers the video from frame x's time to frame y's time (one sample
interval when x = y), as the paper's evaluation maps numbers to time, with
each frame's time read from the decoder (see :mod:`numpro.source`).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfvtg import Moment
from tfvtg.errors import InvalidInputError, InvalidTypeError

from .errors import MLLMConfigurationError, MLLMError, NoAnswerError
from .grid import grid_geometry, tile_frames
from .mllm import MLLM, describe_mllm, mllm_max_pixels
from .overlay import POSITIONS, number_frames
from .parse import Answer, parse_answer
from .prompt import DEFAULT_PROMPT, PromptTemplate
from .source import Sampled, as_video

__all__ = ["sample_frames", "ground", "run", "ground_many", "NumProResult", "NumProSettings", "NoAnswerError",
           "LAYOUTS"]

LAYOUTS = ("frames", "grid")

#: errors of one model call that make a query fall back instead of failing
#: (a refused key or a missing model is not among them: that stops a batch)
_CALL_ERRORS: tuple[type[BaseException], ...] = (MLLMError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class NumProSettings:
    """Everything that decides what the model is shown and asked.

    Attributes:
        fps: frames per second sampled from the video (the paper: 1 for
            Charades-STA, 0.5 for ActivityNet).
        prompt: the wording (:class:`PromptTemplate`).
        font_size, color, position: the painted numbers (frames layout):
            pixels or a fraction of the height below 1; a colour; a corner.
        layout: "frames" (numbers painted on each frame, one video) or
            "grid" (frames tiled into captioned grid images, as T2SGrid).
        rows, cols: tiles per grid (T2SGrid: 3 rows of 4).
        grid_stride: frames between consecutive grids' first tiles (default
            rows x cols, no overlap; T2SGrid: half a grid).
        max_pixels: most pixels per image (grid); default the model's own
            ``max_pixels``.
        min_tile: smallest tile side in pixels before fewer tiles go in a grid.
        tile_size: longest tile side in pixels (T2SGrid: 336); default the
            frame's own size.
        refine: ask again around the first answer at ``refine_fps``.
        refine_fps: the second pass's rate (default 4 x ``fps``).
        refine_margin: seconds added before and after the first answer
            (default two first-pass intervals, 2 / ``fps``).
        refine_max_frames: most frames in the second pass (its rate is
            lowered to fit; no second pass when it would not beat ``fps``).
    """

    fps: float = 1.0
    prompt: PromptTemplate = DEFAULT_PROMPT
    font_size: float = 40
    color: Any = "red"
    position: str = "bottom_right"
    layout: str = "frames"
    rows: int = 3
    cols: int = 4
    grid_stride: int | None = None
    max_pixels: int | None = None
    min_tile: int = 56
    tile_size: int | None = None
    refine: bool = False
    refine_fps: float | None = None
    refine_margin: float | None = None
    refine_max_frames: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.fps, (int, float)) or not np.isfinite(self.fps) or self.fps <= 0:
            raise InvalidInputError(f"fps must be a positive number of frames per second, got {self.fps!r}")
        if self.layout not in LAYOUTS:
            raise InvalidInputError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.position not in POSITIONS:
            raise InvalidInputError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if not isinstance(self.prompt, PromptTemplate):
            raise InvalidTypeError(f"prompt must be a numpro.PromptTemplate, got {type(self.prompt).__name__}")
        if self.refine_fps is not None and self.refine_fps <= 0:
            raise InvalidInputError(f"refine_fps must be positive, got {self.refine_fps!r}")
        if self.refine_margin is not None and self.refine_margin < 0:
            raise InvalidInputError(f"refine_margin must be >= 0 seconds, got {self.refine_margin!r}")
        if self.refine_max_frames < 2:
            raise InvalidInputError(f"refine_max_frames must be at least 2, got {self.refine_max_frames!r}")

    @classmethod
    def make(cls, **options: Any) -> NumProSettings:
        """Settings from keyword options; an unknown name is a clear error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidInputError(f"unknown NumPro option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**options)

    def font(self) -> dict[str, Any]:
        color = self.color if isinstance(self.color, str) else list(self.color)
        return {"name": "Pillow default (Aileron)", "size": self.font_size, "color": color, "position": self.position}


@dataclass
class NumProResult:
    """One query's outcome.

    Attributes:
        query: the sentence.
        moment: the span in seconds, or None when the model gave no usable answer.
        answer: the parsed answer (raw text included), None when the model
            was not reached.
        timestamps: (n,) seconds (video time) of each numbered frame.
        frames: the images the model saw (numbered frames, or grid images),
            unless dropped.
        error: why there is no moment, when there is none.
        settings: everything that decided the answer: model, prompt text
            and version, fps, frame count, max pixels, layout, font, grid,
            refinement (strict-JSON-friendly).
        coarse: the first pass, when ``refine`` asked a second time and
            this result is the second.
    """

    query: str
    moment: Moment | None
    answer: Answer | None
    timestamps: np.ndarray
    frames: Any = None
    error: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    coarse: NumProResult | None = None

    @property
    def layout(self) -> str:
        return str(self.settings.get("layout", "frames"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no images)."""
        return {"query": self.query, "moment": None if self.moment is None else self.moment.to_dict(),
                "answer": None if self.answer is None else self.answer.raw,
                "reason": None if self.answer is None else self.answer.reason,
                "frames": [self.answer.first, self.answer.last] if self.answer is not None and self.answer.ok else None,
                "error": self.error,
                "settings": self.settings,
                "coarse": None if self.coarse is None else self.coarse.to_dict()}

    def contact_sheet(self, path: str | os.PathLike[str] | None = None, columns: int = 8) -> Any:
        """Contact sheet of the images the model saw with the answer marked
        (matplotlib figure)."""
        from .plot import plot_numpro_answer

        if self.frames is None:
            raise InvalidInputError("this result kept no frames (ground_many(..., keep_frames=True) keeps them)")
        answer = self.answer
        span = None
        if answer is not None and answer.ok and answer.first is not None and answer.last is not None:
            span = (int(answer.first), int(answer.last))
        if self.layout == "grid":
            title = f"{self.query}: frames {span[0]}-{span[1]}" if span else f"{self.query}: no answer"
            return plot_numpro_answer(self.frames, None, None, columns=min(columns, 2), path=path, title=title)
        return plot_numpro_answer(self.frames, span, list(map(float, self.timestamps)), columns=columns, path=path,
                                  title=self.query)


def sample_frames(video: Any, fps: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames of a video at ``fps`` with their times.

    Args:
        video: a video file path, a (T, H, W, 3) array already sampled at
            ``fps``, or a :class:`numpro.InMemoryVideo`.

    Returns:
        (frames (n, H, W, 3) uint8, times (n,) seconds, duration seconds).
    """
    source = as_video(video, fps)
    sampled = source.sample(fps)
    return sampled.frames, sampled.times, source.duration


def _span_seconds(answer: Answer, times: np.ndarray, fps: float, duration: float) -> tuple[float, float] | None:
    """Seconds of an answered frame span, or None when its numbers are not
    frames the model saw."""
    first, last = answer.first, answer.last
    if first is None or last is None or not (0 <= first <= last < len(times)):
        return None
    start = float(times[first])
    end = float(times[last]) if last > first else float(times[last]) + 1.0 / fps
    return min(start, duration), min(end, duration)


def _color_name(color: Any) -> str:
    return color if isinstance(color, str) else "colored"


def _present(frames: np.ndarray, times: np.ndarray, owned: bool, fps: float, mllm: MLLM,
             s: NumProSettings) -> tuple[Any, float | None, list[tuple[int, int, float, float]], dict[str, Any]]:
    """What the model is shown: numbered frames (one video at ``fps``) or
    captioned grid images (still images). Returns (images, fps for the
    model or None for stills, per grid (first, last, start s, end s), the
    settings that decided it)."""
    shown = times - times[0]  # times written for the model: from the first frame shown
    if s.layout == "grid":
        max_pixels = s.max_pixels or mllm_max_pixels(mllm)
        geometry = grid_geometry(frames.shape[1], frames.shape[2], s.rows, s.cols, s.grid_stride, max_pixels,
                                 s.min_tile, s.tile_size)
        grids = tile_frames(frames, shown, geometry=geometry)
        spans = [(g.numbers[0], g.numbers[-1], g.times[0], g.times[-1]) for g in grids]
        return [g.image for g in grids], None, spans, {
            "max_pixels": max_pixels, "grid": {**geometry.to_dict(), "images": len(grids)},
            "font": {"name": "Pillow default (Aileron)", "caption_height": geometry.caption_height, "color": "white"}}
    # frames nobody else holds are painted in place (saves a copy)
    images = number_frames(frames, font_size=s.font_size, color=s.color, position=s.position, inplace=owned)
    return images, fps, [], {"max_pixels": s.max_pixels or mllm_max_pixels(mllm), "font": s.font(), "grid": None}


def _base_settings(mllm: MLLM, s: NumProSettings, fps: float, n: int, duration: float, method: str,
                   prompt: PromptTemplate | Any) -> dict[str, Any]:
    described = describe_mllm(mllm)
    return {"method": method, "model": described.get("model"), "mllm": described, "layout": s.layout, "fps": fps,
            "n_frames": n, "duration": duration, "prompt_version": getattr(prompt, "label", "custom")}


def _ask(sampled: Sampled, query: str, mllm: MLLM, s: NumProSettings, duration: float,
         catch: bool) -> NumProResult:
    """One question: show the sampled frames (numbered or tiled) and read the answer."""
    frames, times = sampled.frames, sampled.times
    n = len(frames)
    settings = _base_settings(mllm, s, sampled.fps, n, duration, "numpro", s.prompt)
    if n == 0:
        return NumProResult(query, None, None, times, None, "no frames to show", settings)
    images, fps_arg, spans, shown = _present(frames, times, sampled.owned, sampled.fps, mllm, s)
    prompt = s.prompt.render(query, _color_name(s.color), s.position, layout=s.layout, grids=spans)
    settings.update(shown, prompt=prompt)
    try:
        text = mllm.answer(list(images), prompt, fps=fps_arg)
    except MLLMConfigurationError:
        raise
    except _CALL_ERRORS as exc:
        if not catch:
            raise
        return NumProResult(query, None, None, times, images, f"{type(exc).__name__}: {exc}", settings)
    answer = parse_answer(text if isinstance(text, str) else str(text), n, fps=sampled.fps)
    span = _span_seconds(answer, times, sampled.fps, duration) if answer.ok else None
    if span is None:
        reason = answer.reason or f"frame numbers outside 0..{n - 1}"
        return NumProResult(query, None, answer, times, images, reason, settings)
    return NumProResult(query, Moment(span[0], span[1], 1.0), answer, times, images, "", settings)


def _refine(source: Any, coarse: NumProResult, query: str, mllm: MLLM, s: NumProSettings, duration: float,
            catch: bool) -> NumProResult:
    """Ask again around the first answer at a higher rate; keep the first
    answer when the second is unusable."""
    assert coarse.moment is not None
    margin = s.refine_margin if s.refine_margin is not None else 2.0 / s.fps
    fps = float(s.refine_fps or 4.0 * s.fps)
    t0 = max(0.0, coarse.moment.start - margin)
    t1 = min(duration, coarse.moment.end + margin)
    if (t1 - t0) * fps + 1 > s.refine_max_frames:  # too many frames: lower the rate to fit
        fps = (s.refine_max_frames - 1) / max(t1 - t0, 1e-9)
    info: dict[str, Any] = {"fps": fps, "margin": margin, "window": [t0, t1], "max_frames": s.refine_max_frames}
    if fps <= s.fps * (1 + 1e-9):
        info.update(used=False, reason=f"the window ({t1 - t0:.1f} s) is too long to sample faster than {s.fps:g} fps "
                                       f"within {s.refine_max_frames} frames")
        coarse.settings["refine"] = info
        return coarse
    fine = _ask(source.sample(fps, t0, t1), query, mllm, s, duration, catch)
    info.update(n_frames=fine.settings.get("n_frames"), prompt=fine.settings.get("prompt"),
                answer=None if fine.answer is None else fine.answer.raw)
    if fine.moment is None:
        info.update(used=False, reason=f"second answer unusable ({fine.error}); the first answer stands")
        coarse.settings["refine"] = info
        return coarse
    info["used"] = True
    fine.settings = {**coarse.settings, "refine": info}
    fine.coarse = coarse
    return fine


def _run(video: Any, query: str, mllm: MLLM, settings: NumProSettings, catch: bool = True,
         source: Any = None) -> NumProResult:
    source = source if source is not None else as_video(video, settings.fps)
    duration = float(source.duration)
    coarse = _ask(source.sample(settings.fps), query, mllm, settings, duration, catch)
    if not settings.refine:
        return coarse
    if coarse.moment is None:
        coarse.settings["refine"] = {"used": False, "reason": "no first answer to refine"}
        return coarse
    return _refine(source, coarse, query, mllm, settings, duration, catch)


def run(video: Any, query: str, mllm: MLLM, **options: Any) -> NumProResult:
    """Ground ``query`` in ``video`` and return everything: the moment (or
    why there is none), the answer, the images shown, and the settings.

    A model that times out, fails or answers nothing usable gives a result
    with ``moment=None`` and ``error`` set instead of raising; a model that
    cannot be used at all (missing weights, refused key) raises
    :class:`numpro.MLLMConfigurationError`.

    Args:
        video: a video file, a (T, H, W, 3) array sampled at ``fps``, or a
            :class:`numpro.InMemoryVideo`.
        options: :class:`NumProSettings` fields (fps, layout, rows, cols,
            refine, refine_fps, refine_margin, max_pixels, prompt, font_size, ...).
    """
    return _run(video, query, mllm, NumProSettings.make(**options), catch=True)


def ground(video: Any, query: str, mllm: MLLM, fps: float = 1.0, prompt: PromptTemplate = DEFAULT_PROMPT,
           font_size: float = 40, color: Any = "red", position: str = "bottom_right", **options: Any) -> Moment:
    """Ground ``query`` in ``video`` with numbered-frame prompting.

    Frames are sampled at ``fps``, numbered from 0, shown to ``mllm`` with
    the prompt (painted numbers, or ``layout="grid"``), and the answered
    frame span is converted to seconds. ``refine=True`` asks again around
    the first answer at ``refine_fps`` (see :class:`NumProSettings`).

    Raises:
        NoAnswerError: the reply holds no usable span (its raw text is kept).
        MLLMError: the model failed (:class:`MLLMTimeoutError` when it timed out).
    """
    settings = NumProSettings.make(fps=fps, prompt=prompt, font_size=font_size, color=color, position=position,
                                   **options)
    res = _run(video, query, mllm, settings, catch=False)
    if res.moment is None:
        raise NoAnswerError(res.answer, res.error)
    return res.moment


def ground_many(items: Sequence[tuple[Any, str]], mllm: MLLM, fps: float = 1.0,
                prompt: PromptTemplate = DEFAULT_PROMPT, progress: bool = True, keep_frames: bool = False,
                **options: Any) -> list[NumProResult]:
    """Ground many (video, query) pairs with a progress bar. A pair that
    fails (unreadable video, server error or timeout, no answer) is
    reported and the rest go on: its result has ``moment=None`` and
    ``error`` set. A model that cannot be used at all
    (:class:`numpro.MLLMConfigurationError`) stops the batch. Consecutive
    queries about the same video file decode it once."""
    from tqdm.auto import tqdm

    from .source import VideoFile

    settings = NumProSettings.make(fps=fps, prompt=prompt, **options)
    results = []
    cached: tuple[Any, Any] = (None, None)
    bar = tqdm(items, unit="query", desc="numpro", disable=not progress)
    for video, query in bar:
        try:
            if isinstance(video, (str, os.PathLike)):
                if cached[0] != os.fspath(video):
                    cached = (os.fspath(video), VideoFile(video, cache=True))
                source = cached[1]
            else:
                source = as_video(video, settings.fps)
            res = _run(video, query, mllm, settings, catch=True, source=source)
            if res.moment is None and res.answer is not None:  # keep the reason and the model's words
                res.error = str(NoAnswerError(res.answer))
        except MLLMConfigurationError:
            raise
        except Exception as exc:  # one bad item never ends the batch
            tqdm.write(f"failed {video!s}: {type(exc).__name__}: {exc}", file=sys.stderr)
            res = NumProResult(query, None, None, np.zeros(0), None, f"{type(exc).__name__}: {exc}")
        if not keep_frames:
            res.frames = None
            if res.coarse is not None:
                res.coarse.frames = None
        results.append(res)
    return results
