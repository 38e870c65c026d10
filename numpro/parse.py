"""Reading a frame span out of an MLLM's free-text answer.

Handles the forms models actually produce: "From Frame 3 to Frame 7",
"frames 3-7", "3 to 7", "between 3 and 7", "[3, 7]", a single "frame 5",
reversed order, numbers past the last frame, answers in seconds ("from 2.5s
to 6 seconds") and prose around all of these. Anything else is a clear
no-answer result that keeps the raw text; no input string raises.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tfvtg.errors import InvalidInputError

__all__ = ["Answer", "parse_answer"]


@dataclass(frozen=True)
class Answer:
    """A parsed answer.

    Attributes:
        first, last: frame numbers (inclusive, 0-based as painted), or None
            when no answer could be read.
        raw: the model's text.
        in_seconds: the model answered in seconds (converted with ``fps``).
        reason: why there is no answer (empty when there is one).
    """

    first: int | None
    last: int | None
    raw: str
    in_seconds: bool = False
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first is not None and self.last is not None

    def __bool__(self) -> bool:
        return self.ok

    def seconds(self, fps: float, duration: float | None = None) -> tuple[float, float]:
        """The span in seconds: frame k (sampled at ``fps``) is at k / fps;
        the span runs from the first frame's time to the last frame's time,
        as the paper's evaluation maps numbers to time, widened to one frame
        interval when both are the same frame; clipped to ``duration``."""
        if not self.ok:
            raise InvalidInputError(f"no answer to convert ({self.reason}): {self.raw[:120]!r}")
        start = self.first / fps
        end = self.last / fps if self.last > self.first else (self.last + 1) / fps
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        return start, end


_NUM = r"(\d+(?:\.\d+)?)"
_FRAME = r"(?:frames?|fr\.?|#)?\s*"
_SEC = r"\s*(?:s\b|secs?\b|seconds?\b|sec\.)"
_SPAN_PATTERNS = [
    # seconds first, so "2s to 5s" is not read as frames
    (re.compile(rf"{_NUM}{_SEC}\s*(?:to|until|till|through|-|–|—|and)\s*{_NUM}{_SEC}", re.I), True),
    (re.compile(rf"(?:from|between)\s*{_NUM}\s*(?:to|and|-|–)\s*{_NUM}{_SEC}", re.I), True),
    (re.compile(rf"from\s*{_FRAME}{_NUM}\s*(?:to|until|till|through|-|–|—)\s*{_FRAME}{_NUM}", re.I), False),
    (re.compile(rf"between\s*{_FRAME}{_NUM}\s*(?:and|to|-|–)\s*{_FRAME}{_NUM}", re.I), False),
    (re.compile(rf"frames?\s*{_NUM}\s*(?:-|–|—|to|through|until|and)\s*(?:frames?\s*)?{_NUM}", re.I), False),
    (re.compile(rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*\]"), False),
    (re.compile(rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)"), False),
    (re.compile(rf"\b{_NUM}\s*(?:-|–|—|to|through|until)\s*{_NUM}\b", re.I), False),
]
_SINGLE_FRAME = re.compile(rf"frames?\s*(?:number\s*)?#?\s*{_NUM}", re.I)
_SINGLE_SECOND = re.compile(rf"(?:at|around|about)?\s*{_NUM}{_SEC}", re.I)
_NO_ANSWER = re.compile(r"\b(?:no frames?|none of the frames|not (?:shown|visible|present|appear)|cannot (?:find|determine|see)|"
                        r"can't (?:find|determine|see)|does not (?:appear|occur)|doesn't (?:appear|occur))\b", re.I)


def _to_frame(value: str, in_seconds: bool, fps: float | None) -> int | None:
    x = float(value)
    if not math.isfinite(x):
        return None
    if in_seconds:
        if not fps:
            return None
        return int(math.floor(x * fps + 1e-9))
    return int(round(x))


def parse_answer(text: str, n_frames: int, fps: float | None = None) -> Answer:
    """Read (first, last) frame numbers from an MLLM answer.

    Args:
        text: the model's reply.
        n_frames: how many numbered frames the model saw (numbers 0..n-1).
        fps: sampling rate, to convert answers given in seconds.

    Returns:
        An :class:`Answer`; ``answer.ok`` is False (with ``reason`` and the
        raw text kept) when no usable span is in the reply. Reversed spans
        are swapped; numbers past the last frame are clipped to it.
    """
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    if n_frames < 1:
        return Answer(None, None, raw, reason="the model saw no frames")
    body = raw.strip()
    if not body:
        return Answer(None, None, raw, reason="empty answer")
    found: tuple[int, int, bool] | None = None
    for pattern, in_seconds in _SPAN_PATTERNS:
        m = pattern.search(body)
        if m:
            a = _to_frame(m.group(1), in_seconds, fps)
            b = _to_frame(m.group(2), in_seconds, fps)
            if a is not None and b is not None:
                found = (a, b, in_seconds)
                break
    if found is None:
        m = _SINGLE_FRAME.search(body)
        if m:
            a = _to_frame(m.group(1), False, fps)
            if a is not None:
                found = (a, a, False)
    if found is None and fps:
        m = _SINGLE_SECOND.search(body)
        if m:
            a = _to_frame(m.group(1), True, fps)
            if a is not None:
                found = (a, a, True)
    if found is None:
        reason = "the model says the event is not shown" if _NO_ANSWER.search(body) else "no frame span in the answer"
        return Answer(None, None, raw, reason=reason)
    a, b, in_seconds = found
    if a > b:
        a, b = b, a
    last_frame = n_frames - 1
    if a > last_frame:
        return Answer(None, None, raw, in_seconds, reason=f"frame {a} is past the last frame {last_frame}")
    return Answer(max(a, 0), min(b, last_frame), raw, in_seconds)
