"""LLM query decomposition over any OpenAI-compatible chat server.

``OpenAIDecomposer`` asks the model (OpenAI, or vLLM / Ollama / llama.cpp
behind ``base_url``) to split a query into ordered sub-events, validates the
JSON it returns against TFVTG's published schema, caches every answer in
sqlite, and never lets one bad reply end a batch: a reply that breaks the
schema gets one repair request, then falls back to the query as its own
single event (``Decomposition.fallback``), with a warning.

Retries and backoff (429, 5xx, connection errors) are the ``openai`` client's
own (``max_retries``); a server that does not answer within ``timeout``
seconds raises :class:`LLMTimeoutError`. The API key is taken from the
argument or OPENAI_API_KEY and never written to logs, errors or caches.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tfvtg.errors import DecompositionError, InvalidInputError, InvalidTypeError, LLMConfigurationError, LLMTimeoutError

from ..core.decomposition import Decomposition
from .prompts import PROMPT_VERSION, REPAIR_TEMPLATE, RESPONSE_SCHEMA, SYSTEM_PROMPT, USER_TEMPLATE

__all__ = ["OpenAIDecomposer", "DecompositionCache", "DecompositionError", "LLMTimeoutError",
           "LLMConfigurationError", "extract_json",
           "parse_reply", "default_decomposer"]

log = logging.getLogger("tfvtg.llm")








# ------------------------------------------------------------------ parsing

class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sub_query_id: int | None = None
    descriptions: list[str] = Field(min_length=1)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    reasoning: str = ""
    sub_queries: str | list[str] = Field(default="", alias="sub-queries")
    relationship: Literal["single-query", "simultaneously", "sequentially"]
    query_json: list[_Entry] = Field(min_length=1)


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in an LLM reply: inside a code fence if there is
    one, else the first ``{...}`` that parses, wherever it stands in the text.

    Raises ValueError when there is none.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("the reply is empty")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for start in [m.start() for m in re.finditer(r"\{", chunk)]:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise InvalidInputError("the reply holds no JSON object")


def parse_reply(text: str) -> Decomposition:
    """Validate a reply against TFVTG's schema; raises ValueError naming the problem."""
    data = extract_json(text)
    try:
        reply = _Reply.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInputError(f"the JSON does not follow the schema ({problems})") from None
    payload = reply.model_dump(by_alias=True)
    return Decomposition.from_tfvtg(payload)


# ------------------------------------------------------------------ cache

class DecompositionCache:
    """Persistent answers keyed by (model, prompt version, query), in sqlite.

    Safe for several processes writing at once (WAL journal, busy timeout).
    Default location: TFVTG_CACHE_DIR/llm.sqlite or ~/.cache/tfvtg/llm.sqlite.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        if path is None:
            from ..cache import cache_root

            path = cache_root() / "llm.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS decompositions (key TEXT PRIMARY KEY, model TEXT, "
                       "prompt_version TEXT, query TEXT, response TEXT, created REAL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @staticmethod
    def key(model: str, prompt_version: str, query: str) -> str:
        return hashlib.sha256(f"{model}\x1f{prompt_version}\x1f{query.strip()}".encode()).hexdigest()

    def get(self, model: str, prompt_version: str, query: str) -> Decomposition | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT response FROM decompositions WHERE key=?",
                             (self.key(model, prompt_version, query),)).fetchone()
        if row is None:
            return None
        try:
            return Decomposition.from_tfvtg(json.loads(row[0]))
        except ValueError:
            return None

    def put(self, model: str, prompt_version: str, query: str, decomposition: Decomposition) -> None:
        self.put_many(model, prompt_version, [(query, decomposition)])

    def put_many(self, model: str, prompt_version: str, items: Iterable[tuple[str, Decomposition]]) -> int:
        rows = [(self.key(model, prompt_version, q), model, prompt_version, q, json.dumps(d.to_tfvtg()), time.time())
                for q, d in items]
        with self._lock, self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO decompositions VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def __len__(self) -> int:
        with self._lock, self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM decompositions").fetchone()[0])

    def import_tfvtg(self, path: str | os.PathLike[str], model: str, prompt_version: str) -> int:
        """Load a TFVTG ``llm_outputs.json`` ({video: {sentences, response}})
        so that those queries cost no request. Returns the number imported;
        malformed responses are skipped with a warning."""
        data = json.loads(Path(path).read_text())
        items, skipped = [], 0
        for video in data.values():
            for sentence, response in zip(video.get("sentences", []), video.get("response", [])):
                if not response:
                    continue  # TFVTG writes {} for a query its LLM call failed on
                try:
                    items.append((sentence, Decomposition.from_tfvtg(response)))
                except ValueError:
                    skipped += 1
        if skipped:
            warnings.warn(f"{skipped} malformed responses in {path} were not imported", stacklevel=2)
        return self.put_many(model, prompt_version, items)


# ------------------------------------------------------------------ client

_Messages = list[dict[str, str]]


class OpenAIDecomposer:
    """Query decomposition with any OpenAI-compatible chat-completions server.

    Args:
        model: the chat model name on that server.
        base_url: server URL (e.g. "http://localhost:8000/v1" for vLLM);
            default: OpenAI (or OPENAI_BASE_URL).
        api_key: default OPENAI_API_KEY; local servers may need none.
        cache: True for the default sqlite cache, a path, a
            :class:`DecompositionCache`, or False/None for none.
        timeout: seconds to wait for one answer before :class:`LLMTimeoutError`.
        max_retries: the openai client's retries (with its backoff) on 429,
            5xx and connection errors.
        structured: ask for JSON-schema structured output; None tries it and
            falls back to plain prompting when the server refuses.
        temperature: sampling temperature.
    """

    def __init__(self, model: str = "gpt-4o-mini", base_url: str | None = None, api_key: str | None = None,
                 cache: bool | str | os.PathLike[str] | DecompositionCache | None = True,
                 timeout: float = 60.0, max_retries: int = 3, structured: bool | None = None,
                 temperature: float = 0.0):
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("TFVTG_LLM_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not self.base_url:
            raise InvalidInputError("no API key: pass api_key=... or set OPENAI_API_KEY "
                             "(or give base_url=... for a local server that needs none)")
        self.__key = key or "not-needed"  # name-mangled, never in repr, errors or pickles
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
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
        self._client = None
        self.prompt_version = PROMPT_VERSION

    def __getstate__(self) -> dict[str, Any]:
        raise InvalidTypeError("OpenAIDecomposer holds an API key and cannot be pickled; build one in each process")

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIDecomposer(model={self.model!r}, base_url={self.base_url!r}, cache={self.cache is not None})"

    # -- hygiene ---------------------------------------------------------------
    def _redact(self, text: str) -> str:
        key = self.__key
        return text.replace(key, "***") if key and key != "not-needed" else text

    def _error(self, exc: BaseException) -> DecompositionError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(f"the LLM server at {self.base_url or 'api.openai.com'} timed out "
                                   f"(no answer within {self.timeout:g} s, {self.max_retries} retries)")
        where = self.base_url or "api.openai.com"
        if isinstance(exc, openai.AuthenticationError):
            return LLMConfigurationError(f"the LLM server at {where} rejected the API key (HTTP 401); "
                                         "check OPENAI_API_KEY or api_key=")
        if isinstance(exc, (openai.PermissionDeniedError, openai.NotFoundError)):
            return LLMConfigurationError(self._redact(
                f"the LLM server at {where} refused model {self.model!r} (HTTP {exc.status_code}: {exc}); "
                "check the model name and that base_url ends in /v1"))
        return DecompositionError(self._redact(f"LLM request failed: {type(exc).__name__}: {exc}"))

    # -- the conversation, transport-free -------------------------------------
    def _conversation(self, query: str) -> Generator[_Messages, str, Decomposition]:
        """Yields the messages to send, receives each reply, returns the
        decomposition: first try, one repair request, then the fallback."""
        messages: _Messages = [{"role": "system", "content": SYSTEM_PROMPT},
                               {"role": "user", "content": USER_TEMPLATE.format(query=query)}]
        reply = yield messages
        try:
            return parse_reply(reply)
        except ValueError as exc:
            first_error = str(exc)
        messages = messages + [{"role": "assistant", "content": reply or ""},
                               {"role": "user", "content": REPAIR_TEMPLATE.format(error=first_error)}]
        reply = yield messages
        try:
            return parse_reply(reply)
        except ValueError as exc:
            warnings.warn(f"LLM gave no usable decomposition for {query!r} ({exc}); "
                          "using the query as a single event", stacklevel=3)
            return Decomposition.single(query, fallback=True)

    def _request_args(self, messages: _Messages) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.structured is not False:
            args["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "decomposition", "schema": RESPONSE_SCHEMA}}
        return args

    def _refused_structured(self, exc: BaseException) -> bool:
        import openai

        if self.structured is None and isinstance(exc, openai.BadRequestError):
            self.structured = False  # this server does not do JSON schema: plain prompting from now on
            log.info("server refused structured output; using plain prompting")
            return True
        return False

    # -- sync -------------------------------------------------------------------
    def _sync_client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(api_key=self.__key, base_url=self.base_url, timeout=self.timeout,
                                         max_retries=self.max_retries)
        return self._client

    def _complete(self, messages: _Messages) -> str:
        import openai

        client = self._sync_client()
        try:
            try:
                resp = client.chat.completions.create(**self._request_args(messages))
            except openai.BadRequestError as exc:
                if not self._refused_structured(exc):
                    raise
                resp = client.chat.completions.create(**self._request_args(messages))
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        return resp.choices[0].message.content or ""

    def decompose(self, query: str) -> Decomposition:
        """Decompose one query (from the cache when it was seen before).

        Raises:
            LLMTimeoutError: the server did not answer in time.
            DecompositionError: the server could not be used at all.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query must be a non-empty sentence")
        cached = self.cache.get(self.model, self.prompt_version, query) if self.cache else None
        if cached is not None:
            return cached
        conv = self._conversation(query)
        messages = next(conv)
        while True:
            try:
                messages = conv.send(self._complete(messages))
            except StopIteration as done:
                result: Decomposition = done.value
                break
        if self.cache is not None and not result.fallback:
            self.cache.put(self.model, self.prompt_version, query, result)
        return result

    # -- async batch ------------------------------------------------------------
    async def _acomplete(self, client: Any, messages: _Messages) -> str:
        import openai

        try:
            try:
                resp = await client.chat.completions.create(**self._request_args(messages))
            except openai.BadRequestError as exc:
                if not self._refused_structured(exc):
                    raise
                resp = await client.chat.completions.create(**self._request_args(messages))
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        return resp.choices[0].message.content or ""

    async def _adecompose(self, client: Any, query: str) -> Decomposition:
        conv = self._conversation(query)
        messages = next(conv)
        while True:
            reply = await self._acomplete(client, messages)
            try:
                messages = conv.send(reply)
            except StopIteration as done:
                return done.value

    async def adecompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                              on_result: Any = None) -> list[Decomposition]:
        """Async form of :meth:`decompose_many`."""
        import openai

        results: list[Decomposition | None] = [None] * len(queries)
        same: dict[str, list[int]] = {}  # a query asked twice in a batch costs one request
        for i, q in enumerate(queries):
            hit = self.cache.get(self.model, self.prompt_version, q) if self.cache else None
            if hit is not None:
                results[i] = hit
                if on_result is not None:
                    on_result(i, hit)
            else:
                same.setdefault(q.strip(), []).append(i)
        todo = [indices[0] for indices in same.values()]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            cached = len(queries) - sum(map(len, same.values()))
            bar = tqdm(total=len(queries), initial=cached, unit="query", desc="decompose")
        semaphore = asyncio.Semaphore(max(1, int(concurrency)))
        client = openai.AsyncOpenAI(api_key=self.__key, base_url=self.base_url, timeout=self.timeout,
                                    max_retries=self.max_retries)

        async def one(i: int) -> None:
            q = queries[i]
            async with semaphore:
                try:
                    dec = await self._adecompose(client, q)
                except LLMConfigurationError:
                    raise  # every other query would fail the same way: stop the batch
                except DecompositionError as exc:  # the batch goes on
                    warnings.warn(f"decomposition failed for {q!r}: {exc}; using the query as a single event",
                                  stacklevel=2)
                    dec = Decomposition.single(q, fallback=True)
            if self.cache is not None and not dec.fallback:
                self.cache.put(self.model, self.prompt_version, q, dec)
            for j in same[q.strip()]:
                results[j] = dec
                if on_result is not None:
                    on_result(j, dec)
            if bar is not None:
                bar.update(len(same[q.strip()]))

        try:
            await asyncio.gather(*(one(i) for i in todo))
        finally:
            await client.close()
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]

    def decompose_many(self, queries: Sequence[str], concurrency: int = 8, progress: bool = True,
                       on_result: Any = None) -> list[Decomposition]:
        """Decompose many queries, ``concurrency`` requests at a time, in order.

        Cached queries cost nothing, and a query repeated in the batch is
        asked once; a query whose request fails (timeout, HTTP error, unusable
        reply) gets a fallback decomposition (and a warning) instead of ending
        the batch. Fallbacks are not cached, so a re-run asks again.
        ``on_result(index, decomposition)`` is called as each one arrives
        (cached ones first).

        Raises:
            LLMConfigurationError: the server rejects the key, the model or the
                URL (HTTP 401/403/404); the batch stops instead of failing every query.
        """
        queries = list(queries)
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InvalidInputError(f"every query must be a non-empty sentence, got {q!r}")
        coro = self.adecompose_many(queries, concurrency, progress, on_result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # inside a running loop (a notebook): run the batch in a helper thread
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["r"] = asyncio.run(coro)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=run, name="tfvtg-decompose")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["r"]

    def import_tfvtg(self, path: str | os.PathLike[str]) -> int:
        """Import a TFVTG ``llm_outputs.json`` into this decomposer's cache."""
        if self.cache is None:
            raise InvalidInputError("this decomposer has no cache to import into (cache=False)")
        return self.cache.import_tfvtg(path, self.model, self.prompt_version)


_NOTICE_SHOWN = False


def default_decomposer() -> OpenAIDecomposer | None:
    """An :class:`OpenAIDecomposer` when an LLM is configured (OPENAI_API_KEY,
    or TFVTG_LLM_BASE_URL with TFVTG_LLM_MODEL), else None after a one-line
    notice that grounding runs VLM-only."""
    global _NOTICE_SHOWN
    base_url = os.environ.get("TFVTG_LLM_BASE_URL")
    if os.environ.get("OPENAI_API_KEY") or base_url:
        return OpenAIDecomposer(model=os.environ.get("TFVTG_LLM_MODEL", "gpt-4o-mini"), base_url=base_url)
    if not _NOTICE_SHOWN:
        _NOTICE_SHOWN = True
        log.warning("no LLM configured (set OPENAI_API_KEY or TFVTG_LLM_BASE_URL): grounding runs VLM-only")
    return None
