"""What an LLM reply must hold: TFVTG's published decomposition schema.

:func:`extract_json` finds the JSON object in a reply (bare, in a code
fence, or with prose around it); :func:`parse_reply` validates it and turns
it into a :class:`~tfvtg.Decomposition`. Text is sanitized on the way in
(:func:`sanitize_text`): a lone surrogate in a reply becomes U+FFFD instead
of breaking every later write.
"""
from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.decomposition import Decomposition, sanitize_text
from ..errors import InvalidInputError

__all__ = ["extract_json", "parse_reply", "sanitize_text", "ReplyModel"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
# A reply is a few hundred characters; a hostile or broken one must not cost
# a raw_decode attempt at every one of thousands of braces.
_MAX_OBJECT_STARTS = 64


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sub_query_id: Any = None  # the order of query_json carries the meaning; the id is not used
    descriptions: list[str] = Field(min_length=1)


class ReplyModel(BaseModel):
    """One decomposition reply. Only ``relationship`` and ``query_json`` carry
    meaning; ``reasoning`` is kept as text, ``sub-queries`` is ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    reasoning: str = ""
    relationship: Literal["single-query", "simultaneously", "sequentially"]
    query_json: list[_Entry] = Field(min_length=1)

    @field_validator("reasoning", mode="before")
    @classmethod
    def _any_text(cls, value: Any) -> str:
        return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in an LLM reply: inside a code fence if there is
    one, else the first ``{...}`` that parses, wherever it stands in the text.

    Raises:
        InvalidInputError (a ValueError): the reply is empty or holds no JSON object.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("the reply is empty")
    text = sanitize_text(text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for n, match in enumerate(re.finditer(r"\{", chunk)):
            if n >= _MAX_OBJECT_STARTS:
                break
            try:
                obj, _ = decoder.raw_decode(chunk, match.start())
            except (ValueError, RecursionError):  # not JSON here, or nested past Python's recursion limit
                continue
            if isinstance(obj, dict):
                return obj
    raise InvalidInputError("the reply holds no JSON object")


def parse_reply(text: str) -> Decomposition:
    """Validate a reply against TFVTG's schema.

    Raises:
        InvalidInputError (a ValueError) naming the problem; the message is
        what the repair request quotes back to the model.
    """
    data = extract_json(text)
    try:
        reply = ReplyModel.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInputError(f"the JSON does not follow the schema ({problems})") from None
    payload = {"reasoning": reply.reasoning, "relationship": reply.relationship,
               "query_json": [{"descriptions": entry.descriptions} for entry in reply.query_json]}
    return Decomposition.from_tfvtg(payload)
