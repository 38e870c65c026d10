"""LLM query decomposition: prompts, the answer cache and the OpenAI-compatible client."""
from __future__ import annotations

from .client import DecompositionCache, OpenAIDecomposer, default_decomposer, extract_json, parse_reply

__all__ = ["DecompositionCache", "OpenAIDecomposer", "default_decomposer", "extract_json", "parse_reply"]
