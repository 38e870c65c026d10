"""The FastAPI app behind ``tfvtg serve``: the page, its assets and the JSON API.

Routes (all GET unless said; errors are JSON ``{"error": "words"}`` with an
HTTP status, never a stack trace):

====================================================  ==========================================
``/``                                                 the page
``/static/{name}``                                    its script and style (from memory)
``/api/info``                                         mode, library summary, limits
``/api/videos``                                       the library's videos (id, duration, ...)
``/api/search?q=&top_k=10``                           hits across the library, best first
``/api/videos/{id}/stream``                           the video file (HTTP range requests)
``/api/videos/{id}/thumb?t=SECONDS&w=192``            a JPEG of the frame at t
``/api/videos/{id}/clip?start=&end=&pad=1&mode=``    the moment as an MP4 download
``/api/videos/{id}/curve?q=&start=&end=``             similarity curve, candidates, sub-events
``POST /api/uploads?name=FILE``                       upload a video ("one video" mode; the raw
                                                      body, or multipart/form-data field ``file``)
``/api/uploads/{token}``                              an upload and its encoding state
``/api/uploads/{token}/search?q=&top_k=5``            moments in the uploaded video
``/api/uploads/{token}/stream|thumb|clip|curve``      as for library videos
``/api/jobs/{job}``                                   progress of an encoding job
====================================================  ==========================================
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidInputError, TfvtgError
from ..io import dumps_strict
from .media import RangeNotSatisfiable, content_type, iter_file, parse_range
from .safety import is_loopback, refusal
from .service import Service, Upload, error_status

__all__ = ["create_app", "LOOPBACK_HOSTS", "ASSETS"]

#: Host headers accepted by default: a page on another site that points a
#: DNS name at 127.0.0.1 (DNS rebinding) is refused
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: page assets, read once from the package (never from a request path)
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps_strict(data), status_code=status, media_type="application/json", headers=headers)


def _error(message: str, status: int) -> Response:
    return _json({"error": message, "status": status}, status)


def _host_of(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:7860
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """ASGI middleware: refuses traversal-looking paths and foreign Host
    headers before routing, times every request (``Server-Timing: app``)
    and adds the security headers."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str]):
        self.app = app
        self.allowed = None if "*" in allowed_hosts else {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        why = refusal(raw.split(b"?", 1)[0], scope["path"])
        if why is None and self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if _host_of(host) not in self.allowed:
                why = (f"the Host {host!r} is not this server's name; open the page at "
                       f"http://127.0.0.1:PORT/ (or start the server with --host)")
        if why is not None:
            await _error(f"refused: {why}", 400)(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                headers.append((b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _load_assets() -> dict[str, bytes]:
    root = resources.files("tfvtg.app") / "static"
    return {name: (root / name).read_bytes() for name in ("index.html", *ASSETS)}


def _clip_name(key: str, start: float, end: float) -> str:
    def mss(s: float) -> str:
        s = max(0, int(s))
        return f"{s // 60}m{s % 60:02d}s"

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(key).stem or key)[:80] or "clip"
    return f"{stem}-{mss(start)}-{mss(end)}.mp4"


async def _receive_raw(request: Request, service: Service, name: str, declared: int | None) -> Upload:
    up = service.new_upload(name, declared)
    try:
        with open(up.path, "wb") as f:
            async for chunk in request.stream():
                service.write_chunk(up, f, chunk)
    except BaseException:
        service.drop_upload(up)
        raise
    return up


async def _receive_multipart(request: Request, service: Service, content_type_header: str,
                             declared: int | None) -> Upload:
    """Stream the first file field of a multipart body to disk, counting bytes
    (the form is never spooled whole, so the size limit holds while receiving)."""
    try:
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ModuleNotFoundError:  # python-multipart < 0.0.13
        from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]

    _, params = parse_options_header(content_type_header)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInputError("the multipart upload has no boundary; send the file as the raw body or as the "
                                "form field 'file'")
    slack = 64 * 1024  # the form's own bytes around the file
    limit_declared = None if declared is None else max(0, declared - slack)
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "up": None, "file": None, "done": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")
        _, opts = parse_options_header(disposition)
        filename = opts.get(b"filename")
        if filename is not None and state["up"] is None and not state["done"]:
            up = service.new_upload(filename.decode("utf-8", "replace"), limit_declared)
            state["up"], state["file"] = up, open(up.path, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["file"] is not None:
            service.write_chunk(state["up"], state["file"], data[start:end])

    def on_part_end() -> None:
        if state["file"] is not None:
            state["file"].close()
            state["file"], state["done"] = None, True
        state["headers"] = {}

    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException:
        if state["file"] is not None:
            state["file"].close()
        if state["up"] is not None:
            service.drop_upload(state["up"])
        raise
    if state["up"] is None:
        raise InvalidInputError("the form has no file field; send the video as the form field 'file'")
    return state["up"]


def create_app(library: Any = None, *, encoder: Any = None, decomposer: Any = None, config: Any = None,
               settings: Any = None, service: Service | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, warm_up: bool = True) -> Any:
    """The ASGI app of ``tfvtg serve``.

    Args:
        library: a :class:`tfvtg.Library`, an existing library directory, or
            None ("one video" mode only). The server only reads it.
        encoder, decomposer, config, settings: see :class:`tfvtg.app.Service`.
        service: a ready :class:`Service` (instead of the arguments above).
        allowed_hosts: Host header names accepted (default: loopback names;
            ``["*"]`` accepts any, for a server bound beyond this machine).
        warm_up: load the encoder and coarse index in the background at start.

    Returns:
        The app (FastAPI wrapped in the request guard); ``app.state.service``
        is its :class:`Service`.
    """
    svc = service or Service(library, encoder=encoder, decomposer=decomposer, config=config, settings=settings)
    assets = _load_assets()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if warm_up:
            threading.Thread(target=svc.warm_up, name="tfvtg-warm-up", daemon=True).start()
        else:
            svc.ready.set()
        yield
        svc.close()

    api = FastAPI(title="tfvtg serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    api.state.service = svc

    # -- errors: always words, never a trace ------------------------------------------
    @api.exception_handler(TfvtgError)
    async def tfvtg_error(_: Request, exc: TfvtgError) -> Response:
        return _error(str(exc), error_status(exc))

    @api.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return _error("bad request: " + "; ".join(parts), 400)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(f"no such page or API route: {request.url.path}", 404)
        if exc.status_code == 405:
            return _error(f"{request.method} is not allowed on {request.url.path}", 405)
        return _error(str(exc.detail), exc.status_code)

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        return _error(f"the server failed: {type(exc).__name__}: {exc}", 500)

    # -- the page ---------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(assets["index.html"], media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ASSETS:
            return _error(f"no asset {name!r}", 404)
        return Response(assets[name], media_type=ASSETS[name], headers={"cache-control": "no-cache"})

    @api.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    # -- library ----------------------------------------------------------------------
    @api.get("/api/info")
    def info() -> Response:
        return _json(svc.info())

    @api.get("/api/videos")
    def videos() -> Response:
        return _json({"videos": svc.videos()})

    @api.get("/api/search")
    def search(q: str = Query(..., description="the sentence"), top_k: int = Query(10, ge=1)) -> Response:
        return _json(svc.search(q, top_k))

    # -- media, for library videos and uploads alike ------------------------------------
    def stream(kind: str, key: str, request: Request) -> Response:
        path = svc.source(kind, key)
        size = path.stat().st_size
        media = content_type(path)
        try:
            wanted = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable as exc:
            return Response(json.dumps({"error": str(exc), "status": 416}), status_code=416,
                            media_type="application/json", headers={"content-range": f"bytes */{size}"})
        headers = {"accept-ranges": "bytes", "cache-control": "no-cache"}
        if request.method == "HEAD":
            headers["content-length"] = str(size if wanted is None else wanted.length)
            return Response(status_code=200 if wanted is None else 206, headers=headers, media_type=media)
        if wanted is None:
            headers["content-length"] = str(size)
            return StreamingResponse(iter_file(path), media_type=media, headers=headers)
        headers["content-range"] = wanted.content_range()
        headers["content-length"] = str(wanted.length)
        return StreamingResponse(iter_file(path, wanted.first, wanted.length), status_code=206, media_type=media,
                                 headers=headers)

    def thumb(kind: str, key: str, t: float, w: int | None) -> Response:
        data = svc.thumbnail(kind, key, t, w)
        return Response(data, media_type="image/jpeg", headers={"cache-control": "max-age=3600"})

    def clip(kind: str, key: str, start: float, end: float, pad: float, mode: str) -> Response:
        import secrets

        out = svc.upload_dir / f"clip-{secrets.token_hex(8)}.mp4"
        try:
            made = svc.cut(kind, key, start, end, pad, out, mode)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        name = _clip_name(key if kind == "video" else svc.upload(key).name, made.start, made.end)
        return FileResponse(made.path, media_type="video/mp4", filename=name,
                            headers={"x-clip-method": made.method, "x-clip-start": f"{made.start:.3f}",
                                     "x-clip-end": f"{made.end:.3f}"},
                            background=BackgroundTask(lambda: Path(made.path).unlink(missing_ok=True)))

    def curve(kind: str, key: str, q: str, start: float | None, end: float | None) -> Response:
        return _json(svc.curve(kind, key, q, start, end))

    for kind, prefix in (("video", "/api/videos/{key}"), ("upload", "/api/uploads/{key}")):
        def routes(kind: str = kind, prefix: str = prefix) -> None:
            @api.api_route(prefix + "/stream", methods=["GET", "HEAD"], name=f"{kind}_stream")
            def _stream(key: str, request: Request) -> Response:
                return stream(kind, key, request)

            @api.get(prefix + "/thumb", name=f"{kind}_thumb")
            def _thumb(key: str, t: float = Query(0.0, ge=0), w: int | None = Query(None, ge=16, le=640)) -> Response:
                return thumb(kind, key, t, w)

            @api.get(prefix + "/clip", name=f"{kind}_clip")
            def _clip(key: str, start: float, end: float, pad: float = Query(1.0, ge=0, le=60),
                      mode: str = Query("auto", pattern="^(auto|reencode)$")) -> Response:
                return clip(kind, key, start, end, pad, mode)

            @api.get(prefix + "/curve", name=f"{kind}_curve")
            def _curve(key: str, q: str, start: float | None = None, end: float | None = None) -> Response:
                return curve(kind, key, q, start, end)

        routes()

    @api.get("/api/videos/{key}")
    def video_info(key: str) -> Response:
        from .safety import check_video_id

        lib = svc._need_library()
        rec = lib.info(check_video_id(key))
        return _json({"id": rec.id, "duration": rec.duration, "frames": rec.frames, "fps": rec.fps,
                      "has_source": bool(rec.source)})

    # -- one video ------------------------------------------------------------------------
    @api.post("/api/uploads")
    async def upload(request: Request, name: str | None = None) -> Response:
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else None
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):
            up = await _receive_multipart(request, svc, ctype, size)
        else:
            up = await _receive_raw(request, svc, name or request.headers.get("x-filename") or "upload", size)
        up = await run_in_threadpool(svc.finish_upload, up)
        return _json(up.to_dict(), 201)

    @api.get("/api/uploads/{key}")
    def upload_info(key: str) -> Response:
        return _json(svc.upload(key).to_dict())

    @api.get("/api/uploads/{key}/search")
    def upload_search(key: str, q: str, top_k: int = Query(5, ge=1)) -> Response:
        return _json(svc.upload_search(key, q, top_k))

    @api.get("/api/jobs/{job}")
    def job(job: str) -> Response:
        return _json(svc.job(job))

    guarded = _Guard(api, allowed_hosts)
    guarded.state = api.state  # type: ignore[attr-defined]
    guarded.fastapi = api  # type: ignore[attr-defined]
    return guarded


def allowed_hosts_for(host: str) -> tuple[str, ...]:
    """The Host headers to accept when bound to ``host``: loopback names for
    a loopback bind, any for a bind beyond this machine (the user chose it)."""
    return LOOPBACK_HOSTS + ((host,) if host not in LOOPBACK_HOSTS else ()) if is_loopback(host) else ("*",)
