"""The one place that sets up clients for OpenAI-compatible servers.

:class:`OpenAIEndpoint` holds where a server is (``base_url``), its API key,
and how long to wait (timeouts, retries); it builds the ``openai`` clients
(sync and async) and turns their exceptions into one-line explanations.
Used by tfvtg's query decomposer and by anything else that talks to such a
server (numpro's vision client).

Key hygiene: the key comes from ``api_key=`` or OPENAI_API_KEY and is held
in a wrapper whose repr is ``'***'``; it never appears in the endpoint's
repr, in explanations (a server that echoes it back is redacted), in logs
or caches; the endpoint and everything holding it refuse to be pickled or
copied.
"""
from __future__ import annotations

import math
import operator
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from ..errors import (
    DecompositionError,
    InvalidInputError,
    InvalidTypeError,
    LLMConfigurationError,
    MissingExtraError,
)

__all__ = ["OpenAIEndpoint", "LLMFailure", "LLMUnreachableError", "LLMExtraMissingError", "DEFAULT_URL"]

DEFAULT_URL = "https://api.openai.com/v1"
_NO_KEY = "not-needed"  # what a local server that checks no key is sent


class LLMUnreachableError(DecompositionError, ConnectionError):
    """The LLM server could not be reached (connection refused, DNS, TLS),
    even after the client's retries."""


class LLMExtraMissingError(MissingExtraError, LLMConfigurationError):
    """The ``openai`` package (the ``llm`` extra) is not installed. A
    :class:`~tfvtg.MissingExtraError` and a :class:`~tfvtg.DecompositionError`,
    so grounding degrades to VLM-only instead of stopping."""


def refuse_pickling(obj: object) -> NoReturn:
    """Raise the error for pickling or copying an object that holds an API key."""
    raise InvalidTypeError(f"{type(obj).__name__} holds an API key and cannot be pickled or copied; "
                           "build a new one in each process")


class _Secret:
    """A string that never shows itself (repr, str, pickle)."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        refuse_pickling(self)


FailureKind = Literal["timeout", "unreachable", "auth", "model", "rate_limit", "server", "bad_request",
                      "bad_answer", "other"]


@dataclass(frozen=True)
class LLMFailure:
    """What went wrong with one request, in words a user can act on.

    Attributes:
        kind: "timeout", "unreachable", "auth" (key refused), "model" (model
            or URL refused, HTTP 403/404), "rate_limit", "server" (5xx),
            "bad_request" (other 4xx), "bad_answer" (not a chat completion) or
            "other".
        message: one line, the key redacted.
        status: the HTTP status, when there was one.
    """

    kind: FailureKind
    message: str
    status: int | None = None

    @property
    def configuration(self) -> bool:
        """True when no retry can help (the key, model or URL is wrong)."""
        return self.kind in ("auth", "model")


_SSL_LOCK = threading.Lock()
_SSL_CONTEXT: Any = None


def _ssl_context() -> Any:
    # Building an SSL context loads the CA bundle (~25 ms); one per process,
    # shared by every client, makes a fresh async client cheap.
    global _SSL_CONTEXT
    with _SSL_LOCK:
        if _SSL_CONTEXT is None:
            import httpx

            _SSL_CONTEXT = httpx.create_ssl_context()
        return _SSL_CONTEXT


def _require_openai() -> Any:
    try:
        import openai
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "openai":
            raise  # something inside openai is broken, not missing
        raise LLMExtraMissingError('openai is not installed; install the extra with: pip install "tfvtg[llm]"',
                                   name="openai") from None
    return openai


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception ``exc`` was raised from (the OS error under a
    connection error)."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OpenAIEndpoint:
    """An OpenAI-compatible server: URL, key, timeouts and retries.

    Args:
        base_url: the server (e.g. "http://localhost:8000/v1" for vLLM);
            default: the first of the ``base_url_env`` variables that is set,
            else OpenAI.
        api_key: default OPENAI_API_KEY (surrounding whitespace dropped). A
            local server may need none when ``base_url`` is given.
        timeout: seconds to wait for an answer (per attempt).
        connect_timeout: seconds to wait for a connection (per attempt; at
            most ``timeout``): a server that is not there fails fast even when
            answers may take long.
        max_retries: the openai client's retries, with its exponential backoff
            and ``Retry-After``, on connection errors, timeouts, 408, 409, 429
            and 5xx. The worst case is about
            ``(max_retries + 1) * timeout`` plus backoff (0.5 s doubling, at most 8 s).
        base_url_env: environment variables read for ``base_url``, in order.
        what: how messages name the server ("LLM", "MLLM", ...).

    Raises:
        InvalidInputError: no key and no ``base_url``, or a bad timeout or
            retry count.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 connect_timeout: float = 5.0, max_retries: int = 3,
                 base_url_env: Sequence[str] = ("OPENAI_BASE_URL",), what: str = "LLM"):
        if base_url is not None and not isinstance(base_url, str):
            raise InvalidTypeError(f"base_url must be a URL string, got {type(base_url).__name__}")
        self.base_url: str | None = base_url or next(
            (os.environ[name] for name in base_url_env if os.environ.get(name)), None)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if key is not None and not isinstance(key, str):
            raise InvalidTypeError("api_key must be a string")
        key = (key or "").strip()
        if not key and not self.base_url:
            raise InvalidInputError("no API key: pass api_key=... or set OPENAI_API_KEY "
                                    "(or give base_url=... for a local server that needs none)")
        self.__key = _Secret(key or _NO_KEY)
        self.timeout = _positive_seconds(timeout, "timeout")
        self.connect_timeout = min(_positive_seconds(connect_timeout, "connect_timeout"), self.timeout)
        try:
            retries = operator.index(max_retries)
        except TypeError:
            retries = -1
        if isinstance(max_retries, bool) or retries < 0:
            raise InvalidInputError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        self.max_retries = retries
        self.what = what
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- hygiene ----------------------------------------------------------------
    def __repr__(self) -> str:  # never shows the key
        return (f"OpenAIEndpoint(base_url={self.base_url!r}, timeout={self.timeout:g}, "
                f"max_retries={self.max_retries})")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        refuse_pickling(self)

    @property
    def where(self) -> str:
        """The server's URL, for messages."""
        return self.base_url or DEFAULT_URL

    @property
    def has_key(self) -> bool:
        return self.__key.reveal() != _NO_KEY

    def redact(self, text: str) -> str:
        """``text`` with the key (should a server echo it) replaced by ``***``.
        A key shorter than 8 characters (a local server's placeholder such as
        "x") is replaced only where it stands alone, not inside every word."""
        key = self.__key.reveal()
        if key == _NO_KEY or key not in text:
            return text
        if len(key) >= 8:
            return text.replace(key, "***")
        return re.sub(rf"(?<![A-Za-z0-9_\-]){re.escape(key)}(?![A-Za-z0-9_\-])", "***", text)

    # -- clients ----------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        import httpx

        key = self.__key.reveal()
        if not key.isascii() or not key.isprintable():
            raise LLMConfigurationError("the API key holds characters that cannot be sent in an HTTP header "
                                        "(non-ASCII or control characters); check OPENAI_API_KEY or api_key=")
        return {"api_key": key, "base_url": self.base_url, "max_retries": self.max_retries,
                "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout)}

    def client(self) -> Any:
        """The ``openai.OpenAI`` client for this server (made once, reused;
        thread-safe). Do not keep it beyond the endpoint: it holds the key.

        Raises:
            LLMExtraMissingError: openai is not installed.
            LLMConfigurationError: the key cannot be sent.
        """
        with self._client_lock:
            if self._client is None:
                openai = _require_openai()
                self._client = openai.OpenAI(**self._settings(),
                                             http_client=openai.DefaultHttpxClient(verify=_ssl_context()))
            return self._client

    def async_client(self) -> Any:
        """A new ``openai.AsyncOpenAI`` client (an async client belongs to one
        event loop: make one per loop and ``await client.close()`` after)."""
        openai = _require_openai()
        return openai.AsyncOpenAI(**self._settings(),
                                  http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()))

    # -- errors -----------------------------------------------------------------
    def explain(self, exc: BaseException, model: str | None = None) -> LLMFailure:
        """What a failed request means, in one line without the key."""
        where, what = self.where, self.what
        try:
            openai = _require_openai()
        except LLMExtraMissingError as missing:
            return LLMFailure("other", str(missing))
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APITimeoutError):
            tries = f", {self.max_retries} retries" if self.max_retries else ""
            return LLMFailure("timeout", f"the {what} server at {where} timed out (no answer within "
                                         f"{self.timeout:g} s{tries})")
        if isinstance(exc, openai.APIConnectionError):
            cause = _root_cause(exc)
            reason = _one_line(f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__)
            tries = "once" if self.max_retries == 0 else f"{self.max_retries + 1} times"
            return LLMFailure("unreachable", self.redact(
                f"cannot reach the {what} server at {where} ({reason}; tried {tries}); "
                "check that it runs and the URL"))
        if isinstance(exc, openai.AuthenticationError):
            return LLMFailure("auth", f"the {what} server at {where} rejected the API key (HTTP 401); "
                                      "check OPENAI_API_KEY or api_key=", status)
        if isinstance(exc, (openai.PermissionDeniedError, openai.NotFoundError)):
            return LLMFailure("model", self.redact(_one_line(
                f"the {what} server at {where} refused model {model!r} (HTTP {status}: {exc}); "
                "check the model name and that the URL ends in /v1")), status)
        if isinstance(exc, openai.RateLimitError):
            return LLMFailure("rate_limit", self.redact(_one_line(
                f"the {what} server at {where} is rate-limiting requests (HTTP 429, still after "
                f"{self.max_retries} retries: {exc})")), status)
        if isinstance(exc, openai.APIStatusError):
            kind: FailureKind = "server" if status is not None and status >= 500 else "bad_request"
            return LLMFailure(kind, self.redact(_one_line(
                f"the {what} server at {where} answered HTTP {status}: {exc}")), status)
        if isinstance(exc, openai.APIResponseValidationError):
            return LLMFailure("bad_answer", self.redact(_one_line(
                f"the {what} server at {where} sent something that is not a chat completion ({exc})")))
        return LLMFailure("other", self.redact(_one_line(f"{what} request failed: {type(exc).__name__}: {exc}")))


def _positive_seconds(value: Any, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return seconds
