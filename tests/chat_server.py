"""A real chat-completions HTTP server on 127.0.0.1 for tests.

``ChatServer(script)`` serves POST .../chat/completions; ``script(request, n)``
(n counts requests from 0) returns a ``Reply``. Every request body is kept in
``server.requests``. ``HangUpServer`` accepts connections and closes them at
once (a server that is there but never answers HTTP); ``closed_port_url()``
is a URL where nothing listens.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None          # assistant message text
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None                    # raw JSON body instead of a completion
    delay: float = 0.0                  # seconds to wait before answering


def completion(content: str, model: str = "test-model") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class ChatServer:
    def __init__(self, script: Callable[[dict, int], Reply]):
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = server.script(body, n)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if reply.body is not None else completion(reply.content or "")
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # a short poll interval: shutting the server down costs 0.5 s per test otherwise
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """An OpenAI-style URL on 127.0.0.1 where nothing listens (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


class HangUpServer:
    """Accepts each connection and closes it without a word; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> HangUpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


def decomposition_answer(query: str, relationship: str = "sequentially",
                         rephrasings: tuple[str, ...] = (" again", " once more")) -> str:
    """What an LLM answers in TFVTG's format for ``query``: the query and its
    rephrasings (``query + suffix``) as sub-query 0, and, unless
    "single-query", two sub-events named after it."""
    entries = [{"sub_query_id": 0, "descriptions": [query, *(f"{query}{s}" for s in rephrasings)]}]
    if relationship != "single-query":
        entries += [{"sub_query_id": 1, "descriptions": [f"first of {query}"]},
                    {"sub_query_id": 2, "descriptions": [f"second of {query}"]}]
    return json.dumps({"reasoning": "r", "sub-queries": "1. a 2. b", "relationship": relationship,
                       "query_json": entries})


def query_in(request: dict) -> str:
    """The query a decomposition request asks about (the prompt quotes it)."""
    return request["messages"][1]["content"].split('"', 1)[1].rsplit('"', 1)[0]
