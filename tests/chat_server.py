"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

    with ChatServer(script=[Reply(status=429, headers={"Retry-After": "0.01"}), Reply(content="{...}")]) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test")

Each request takes the next scripted ``Reply`` (the last one repeats), or,
when ``responder`` is given, ``responder(request_json) -> Reply``. Every
request is recorded in ``srv.requests`` (path, headers, JSON body).
``srv.max_in_flight`` is the highest number of requests handled at once.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    """One scripted answer: a chat completion with ``content``, or a raw ``body``."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # dict (sent as JSON) or str; overrides content
    delay: float = 0.0  # seconds to wait before answering


def completion_body(content: str, model: str = "test-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def error_body(message: str, code: str = "error") -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any

    @property
    def user_text(self) -> str:
        """The last user message of a chat request."""
        msgs = [m for m in (self.json or {}).get("messages", []) if m.get("role") == "user"]
        return msgs[-1]["content"] if msgs else ""


class ChatServer:
    def __init__(self, script: list[Reply] | None = None,
                 responder: Callable[[Any], Reply] | None = None) -> None:
        self.script = list(script or [])
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _next(self, body: Any) -> Reply:
        if self.responder is not None:
            return self.responder(body)
        with self._lock:
            if not self.script:
                return Reply(status=500, body=error_body("no scripted reply left"))
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def start(self) -> "ChatServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                with server._lock:
                    server.requests.append(RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    reply = server._next(body)
                    if reply.delay and server._stop.wait(reply.delay):
                        return
                    if reply.body is not None:
                        payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                    else:
                        payload = json.dumps(completion_body(reply.content or ""))
                    data = payload.encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server._in_flight -= 1

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
