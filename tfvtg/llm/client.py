"""LLM query decomposition over any OpenAI-compatible chat server.

``OpenAIDecomposer`` asks the model (OpenAI, or vLLM / Ollama / llama.cpp
behind ``base_url``) to split a query into ordered sub-events, validates the
JSON it returns against TFVTG's published schema (:mod:`.schema`), caches
every answer (:mod:`.cache`), and never lets one bad reply end a batch: a
reply that breaks the schema gets one repair request, then falls back to the
query as its own single event (``Decomposition.fallback``), with a warning.

One implementation serves both worlds: the conversation is async, and the
sync methods run it on an event loop of their own (in a helper thread when
the caller is inside a running loop, e.g. a notebook). The server, key,
timeouts and retries are an :class:`~tfvtg.llm.OpenAIEndpoint`.

Every failure to get an answer is a :class:`~tfvtg.DecompositionError`:
:class:`~tfvtg.LLMTimeoutError`, :class:`LLMUnreachableError`,
:class:`~tfvtg.LLMConfigurationError` (key, model or URL refused; openai not
installed) or a plain ``DecompositionError`` (other HTTP errors, an answer
that is not a chat completion), so a :class:`~tfvtg.Grounder` degrades to
VLM-only instead of stopping.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ..core.decomposition import Decomposition, sanitize_text
from ..errors import (
    DecompositionError,
    InvalidInputError,
    LLMConfigurationError,
    LLMTimeoutError,
    TfvtgError,
)
from ._warnings import warn_at_caller
from .cache import DecompositionCache
from .openai_setup import LLMUnreachableError, OpenAIEndpoint, _require_openai, refuse_pickling
from .prompts import PROMPT_VERSION, REPAIR_TEMPLATE, RESPONSE_SCHEMA, SYSTEM_PROMPT, USER_TEMPLATE
from .schema import extract_json, parse_reply

__all__ = ["OpenAIDecomposer", "DecompositionCache", "DecompositionError", "LLMTimeoutError",
           "LLMConfigurationError", "LLMUnreachableError", "extract_json", "parse_reply", "default_decomposer",
           "ENV_TIMEOUT", "ENV_CONNECT_TIMEOUT", "ENV_MAX_RETRIES"]

log = logging.getLogger("tfvtg.llm")

_T = TypeVar("_T")
_Messages = list[dict[str, str]]
OnResult = Callable[[int, Decomposition], Any]
OnFailure = Callable[[int, DecompositionError], Any]

# A batch stops asking a server it has never reached after this many queries
# in a row failed to connect: the rest would fail the same way, each after
# the client's retries.
_UNREACHABLE_STREAK = 4


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"the query must be a non-empty sentence, got {query!r}")
    return sanitize_text(query)


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from sync code, also from inside a running
    event loop (then on a helper thread, whose errors are re-raised here)."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:  # (outside the except block: errors inside must not chain to that RuntimeError)
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="tfvtg-llm", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _unusable_warning(query: str, reason: str, count: int = 1, total: int = 1) -> str:
    what = f"for {query!r}" if total == 1 else f"for {count} of {total} queries (first: {query!r})"
    return f"LLM gave no usable decomposition {what} ({reason}); using the query as a single event"


class OpenAIDecomposer:
    """Query decomposition with any OpenAI-compatible chat-completions server.

    Args:
        model: the chat model name on that server.
        base_url: server URL (e.g. "http://localhost:8000/v1" for vLLM);
            default: OPENAI_BASE_URL, else TFVTG_LLM_BASE_URL, else OpenAI.
        api_key: default OPENAI_API_KEY; local servers may need none.
        cache: True for the default sqlite cache (bypassed with a warning if
            it is unusable), a path (:class:`~tfvtg.CacheError` if it cannot
            work at all), a :class:`DecompositionCache`, or False/None for none.
        timeout: seconds to wait for one answer before :class:`LLMTimeoutError`.
        max_retries: the openai client's retries (with its backoff) on 429,
            5xx, timeouts and connection errors.
        structured: ask for JSON-schema structured output; None tries it and
            falls back to plain prompting when the server refuses.
        temperature: sampling temperature.
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
    """

    def __init__(self, model: str = "gpt-4o-mini", base_url: str | None = None, api_key: str | None = None,
                 cache: bool | str | os.PathLike[str] | DecompositionCache | None = True,
                 timeout: float = 60.0, max_retries: int = 3, structured: bool | None = None,
                 temperature: float = 0.0, *, connect_timeout: float = 5.0):
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a model name, got {model!r}")
        self.model = model
        self.endpoint = OpenAIEndpoint(base_url, api_key, timeout=timeout, connect_timeout=connect_timeout,
                                       max_retries=max_retries,
                                       base_url_env=("OPENAI_BASE_URL", "TFVTG_LLM_BASE_URL"))
        self.structured = structured
        self.temperature = temperature
        if cache is True:
            self.cache: DecompositionCache | None = DecompositionCache()
        elif isinstance(cache, DecompositionCache):
            self.cache = cache
        elif cache:
            self.cache = DecompositionCache(cache)
        else:
            self.cache = None
        self.prompt_version = PROMPT_VERSION

    # -- settings, hygiene ---------------------------------------------------------
    @property
    def base_url(self) -> str | None:
        return self.endpoint.base_url

    @property
    def timeout(self) -> float:
        return self.endpoint.timeout

    @property
    def max_retries(self) -> int:
        return self.endpoint.max_retries

    def __reduce_ex__(self, protocol: Any) -> Any:
        refuse_pickling(self)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIDecomposer(model={self.model!r}, base_url={self.base_url!r}, cache={self.cache is not None})"

    def _error(self, exc: BaseException) -> DecompositionError:
        failure = self.endpoint.explain(exc, self.model)
        if failure.kind == "timeout":
            return LLMTimeoutError(failure.message)
        if failure.kind == "unreachable":
            return LLMUnreachableError(failure.message)
        if failure.configuration:
            return LLMConfigurationError(failure.message)
        return DecompositionError(failure.message)

    # -- the cache -----------------------------------------------------------------
    def _cached(self, query: str, video: str | None) -> Decomposition | None:
        return self.cache.get(self.model, self.prompt_version, query, video) if self.cache is not None else None

    def _store(self, query: str, decomposition: Decomposition) -> None:
        # the model saw only the sentence: its answer is the sentence's, for every video
        if self.cache is not None and not decomposition.fallback:
            self.cache.put(self.model, self.prompt_version, query, decomposition)

    # -- the conversation (the one implementation) -------------------------------------
    def _request_args(self, messages: _Messages) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.structured is not False:
            args["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "decomposition", "schema": RESPONSE_SCHEMA}}
        return args

    async def _complete(self, client: Any, messages: _Messages) -> str:
        openai = _require_openai()
        try:
            try:
                resp = await client.chat.completions.create(**self._request_args(messages))
            except openai.BadRequestError:
                if self.structured is not None:
                    raise
                self.structured = False  # this server does not do JSON schema: plain prompting from now on
                log.info("server refused structured output; using plain prompting")
                resp = await client.chat.completions.create(**self._request_args(messages))
        except TfvtgError:
            raise
        except Exception as exc:  # whatever the transport lets through is a failed request, never a crash
            raise self._error(exc) from None
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            raise DecompositionError(f"the LLM server at {self.endpoint.where} sent something that is not a "
                                     f"chat completion ({type(resp).__name__})") from None
        return sanitize_text(content) if isinstance(content, str) else ""

    async def _converse(self, client: Any, query: str) -> tuple[Decomposition, str | None]:
        """The decomposition, and why the replies were unusable when it is a
        fallback: first try, one repair request quoting the error, then the
        query alone. Raises DecompositionError when a request fails."""
        messages: _Messages = [{"role": "system", "content": SYSTEM_PROMPT},
                               {"role": "user", "content": USER_TEMPLATE.format(query=query)}]
        reply = await self._complete(client, messages)
        try:
            return parse_reply(reply), None
        except InvalidInputError as exc:
            first_error = str(exc)
        messages = messages + [{"role": "assistant", "content": reply},
                               {"role": "user", "content": REPAIR_TEMPLATE.format(error=first_error)}]
        reply = await self._complete(client, messages)
        try:
            return parse_reply(reply), None
        except InvalidInputError as exc:
            return Decomposition.single(query, fallback=True), str(exc)

    async def _decompose_one(self, query: str, video: str | None) -> tuple[Decomposition, str | None]:
        cached = self._cached(query, video)
        if cached is not None:
            return cached, None
        client = self.endpoint.async_client()
        try:
            dec, unusable = await self._converse(client, query)
        finally:
            await client.close()
        self._store(query, dec)
        return dec, unusable

    # -- one query ---------------------------------------------------------------------
    def decompose(self, query: str, video: str | None = None) -> Decomposition:
        """Decompose one query (from the cache when it was seen before).

        ``video`` picks that video's own imported answer when the cache holds
        one (see :meth:`DecompositionCache.import_tfvtg`); otherwise the
        sentence's answer is used.

        Raises:
            LLMTimeoutError: the server did not answer in time.
            LLMUnreachableError: the server could not be reached.
            LLMConfigurationError: the key, model or URL was refused.
            DecompositionError: any other failed request.
        """
        query = _check_query(query)
        cached = self._cached(query, video)  # no event loop for a cache hit
        if cached is not None:
            return cached
        dec, unusable = _run_sync(self._decompose_one(query, video))
        if unusable:
            warn_at_caller(_unusable_warning(query, unusable))
        return dec

    async def adecompose(self, query: str, video: str | None = None) -> Decomposition:
        """Async form of :meth:`decompose`."""
        query = _check_query(query)
        dec, unusable = await self._decompose_one(query, video)
        if unusable:
            warn_at_caller(_unusable_warning(query, unusable))
        return dec

    # -- many queries ------------------------------------------------------------------
    async def _batch(self, queries: list[str], videos: list[str | None], concurrency: int, progress: bool,
                     on_result: OnResult | None, on_failure: OnFailure | None) -> tuple[list[Decomposition], list[str]]:
        """The batch, and the warnings to give the caller afterwards."""
        results: list[Decomposition | None] = [None] * len(queries)
        groups: dict[str, list[int]] = {}  # a sentence asked twice in a batch costs one request
        for i, (q, video) in enumerate(zip(queries, videos)):
            hit = self._cached(q, video)
            if hit is not None:
                results[i] = hit
                if on_result is not None:
                    on_result(i, hit)
            else:
                groups.setdefault(q.strip(), []).append(i)
        if not groups:
            return [r for r in results if r is not None], []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(queries), initial=len(queries) - sum(map(len, groups.values())), unit="query",
                       desc="decompose")
        semaphore = asyncio.Semaphore(max(1, int(concurrency)))
        failures: list[tuple[str, DecompositionError]] = []
        unusable: list[tuple[str, str]] = []
        state: dict[str, Any] = {"answered": 0, "unreachable_streak": 0, "unreachable": None, "stop": None}

        async def one(indices: list[int]) -> None:
            q = queries[indices[0]]
            async with semaphore:
                if state["stop"] is not None:
                    return  # the server refused the key or model: nothing more is asked
                error: DecompositionError | None = state["unreachable"]
                dec = reason = None
                if error is None:
                    try:
                        dec, reason = await self._converse(client, q)
                        state["answered"] += 1
                        state["unreachable_streak"] = 0
                    except LLMConfigurationError as exc:
                        state["stop"] = exc
                        return
                    except LLMUnreachableError as exc:
                        error = exc
                        state["unreachable_streak"] += 1
                        if not state["answered"] and state["unreachable_streak"] >= _UNREACHABLE_STREAK:
                            state["unreachable"] = exc
                    except DecompositionError as exc:
                        error = exc
            if dec is None:
                assert error is not None
                failures.append((q, error))
                dec = Decomposition.single(q, fallback=True)
            elif reason is not None:
                unusable.append((q, reason))
            self._store(q, dec)
            for j in indices:
                results[j] = dec
                if on_result is not None:
                    on_result(j, dec)
                if error is not None and on_failure is not None:
                    on_failure(j, error)
            if bar is not None:
                bar.update(len(indices))

        client = self.endpoint.async_client()
        try:
            await asyncio.gather(*(one(indices) for indices in groups.values()))
        finally:
            await client.close()
            if bar is not None:
                bar.close()
        if state["stop"] is not None:
            raise state["stop"]
        notes = []
        if failures:
            q, error = failures[0]
            notes.append(f"LLM decomposition failed for {len(failures)} of {len(groups)} distinct queries asked "
                         f"(first: {q!r}: {error}); each uses the query as a single event")
        if unusable:
            notes.append(_unusable_warning(unusable[0][0], unusable[0][1], len(unusable), len(groups)))
        return [r for r in results if r is not None], notes

    def _check_batch(self, queries: Sequence[str], videos: Sequence[str | None] | None
                     ) -> tuple[list[str], list[str | None]]:
        if isinstance(queries, str):
            raise InvalidInputError("decompose_many takes a list of sentences; for one use decompose(query)")
        checked = []
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InvalidInputError(f"every query must be a non-empty sentence, got {q!r}")
            checked.append(sanitize_text(q))
        video_list: list[str | None] = [None] * len(checked) if videos is None else list(videos)
        if len(video_list) != len(checked):
            raise InvalidInputError(f"got {len(video_list)} videos for {len(checked)} queries")
        return checked, video_list

    def decompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                       on_result: OnResult | None = None, *, videos: Sequence[str | None] | None = None,
                       on_failure: OnFailure | None = None) -> list[Decomposition]:
        """Decompose many queries, ``concurrency`` requests at a time, in order.

        Cached queries cost nothing, and a sentence repeated in the batch is
        asked once; ``videos`` (one per query) picks imported per-video
        answers from the cache. A query whose request fails (timeout, HTTP
        error, unreachable server) or whose replies stay unusable gets a
        fallback decomposition instead of ending the batch, and the batch ends
        with one warning per kind of trouble, attributed to the caller's line.
        Fallbacks are not cached, so a re-run asks again. After four queries
        in a row could not connect (and none ever did), the rest are not
        asked: they fail the same way at once.

        ``on_result(index, decomposition)`` is called as each answer arrives
        (cached ones first); ``on_failure(index, error)`` for each query whose
        request failed (its fallback also goes to ``on_result``).

        Raises:
            LLMConfigurationError: the server refused the key, the model or the
                URL (HTTP 401/403/404), or openai is not installed; the batch
                stops instead of failing every query.
        """
        checked, video_list = self._check_batch(queries, videos)
        results, notes = _run_sync(self._batch(checked, video_list, concurrency, progress, on_result, on_failure))
        for note in notes:
            warn_at_caller(note)
        return results

    async def adecompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                              on_result: OnResult | None = None, *, videos: Sequence[str | None] | None = None,
                              on_failure: OnFailure | None = None) -> list[Decomposition]:
        """Async form of :meth:`decompose_many`."""
        checked, video_list = self._check_batch(queries, videos)
        results, notes = await self._batch(checked, video_list, concurrency, progress, on_result, on_failure)
        for note in notes:
            warn_at_caller(note)
        return results

    def import_tfvtg(self, path: str | os.PathLike[str]) -> int:
        """Import a TFVTG ``llm_outputs.json`` into this decomposer's cache
        (per (video, sentence); see :meth:`DecompositionCache.import_tfvtg`)."""
        if self.cache is None:
            raise InvalidInputError("this decomposer has no cache to import into (cache=False)")
        return self.cache.import_tfvtg(path, self.model, self.prompt_version)


# The decomposer ``ground()`` builds from the environment must give up fast
# when the server is not there: a refused connection fails in about 1.5 s
# (2 retries with backoff), an unroutable host in about 17 s (5 s connect
# timeout, 3 attempts); an answer may take 20 s.
ENV_TIMEOUT = 20.0
ENV_CONNECT_TIMEOUT = 5.0
ENV_MAX_RETRIES = 2

_NOTICE_SHOWN = False


def default_decomposer() -> OpenAIDecomposer | None:
    """An :class:`OpenAIDecomposer` when an LLM is configured (OPENAI_API_KEY,
    or TFVTG_LLM_BASE_URL; TFVTG_LLM_MODEL names the model, default
    gpt-4o-mini), with short timeouts (``ENV_TIMEOUT``, ``ENV_CONNECT_TIMEOUT``,
    ``ENV_MAX_RETRIES``); else None after a one-line notice that grounding runs
    VLM-only."""
    global _NOTICE_SHOWN
    base_url = os.environ.get("TFVTG_LLM_BASE_URL", "").strip() or None
    if os.environ.get("OPENAI_API_KEY", "").strip() or base_url:
        return OpenAIDecomposer(model=os.environ.get("TFVTG_LLM_MODEL", "").strip() or "gpt-4o-mini",
                                base_url=base_url, timeout=ENV_TIMEOUT, connect_timeout=ENV_CONNECT_TIMEOUT,
                                max_retries=ENV_MAX_RETRIES)
    if not _NOTICE_SHOWN:
        _NOTICE_SHOWN = True
        log.warning("no LLM configured (set OPENAI_API_KEY or TFVTG_LLM_BASE_URL): grounding runs VLM-only")
    return None
