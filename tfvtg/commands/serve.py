"""``tfvtg serve [LIBRARY_DIR]``: a local web page to search a library and watch the moments."""
from __future__ import annotations

import argparse
import socket
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="a local web page: search a library, watch the moments",
        description="Start a web page on this machine: type a sentence, see the moments across the library's "
                    "videos, click one to watch it, see its similarity curve, cut it as an MP4. Without "
                    "LIBRARY_DIR the page works on one uploaded video. The library is only read. "
                    "Needs the app extra: pip install \"tfvtg[app]\".")
    p.add_argument("library", metavar="LIBRARY_DIR", nargs="?", default=None,
                   help="a library built with `tfvtg index` (omit for the one-video mode only)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it to "
                        "the network, with no login)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--encoder", "--model", dest="encoder", default=None, metavar="NAME_OR_PATH",
                   help="encoder for queries and uploads: a registry name (e.g. blip2-coco) or a model "
                        "directory (default: the one the library was built with, else blip2-coco)")
    p.add_argument("--preset", default=None, help="grounding preset (default: default)")
    p.add_argument("--llm", default=None, metavar="MODEL",
                   help="decompose each query into sub-events with this chat model on an OpenAI-compatible "
                        "server (OPENAI_API_KEY, OPENAI_BASE_URL); the sub-events are drawn on the curve")
    p.add_argument("--max-upload-mb", type=float, default=2048.0,
                   help="largest upload in the one-video mode, MiB (default: %(default)s)")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"tfvtg serve: {message}", file=sys.stderr)
    return 2


def _report_warm_up(service: object) -> None:
    """One line on the terminal when the model could not be loaded at start
    (the page shows it too): otherwise the first search is where it shows."""
    ready = getattr(service, "ready", None)
    if ready is None:
        return
    ready.wait()
    error = getattr(service, "warm_error", None)
    if error:
        print(f"tfvtg serve: warning: the model could not be loaded ({' '.join(str(error).split())}); "
              "searches will fail: stop the server and give a working --encoder", file=sys.stderr)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the app loads so that a taken port is
    one line, not a server log."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from ..errors import TfvtgError

    try:
        from ..app import require_app

        require_app()
    except ImportError as exc:
        return _fail(str(exc))
    import uvicorn

    from ..app.safety import bind_warning
    from ..app.server import allowed_hosts_for, create_app
    from ..app.service import Service, Settings, open_library

    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0-65535, got {args.port}")
    if not args.max_upload_mb > 0:
        return _fail(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    try:
        library = None
        if args.library is not None:
            library = open_library(args.library, encoder=args.encoder, config=args.preset)
        decomposer = None
        if args.llm:
            from ..llm import OpenAIDecomposer

            decomposer = OpenAIDecomposer(model=args.llm)
        settings = Settings(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
        service = Service(library, encoder=args.encoder, decomposer=decomposer, config=args.preset,
                          settings=settings)
    except (TfvtgError, OSError, ValueError, ImportError) as exc:
        return _fail(str(exc))
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        service.close()
        return _fail(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                     "pick another port with --port (0 picks a free one)")
    host, port = sock.getsockname()[:2]
    app = create_app(service=service, allowed_hosts=allowed_hosts_for(args.host))
    shown = f"[{host}]" if ":" in host else host
    what = f"library {library.path} ({len(library)} videos)" if library is not None else "one video mode (no library)"
    print(f"tfvtg serve: {what} at http://{shown}:{port}/  (Ctrl-C stops)", file=sys.stderr)
    warning = bind_warning(args.host, port)
    if warning:
        print(f"tfvtg serve: warning: {warning}", file=sys.stderr)
    threading.Thread(target=_report_warm_up, args=(service,), name="tfvtg-report-warm-up", daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
