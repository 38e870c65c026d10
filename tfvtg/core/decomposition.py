"""Query decomposition: the LLM's split of a query into ordered sub-events.

The interchange format is TFVTG's published LLM output (its
``llm_outputs.json``)::

    {"reasoning": "...", "sub-queries": "...",
     "relationship": "single-query" | "simultaneously" | "sequentially",
     "query_json": [{"sub_query_id": 0, "descriptions": [... whole query ...]},
                    {"sub_query_id": 1, "descriptions": [... first sub-event ...]}, ...]}

``query_json[0]`` rephrases the whole query; ``query_json[1:]`` are the
sub-events in temporal order.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidInputError

__all__ = ["Decomposition", "RELATIONSHIPS", "sanitize_text"]

Relationship = Literal["single-query", "simultaneously", "sequentially"]
RELATIONSHIPS: tuple[str, ...] = ("single-query", "simultaneously", "sequentially")
_RELATION_ALIASES = {
    "single-query": "single-query", "single": "single-query", "singlequery": "single-query",
    "single_query": "single-query",
    "simultaneously": "simultaneously", "simultaneous": "simultaneously", "parallel": "simultaneously",
    "sequentially": "sequentially", "sequential": "sequentially", "sequence": "sequentially",
}


def sanitize_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate pairs that arrived as two code
    units are joined, and a lone surrogate (JSON ``"\\ud800"``, or undecodable
    bytes read with ``surrogateescape``) becomes U+FFFD, so the text can be
    encoded as UTF-8, stored and written everywhere."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clean_descriptions(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInputError(f"{where} must be a list of strings, got {type(value).__name__}")
    out = []
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{where}[{i}] must be a non-empty string, got {text!r}")
        out.append(sanitize_text(text))
    if not out:
        raise InvalidInputError(f"{where} is empty: each entry needs at least one description")
    return tuple(out)


@dataclass(frozen=True)
class Decomposition:
    """An LLM decomposition of one query.

    Attributes:
        relationship: how the sub-events relate in time: "single-query",
            "simultaneously" (they overlap) or "sequentially" (each starts
            after the previous one ends).
        query_descriptions: rephrasings of the whole query (may be empty).
        sub_events: the sub-events in temporal order, each a tuple of
            descriptions that a frame-level model can see.
        reasoning: the LLM's explanation, kept for inspection.
        fallback: True when the LLM's answer could not be used and the query
            stands as its own single sub-event.
    """

    relationship: Relationship
    query_descriptions: tuple[str, ...] = ()
    sub_events: tuple[tuple[str, ...], ...] = ()
    reasoning: str = ""
    fallback: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        rel = _RELATION_ALIASES.get(str(self.relationship).strip().lower())
        if rel is None:
            raise InvalidInputError(
                f"unknown relationship {self.relationship!r}; expected one of {list(RELATIONSHIPS)}"
            )
        object.__setattr__(self, "relationship", rel)
        if self.query_descriptions:
            object.__setattr__(self, "query_descriptions",
                               _clean_descriptions(self.query_descriptions, "query_descriptions"))
        else:
            object.__setattr__(self, "query_descriptions", ())
        events = tuple(_clean_descriptions(ev, f"sub_events[{i}]") for i, ev in enumerate(self.sub_events))
        object.__setattr__(self, "sub_events", events)
        object.__setattr__(self, "reasoning", sanitize_text(str(self.reasoning or "")))

    @classmethod
    def single(cls, query: str, *, fallback: bool = False) -> Decomposition:
        """The query as its own single sub-event (what a failed LLM call falls back to)."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string")
        return cls("single-query", (query,), (), "", fallback)

    @classmethod
    def from_tfvtg(cls, data: Mapping[str, Any]) -> Decomposition:
        """Parse one response in TFVTG's published LLM-output format.

        Raises ValueError naming the missing or malformed field.
        """
        if isinstance(data, Decomposition):
            return data
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a decomposition must be a dict in TFVTG's format, got {type(data).__name__}")
        if "relationship" not in data:
            raise InvalidInputError("decomposition is missing 'relationship' "
                             f"(one of {list(RELATIONSHIPS)})")
        if "query_json" not in data:
            raise InvalidInputError("decomposition is missing 'query_json' (a list of {'descriptions': [...]} "
                             "entries: the whole query first, then the sub-events in order)")
        entries = data["query_json"]
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
            raise InvalidInputError("decomposition 'query_json' must be a non-empty list")
        descs = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "descriptions" not in entry:
                raise InvalidInputError(f"decomposition query_json[{i}] has no 'descriptions' list")
            descs.append(_clean_descriptions(entry["descriptions"], f"query_json[{i}].descriptions"))
        return cls(
            relationship=data["relationship"],
            query_descriptions=descs[0],
            sub_events=tuple(descs[1:]),
            reasoning=str(data.get("reasoning", "") or ""),
            fallback=bool(data.get("fallback", False)),
        )

    def to_tfvtg(self) -> dict[str, Any]:
        """This decomposition in TFVTG's published LLM-output format."""
        entries = [{"sub_query_id": 0, "descriptions": list(self.query_descriptions)}]
        entries += [{"sub_query_id": i + 1, "descriptions": list(ev)} for i, ev in enumerate(self.sub_events)]
        sub_queries = " ".join(f"{i + 1}. {ev[0]}" for i, ev in enumerate(self.sub_events)) or \
            (self.query_descriptions[0] if self.query_descriptions else "")
        out: dict[str, Any] = {
            "reasoning": self.reasoning,
            "sub-queries": sub_queries,
            "relationship": self.relationship,
            "query_json": entries,
        }
        if self.fallback:
            out["fallback"] = True
        return out
