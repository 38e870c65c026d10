"""LLM query decomposition over any OpenAI-compatible chat-completions server.

Works with OpenAI and with local servers that speak the same protocol (vLLM,
Ollama, llama.cpp server). Replies are validated against TFVTG's published
schema; a reply that breaks it gets one repair request quoting the error, and
if that fails too the query stands as its own single sub-event
(``Decomposition.fallback``) with a warning, so a batch never dies on one bad
reply. Answers are cached persistently (see :mod:`tfvtg.llm_cache`).

The API key comes from the ``api_key`` argument or ``OPENAI_API_KEY`` and is
never written to logs, exceptions, the cache or output files.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .decomposition import Decomposition
from .llm_cache import LLMCache, import_tfvtg_outputs
from .prompts import PROMPT_VERSION, decomposition_messages, repair_message

__all__ = [
    "OpenAIDecomposer", "DecompositionError", "LLMTimeoutError", "LLMConfigurationError", "LLMResponseError",
    "TFVTGResponse", "DECOMPOSITION_JSON_SCHEMA", "extract_json_object", "parse_decomposition",
    "default_decomposer", "LLMCache", "import_tfvtg_outputs",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
_NO_KEY_PLACEHOLDER = "no-key"  # local servers accept any key; the client insists on one


class DecompositionError(RuntimeError):
    """The LLM server could not be used (connection, authentication, HTTP error)."""


class LLMTimeoutError(DecompositionError, TimeoutError):
    """The LLM server did not answer within the configured timeout."""


class LLMConfigurationError(DecompositionError):
    """The server refuses every request (bad key, unknown model, wrong URL); a batch stops on it."""


class LLMResponseError(DecompositionError, ValueError):
    """A reply that is not a valid decomposition (internal; callers see a fallback)."""


# ---------------------------------------------------------------------------
# Schema (TFVTG's published per-query format)


class SubQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sub_query_id: int | None = None
    descriptions: list[str] = Field(min_length=1)

    @field_validator("descriptions")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v for v in cleaned):
            raise ValueError("descriptions must be non-empty strings")
        return cleaned


class TFVTGResponse(BaseModel):
    """One decomposition as the LLM must return it (TFVTG's llm_outputs.json entry)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    reasoning: str = ""
    sub_queries: str = Field(default="", alias="sub-queries")
    relationship: Literal["single-query", "simultaneously", "sequentially"]
    query_json: list[SubQuery] = Field(min_length=1)

    @field_validator("relationship", mode="before")
    @classmethod
    def _relationship_alias(cls, value: Any) -> Any:
        from .decomposition import _RELATION_ALIASES

        if isinstance(value, str):
            return _RELATION_ALIASES.get(value.strip().lower(), value)
        return value

    @field_validator("sub_queries", mode="before")
    @classmethod
    def _sub_queries_text(cls, value: Any) -> Any:
        # Some models answer a list here; the field is informative only.
        if isinstance(value, list):
            return " ".join(f"{i + 1}. {v}" for i, v in enumerate(value))
        return value

    @model_validator(mode="after")
    def _enough_sub_events(self) -> "TFVTGResponse":
        if self.relationship != "single-query" and len(self.query_json) < 3:
            raise ValueError(
                f"relationship {self.relationship!r} needs query_json entry 0 (the whole query) "
                f"and at least two sub-events, got {len(self.query_json)} entries"
            )
        return self

    def to_decomposition(self) -> Decomposition:
        return Decomposition(
            relationship=self.relationship,
            query_descriptions=tuple(self.query_json[0].descriptions),
            sub_events=tuple(tuple(q.descriptions) for q in self.query_json[1:]),
            reasoning=self.reasoning,
        )


# Strict JSON schema for servers with structured output. Kept to the subset
# that OpenAI's strict mode accepts (no minItems; every key required).
DECOMPOSITION_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "sub-queries": {"type": "string"},
        "relationship": {"type": "string", "enum": ["single-query", "simultaneously", "sequentially"]},
        "query_json": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sub_query_id": {"type": "integer"},
                    "descriptions": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["sub_query_id", "descriptions"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["reasoning", "sub-queries", "relationship", "query_json"],
    "additionalProperties": False,
}

_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "tfvtg_decomposition", "schema": DECOMPOSITION_JSON_SCHEMA, "strict": True},
}

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in an LLM reply.

    Accepts a bare object, one inside Markdown code fences, or one with prose
    around it. Raises LLMResponseError when the reply holds no JSON object.
    """
    if not isinstance(text, str) or not text.strip():
        raise LLMResponseError("the reply is empty; expected a JSON object")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                pass
            else:
                if isinstance(obj, dict):
                    return obj
            start = chunk.find("{", start + 1)
    snippet = text.strip()[:120]
    raise LLMResponseError(f"the reply contains no JSON object (it starts {snippet!r})")


def parse_decomposition(text: str) -> Decomposition:
    """Extract and validate a decomposition from an LLM reply.

    Raises LLMResponseError whose message says what is wrong (quoted back to
    the LLM in the repair request).
    """
    obj = extract_json_object(text)
    try:
        return TFVTGResponse.model_validate(obj).to_decomposition()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'object'}: {err['msg']}" for err in exc.errors()
        )
        raise LLMResponseError(f"the JSON does not match the schema ({problems})") from None
    except ValueError as exc:
        raise LLMResponseError(f"the JSON does not match the schema ({exc})") from None


# ---------------------------------------------------------------------------
# The decomposer


class _Redactor:
    def __init__(self, secret: str | None) -> None:
        self.secret = secret if secret and secret != _NO_KEY_PLACEHOLDER else None

    def __call__(self, text: str) -> str:
        if self.secret and self.secret in text:
            text = text.replace(self.secret, "***")
        return text


class OpenAIDecomposer:
    """Decomposes queries with an LLM behind an OpenAI-compatible API.

    Args:
        model: chat model name (``"gpt-4o-mini"``, or what your local server serves).
        base_url: server URL such as ``"http://localhost:8000/v1"``; None means
            OpenAI (or ``OPENAI_BASE_URL``).
        api_key: the key; default ``OPENAI_API_KEY``. Local servers that need
            none work without it when ``base_url`` is given.
        cache: an :class:`LLMCache`, a path to its sqlite file, ``"default"``
            (``~/.cache/tfvtg/llm_cache.sqlite``) or None for no cache.
        timeout: seconds to wait for one request before it counts as timed out.
        max_retries: retries of the ``openai`` client itself on 429, 5xx,
            connection errors and timeouts, with its backoff and ``Retry-After``.
        temperature: sampling temperature (0 for repeatable answers).
        structured_output: ask for JSON-schema structured output; turned off
            for the rest of this instance's life if the server rejects it.
    """

    def __init__(self, model: str = DEFAULT_MODEL, base_url: str | None = None, api_key: str | None = None,
                 cache: LLMCache | str | os.PathLike[str] | None = "default", timeout: float = 60.0,
                 max_retries: int = 3, *, temperature: float = 0.0, structured_output: bool = True) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty model name such as 'gpt-4o-mini'")
        if timeout is None or float(timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise ValueError(
                    "no API key: pass api_key=... or set OPENAI_API_KEY, or give base_url=... "
                    "for a local OpenAI-compatible server (vLLM, Ollama, llama.cpp)"
                )
            key = _NO_KEY_PLACEHOLDER
        self.__key = key  # name-mangled and left out of repr on purpose
        self._redact = _Redactor(key)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.temperature = float(temperature)
        self.structured_output = bool(structured_output)
        self.prompt_version = PROMPT_VERSION
        if cache == "default":
            cache = LLMCache()
        elif cache is not None and not isinstance(cache, LLMCache):
            cache = LLMCache(cache)
        self.cache: LLMCache | None = cache
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.base_url or "OpenAI"
        return f"OpenAIDecomposer(model={self.model!r}, base_url={where!r}, cache={self.cache!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("OpenAIDecomposer holds an API key and is not picklable; build one per process")

    # -- clients ----------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        return {"api_key": self.__key, "base_url": self.base_url, "timeout": self.timeout,
                "max_retries": self.max_retries}

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:  # pragma: no cover - depends on the environment
                    raise ImportError("LLM decomposition needs the openai package: pip install 'tfvtg[llm]'") from None
                self._client = openai.OpenAI(**self._client_kwargs())
            return self._client

    def _async_client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(**self._client_kwargs())

    # -- error mapping ----------------------------------------------------
    def _convert(self, exc: BaseException) -> DecompositionError:
        import openai

        where = self.base_url or "the OpenAI API"
        tries = self.max_retries + 1
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(
                f"LLM request to {where} timed out: no answer within {self.timeout:g} s "
                f"({tries} attempt{'s' if tries > 1 else ''}); raise timeout= or check that the server is up"
            )
        if isinstance(exc, openai.AuthenticationError):
            return LLMConfigurationError(
                f"{where} rejected the API key (HTTP 401); check OPENAI_API_KEY or api_key=")
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMConfigurationError(
                f"{where} denied access (HTTP 403) for model {self.model!r}: {self._redact(str(exc))}")
        if isinstance(exc, openai.NotFoundError):
            return LLMConfigurationError(
                f"{where} answered HTTP 404 for model {self.model!r}: {self._redact(str(exc))}; "
                "check the model name and that base_url ends with /v1"
            )
        if isinstance(exc, openai.APIStatusError):
            return DecompositionError(
                f"{where} answered HTTP {exc.status_code} after {tries} attempt(s): {self._redact(str(exc))}"
            )
        if isinstance(exc, openai.APIConnectionError):
            return DecompositionError(f"could not connect to {where} ({tries} attempt(s)); is the server running?")
        return DecompositionError(f"LLM request to {where} failed: {self._redact(str(exc))}")

    def _is_response_format_rejection(self, exc: BaseException) -> bool:
        import openai

        return self.structured_output and isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError))

    def _request_kwargs(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.structured_output:
            kwargs["response_format"] = _RESPONSE_FORMAT
        return kwargs

    def _note_no_structured_output(self, exc: BaseException) -> None:
        self.structured_output = False
        logger.info("%s rejected JSON-schema structured output (%s); using plain prompting from now on",
                    self.base_url or "the OpenAI API", type(exc).__name__)

    @staticmethod
    def _reply_text(completion: Any) -> str:
        try:
            return completion.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            return ""

    # -- synchronous path -------------------------------------------------
    def _chat(self, messages: list[dict[str, str]]) -> str:
        client = self._sync_client()
        try:
            try:
                completion = client.chat.completions.create(**self._request_kwargs(messages))
            except Exception as exc:
                if not self._is_response_format_rejection(exc):
                    raise
                self._note_no_structured_output(exc)
                completion = client.chat.completions.create(**self._request_kwargs(messages))
        except DecompositionError:
            raise
        except Exception as exc:
            raise self._convert(exc) from None
        return self._reply_text(completion)

    def decompose(self, query: str) -> Decomposition:
        """Decompose one query into ordered sub-events with their temporal relation.

        Returns a cached answer when there is one. A reply that breaks the
        schema gets one repair request; if that fails too the result is
        ``Decomposition.single(query, fallback=True)`` and a warning is logged.

        Raises:
            LLMTimeoutError: the server did not answer within ``timeout`` seconds
                (after the client's retries).
            DecompositionError: the server could not be used (connection, HTTP error).
        """
        query = _check_query(query)
        cached = self._cache_get(query)
        if cached is not None:
            return cached
        messages = decomposition_messages(query)
        return self._finish(query, messages, self._chat(messages), self._chat)

    def _finish(self, query: str, messages: list[dict[str, str]], reply: str,
                chat: Callable[[list[dict[str, str]]], str]) -> Decomposition:
        try:
            dec = parse_decomposition(reply)
        except LLMResponseError as first:
            repair = messages + [{"role": "assistant", "content": reply}, repair_message(str(first))]
            try:
                dec = parse_decomposition(chat(repair))
            except LLMResponseError as second:
                return self._fallback(query, second)
        self._cache_put(query, dec)
        return dec

    # -- asynchronous batch path -------------------------------------------
    async def _achat(self, client: Any, messages: list[dict[str, str]]) -> str:
        try:
            try:
                completion = await client.chat.completions.create(**self._request_kwargs(messages))
            except Exception as exc:
                if not self._is_response_format_rejection(exc):
                    raise
                self._note_no_structured_output(exc)
                completion = await client.chat.completions.create(**self._request_kwargs(messages))
        except Exception as exc:
            raise self._convert(exc) from None
        return self._reply_text(completion)

    async def _adecompose(self, client: Any, query: str) -> Decomposition:
        cached = self._cache_get(query)
        if cached is not None:
            return cached
        messages = decomposition_messages(query)
        reply = await self._achat(client, messages)
        try:
            dec = parse_decomposition(reply)
        except LLMResponseError as first:
            repair = messages + [{"role": "assistant", "content": reply}, repair_message(str(first))]
            try:
                dec = parse_decomposition(await self._achat(client, repair))
            except LLMResponseError as second:
                return self._fallback(query, second)
        self._cache_put(query, dec)
        return dec

    async def adecompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                              on_result: Callable[[int, Decomposition], None] | None = None) -> list[Decomposition]:
        """Async version of :meth:`decompose_many` (use inside a running event loop)."""
        queries = [_check_query(q) for q in queries]
        if int(concurrency) < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        results: list[Decomposition | None] = [None] * len(queries)
        # Identical queries share one request.
        first_index: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            first_index.setdefault(q, []).append(i)
        semaphore = asyncio.Semaphore(int(concurrency))
        bar = None
        if progress and queries:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(queries), desc="decompose", unit="query")
        client = self._async_client()

        async def one(query: str, indices: list[int]) -> None:
            async with semaphore:
                try:
                    dec = await self._adecompose(client, query)
                except LLMConfigurationError:
                    raise  # every other query would fail the same way
                except DecompositionError as exc:
                    logger.warning("query %r: %s; using the query as a single sub-event", query, exc)
                    dec = Decomposition.single(query, fallback=True)
            for i in indices:
                results[i] = dec
                if on_result is not None:
                    on_result(i, dec)
            if bar is not None:
                bar.update(len(indices))

        try:
            await asyncio.gather(*(one(q, idx) for q, idx in first_index.items()))
        finally:
            if bar is not None:
                bar.close()
            await client.close()
        return [r for r in results if r is not None]

    def decompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                       on_result: Callable[[int, Decomposition], None] | None = None) -> list[Decomposition]:
        """Decompose many queries with at most ``concurrency`` requests in flight.

        Returns one Decomposition per query, in the order given. A query whose
        reply cannot be used, or whose request fails (timeout, HTTP error), is
        logged as a warning and comes back as a single-sub-event fallback
        (``.fallback`` is True; fallbacks are not cached, so a re-run retries
        them). ``on_result(index, decomposition)`` is called as each finishes.

        Raises:
            LLMConfigurationError: the server rejects the key, model or URL
                (HTTP 401/403/404); the batch stops, since every query would fail.
        Works from plain code and from inside a running event loop (Jupyter).
        """
        coro = self.adecompose_many(queries, concurrency=concurrency, progress=progress, on_result=on_result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Inside a running loop (e.g. Jupyter): run the batch on a private loop in a thread.
        box: dict[str, Any] = {}

        def runner() -> None:
            try:
                box["value"] = asyncio.run(coro)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=runner, name="tfvtg-decompose")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    # -- cache and fallback -------------------------------------------------
    def _cache_get(self, query: str) -> Decomposition | None:
        if self.cache is None:
            return None
        return self.cache.get(self.model, self.prompt_version, query)

    def _cache_put(self, query: str, dec: Decomposition) -> None:
        if self.cache is not None and not dec.fallback:
            self.cache.put(self.model, self.prompt_version, query, dec)

    def _fallback(self, query: str, error: BaseException) -> Decomposition:
        logger.warning("LLM reply for query %r is unusable after one repair request (%s); "
                       "using the query as a single sub-event", query, self._redact(str(error)))
        return Decomposition.single(query, fallback=True)

    def import_tfvtg_outputs(self, path: str | os.PathLike[str]) -> int:
        """Import a TFVTG ``llm_outputs.json`` into this decomposer's cache.

        Its answers are then returned by :meth:`decompose` without requests.
        Returns the number imported.
        """
        if self.cache is None:
            raise ValueError("this decomposer has no cache (cache=None); give cache='default' or a path")
        return import_tfvtg_outputs(path, cache=self.cache, model=self.model, prompt_version=self.prompt_version)


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty string, got {query!r}")
    return query.strip()


_NOTICE_LOCK = threading.Lock()
_notice_logged = False


def default_decomposer(**kwargs: Any) -> OpenAIDecomposer | None:
    """The decomposer the environment configures, or None.

    An :class:`OpenAIDecomposer` when ``OPENAI_API_KEY`` or
    ``TFVTG_LLM_BASE_URL`` is set (model from ``TFVTG_LLM_MODEL``, default
    gpt-4o-mini). Otherwise logs once "no LLM configured; grounding runs
    VLM-only" and returns None.
    """
    global _notice_logged
    base_url = os.environ.get("TFVTG_LLM_BASE_URL")
    if os.environ.get("OPENAI_API_KEY") or base_url:
        kwargs.setdefault("model", os.environ.get("TFVTG_LLM_MODEL") or DEFAULT_MODEL)
        kwargs.setdefault("base_url", base_url)
        return OpenAIDecomposer(**kwargs)
    with _NOTICE_LOCK:
        if not _notice_logged:
            _notice_logged = True
            logger.warning("no LLM configured; grounding runs VLM-only "
                           "(set OPENAI_API_KEY or TFVTG_LLM_BASE_URL to decompose queries)")
    return None
