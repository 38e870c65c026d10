"""LLM query decomposition.

- :mod:`.prompts`: the prompt and its version (part of every cache key).
- :mod:`.schema`: what a reply must hold; :func:`extract_json`,
  :func:`parse_reply`, :func:`sanitize_text`.
- :mod:`.cache`: :class:`DecompositionCache`, the sqlite answer cache.
- :mod:`.openai_setup`: :class:`OpenAIEndpoint`, the one setup of an
  OpenAI-compatible server (URL, key hygiene, timeouts, retries, errors),
  shared by every client that talks to such a server.
- :mod:`.client`: :class:`OpenAIDecomposer` (sync and async, one
  implementation) and :func:`default_decomposer` (from the environment).
"""
from __future__ import annotations

from .cache import DecompositionCache
from .client import ENV_CONNECT_TIMEOUT, ENV_MAX_RETRIES, ENV_TIMEOUT, OpenAIDecomposer, default_decomposer
from .openai_setup import LLMExtraMissingError, LLMFailure, LLMUnreachableError, OpenAIEndpoint
from .prompts import PROMPT_VERSION
from .schema import extract_json, parse_reply, sanitize_text

__all__ = ["DecompositionCache", "OpenAIDecomposer", "default_decomposer", "extract_json", "parse_reply",
           "sanitize_text", "OpenAIEndpoint", "LLMFailure", "LLMUnreachableError", "LLMExtraMissingError",
           "PROMPT_VERSION", "ENV_TIMEOUT", "ENV_CONNECT_TIMEOUT", "ENV_MAX_RETRIES"]
