"""The NumPro prompt: say what the painted numbers (or grid captions) are,
then ask which frames show the event, with a fixed answer format (our own
wording)."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields

from tfvtg.errors import InvalidInputError

__all__ = ["PromptTemplate", "DEFAULT_PROMPT", "clean_query"]


def clean_query(query: str) -> str:
    """The sentence as it reads inside a question: stripped, no final
    punctuation, a leading capital lowered ("A person ..." -> "a person ...";
    acronyms stay)."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query must be a non-empty sentence")
    q = query.strip().rstrip(".?!")
    return q[0].lower() + q[1:] if q[:1].isupper() and not (len(q) > 1 and q[1].isupper()) else q


@dataclass(frozen=True)
class PromptTemplate:
    """Prompt text; ``{color}``, ``{position}`` and ``{query}`` are filled in.

    Attributes:
        instruction: tells the model what the painted numbers mean (frames layout).
        question: asks for the span, fixing the answer format.
        grid_instruction: tells the model how grid images are laid out and
            captioned (grid layout).
        grid_line: one line per grid image, with ``{image}`` (from 1),
            ``{first}``, ``{last}`` (frame numbers) and ``{start}``, ``{end}``
            (seconds), as T2SGrid's text timestamps.
        version: a name for this wording, recorded with results; empty
            means "numpro-1" for the default wording and "custom-<hash>" for
            any other.
    """

    instruction: str = ("Every frame of this video has its frame number painted in {color} in the "
                        "{position} corner.")
    question: str = "Which frames show {query}? Answer only in this format: 'From Frame x to Frame y'."
    grid_instruction: str = ("The images are grids of consecutive video frames, read left to right and top to "
                             "bottom; under each frame is its frame number and its time in seconds, "
                             "as in '12 | 6.0s'.")
    grid_line: str = "Image {image}: frames {first} to {last} ({start:.1f}s to {end:.1f}s)."
    version: str = ""

    @property
    def label(self) -> str:
        """The version recorded with results."""
        if self.version:
            return self.version
        texts = [getattr(self, f.name) for f in fields(self) if f.name != "version"]
        defaults = [f.default for f in fields(self) if f.name != "version"]
        if texts == defaults:
            return "numpro-1"
        return "custom-" + hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:8]

    def render(self, query: str, color: str = "red", position: str = "bottom_right", layout: str = "frames",
               grids: Sequence[tuple[int, int, float, float]] = ()) -> str:
        """The prompt for ``query``.

        Args:
            layout: "frames" (numbers painted on frames) or "grid".
            grids: for the grid layout, (first frame, last frame, start
                seconds, end seconds) of each grid image, in order.
        """
        q = clean_query(query)
        if layout == "grid":
            lines = [self.grid_instruction]
            lines += [self.grid_line.format(image=i + 1, first=a, last=b, start=s, end=e)
                      for i, (a, b, s, e) in enumerate(grids)]
            return " ".join(lines + [self.question.format(query=q)])
        if layout != "frames":
            raise InvalidInputError(f"layout must be 'frames' or 'grid', got {layout!r}")
        where = position.replace("_", " ")
        return " ".join([self.instruction.format(color=color, position=where), self.question.format(query=q)])


DEFAULT_PROMPT = PromptTemplate()
