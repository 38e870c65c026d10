"""The NumPro prompt: say what the painted numbers are, then ask which
frames show the event, with a fixed answer format (our own wording)."""
from __future__ import annotations

from dataclasses import dataclass

from tfvtg.errors import InvalidInputError

__all__ = ["PromptTemplate", "DEFAULT_PROMPT"]


@dataclass(frozen=True)
class PromptTemplate:
    """Prompt text; ``{color}``, ``{position}`` and ``{query}`` are filled in.

    Attributes:
        instruction: tells the model what the painted numbers mean.
        question: asks for the span, fixing the answer format.
    """

    instruction: str = ("Every frame of this video has its frame number painted in {color} in the "
                        "{position} corner.")
    question: str = ("Which frames show {query}? Answer only in this format: 'From Frame x to Frame y'.")

    def render(self, query: str, color: str = "red", position: str = "bottom_right") -> str:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query must be a non-empty sentence")
        q = query.strip().rstrip(".?!")
        # "A person ..." reads as "which frames show a person ..."; acronyms stay
        q = q[0].lower() + q[1:] if q[:1].isupper() and not (len(q) > 1 and q[1].isupper()) else q
        where = position.replace("_", " ")
        return " ".join([self.instruction.format(color=color, position=where),
                         self.question.format(query=q)])


DEFAULT_PROMPT = PromptTemplate()
