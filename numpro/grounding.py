"""NumPro grounding: sample, number, ask, parse, convert to seconds."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfvtg import Moment
from tfvtg.errors import InvalidInputError

from .errors import NoAnswerError
from .mllm import MLLM
from .overlay import number_frames
from .parse import Answer, parse_answer
from .prompt import DEFAULT_PROMPT, PromptTemplate

__all__ = ["sample_frames", "ground", "ground_many", "NumProResult", "NoAnswerError"]




@dataclass
class NumProResult:
    """One query's outcome.

    Attributes:
        query: the sentence.
        moment: the span in seconds, or None when the model gave no answer.
        answer: the parsed answer (raw text included).
        timestamps: (n,) seconds of each numbered frame.
        frames: the numbered frames the model saw.
        error: why the query failed, when it did.
    """

    query: str
    moment: Moment | None
    answer: Answer | None
    timestamps: np.ndarray
    frames: Any = None
    error: str = ""

    def contact_sheet(self, path: str | os.PathLike[str] | None = None, columns: int = 8) -> Any:
        """Contact sheet of the numbered frames with the answer marked (matplotlib figure)."""
        from .plot import plot_numpro_answer

        span = (self.answer.first, self.answer.last) if self.answer is not None and self.answer.ok else None
        return plot_numpro_answer(self.frames, span, self.timestamps, columns=columns, path=path, title=self.query)


def sample_frames(video: Any, fps: float = 1.0, backend: str = "auto") -> tuple[np.ndarray, np.ndarray, float]:
    """Frames of a video at ``fps`` with their timestamps.

    Args:
        video: a video file path, or a (T, H, W, 3) array already sampled at ``fps``.

    Returns:
        (frames (n, H, W, 3) uint8, timestamps (n,) seconds, duration seconds).
        Sampling and decoding are tfvtg's (see :func:`tfvtg.video.read_frames`).
    """
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3:
            raise InvalidInputError(f"frames must be (T, H, W, 3), got shape {video.shape}")
        ts = np.arange(len(video)) / fps
        return video, ts, len(video) / fps
    from tfvtg import read_frames

    decoded = read_frames(video, fps=fps, backend=backend)  # type: ignore[arg-type]
    # frame k stands for second k / fps of the video, the mapping answers are converted with
    return decoded.frames, np.arange(len(decoded.frames)) / fps, decoded.duration


def _run(video: Any, query: str, mllm: MLLM, fps: float, prompt: PromptTemplate, font_size: float, color: Any,
         position: str) -> NumProResult:
    frames, ts, duration = sample_frames(video, fps)
    # frames decoded here are ours to paint on; a caller's array is copied
    numbered = number_frames(frames, font_size=font_size, color=color, position=position,
                             inplace=not isinstance(video, np.ndarray))
    color_name = color if isinstance(color, str) else "colored"
    text = mllm.answer(list(numbered), prompt.render(query, color_name, position), fps=fps)
    answer = parse_answer(text, len(numbered), fps=fps)
    moment = Moment(*answer.seconds(fps, duration), 1.0) if answer.ok else None
    return NumProResult(query, moment, answer, ts, numbered)


def ground(video: Any, query: str, mllm: MLLM, fps: float = 1.0, prompt: PromptTemplate = DEFAULT_PROMPT,
           font_size: float = 40, color: Any = "red", position: str = "bottom_right") -> Moment:
    """Ground ``query`` in ``video`` with numbered-frame prompting.

    Frames are sampled at ``fps``, numbered from 0 (frame k is at k / fps
    seconds), shown to ``mllm`` with the prompt, and the answered frame span
    is converted to seconds (see :meth:`numpro.Answer.seconds`).

    Raises:
        NoAnswerError: the reply holds no usable span (its raw text is kept).
    """
    res = _run(video, query, mllm, fps, prompt, font_size, color, position)
    if res.moment is None:
        raise NoAnswerError(res.answer)  # type: ignore[arg-type]
    return res.moment


def ground_many(items: Sequence[tuple[Any, str]], mllm: MLLM, fps: float = 1.0,
                prompt: PromptTemplate = DEFAULT_PROMPT, progress: bool = True, keep_frames: bool = False,
                **overlay: Any) -> list[NumProResult]:
    """Ground many (video, query) pairs with a progress bar. A pair that
    fails (unreadable video, server error, no answer) is reported and the
    rest go on: its result has ``moment=None`` and ``error`` set."""
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(items, unit="query", desc="numpro", disable=not progress)
    for video, query in bar:
        try:
            res = _run(video, query, mllm, fps, prompt, overlay.get("font_size", 40), overlay.get("color", "red"),
                       overlay.get("position", "bottom_right"))
            if res.moment is None:  # keep the reason and the model's words
                res.error = str(NoAnswerError(res.answer))
        except Exception as exc:  # one bad item never ends the batch
            tqdm.write(f"failed {video!s}: {type(exc).__name__}: {exc}", file=sys.stderr)
            res = NumProResult(query, None, None, np.zeros(0), None, f"{type(exc).__name__}: {exc}")
        if not keep_frames:
            res.frames = None
        results.append(res)
    return results
