"""Prompt text for LLM query decomposition (the library's own wording).

``PROMPT_VERSION`` is part of every cache key: change it whenever the text
below changes, so cached answers to an older prompt are not reused.
"""
from __future__ import annotations

__all__ = ["PROMPT_VERSION", "DECOMPOSITION_SYSTEM_PROMPT", "decomposition_messages", "repair_message"]

PROMPT_VERSION = "tfvtg-decompose-v1"

DECOMPOSITION_SYSTEM_PROMPT = """\
You prepare text queries for a video search model. That model compares each \
video frame with a short sentence, so it only recognises what is visible in a \
single frame: people, objects, places, poses and simple actions. It cannot \
follow long stories, reasons, or what happened before or after.

Given one query describing a moment in a video, do the following.
1. Decide whether the query describes one visible event or several. If it \
describes several, split it into sub-events, each simple enough to be seen in \
a frame, and list them in the order they happen in the video.
2. Decide how the sub-events relate in time:
   - "single-query": there is only one event; do not split it.
   - "simultaneously": the sub-events happen at the same time.
   - "sequentially": each sub-event starts after the previous one ends.
3. Write three or more short descriptions for the whole query and for every \
sub-event: different wordings of the same visible content, each a plain \
sentence.

Answer with one JSON object and nothing else, with these keys:
- "reasoning": one or two sentences explaining your split.
- "sub-queries": the sub-events as one numbered line, e.g. "1. ... 2. ...".
- "relationship": "single-query", "simultaneously" or "sequentially".
- "query_json": a list. Entry 0 is {"sub_query_id": 0, "descriptions": [...]} \
describing the whole query. Entries 1, 2, ... are the sub-events in temporal \
order, {"sub_query_id": k, "descriptions": [...]}. For "single-query" give \
entry 0 only; otherwise give at least two sub-events.

Example. Query: "a man opens the fridge and then drinks a glass of milk."
{"reasoning": "Two visible actions happen one after the other.", \
"sub-queries": "1. A man opens the fridge. 2. A man drinks a glass of milk.", \
"relationship": "sequentially", "query_json": [\
{"sub_query_id": 0, "descriptions": ["A man opens the fridge and drinks milk.", \
"A man takes milk from the fridge and drinks it.", "Someone drinks milk after opening a refrigerator."]}, \
{"sub_query_id": 1, "descriptions": ["A man opens the fridge.", "A man pulls the refrigerator door open.", \
"Someone opening a fridge."]}, \
{"sub_query_id": 2, "descriptions": ["A man drinks a glass of milk.", "A man sips milk from a glass.", \
"Someone drinking milk."]}]}
"""


def decomposition_messages(query: str) -> list[dict[str, str]]:
    """The chat messages that ask for the decomposition of ``query``."""
    return [
        {"role": "system", "content": DECOMPOSITION_SYSTEM_PROMPT},
        {"role": "user", "content": f"Query: {query.strip()}"},
    ]


def repair_message(error: str) -> dict[str, str]:
    """A follow-up user message quoting why the previous reply was rejected."""
    return {
        "role": "user",
        "content": (
            "Your previous reply could not be used: "
            f"{error}\nReply again with only the corrected JSON object, following the keys and rules above."
        ),
    }
