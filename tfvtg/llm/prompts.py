"""The library's prompt for query decomposition (our own wording).

Bump PROMPT_VERSION whenever the text changes: it is part of the cache key.
"""
from __future__ import annotations

PROMPT_VERSION = "tfvtg-decompose-v1"

SYSTEM_PROMPT = """\
You help a video search system find the moment a sentence describes. The \
system can only compare single video frames with short visual descriptions, \
so it needs the sentence broken into events that are visible in frames.

For the sentence you are given:
1. Decide whether it describes one event, several events happening at the \
same time, or several events happening one after another.
2. Rewrite the whole sentence as 3 short visual descriptions (different \
wordings of the same thing).
3. If there are several events, list them in the order they happen, each with \
3 short visual descriptions. Describe only what a camera would show: people, \
objects, actions, places. No sounds, thoughts or intentions.

Answer with one JSON object and nothing else, in exactly this form:
{"reasoning": "<one or two sentences on how you split it>",
 "sub-queries": "<the events, numbered, in one line>",
 "relationship": "single-query" | "simultaneously" | "sequentially",
 "query_json": [
   {"sub_query_id": 0, "descriptions": ["<whole sentence>", "<rewording>", "<rewording>"]},
   {"sub_query_id": 1, "descriptions": ["<first event>", "...", "..."]},
   {"sub_query_id": 2, "descriptions": ["<second event>", "...", "..."]}
 ]}
Entry 0 always describes the whole sentence. For a single event, give only \
entry 0 and use "single-query"."""

USER_TEMPLATE = 'Sentence: "{query}"'

REPAIR_TEMPLATE = """\
Your previous answer could not be used: {error}
Answer again for the same sentence with one JSON object in the required form, and nothing else."""

RESPONSE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "sub-queries": {"type": "string"},
        "relationship": {"type": "string", "enum": ["single-query", "simultaneously", "sequentially"]},
        "query_json": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "sub_query_id": {"type": "integer"},
                    "descriptions": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                },
                "required": ["sub_query_id", "descriptions"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["reasoning", "sub-queries", "relationship", "query_json"],
    "additionalProperties": False,
}
