"""``tfvtg serve``: a local web page to search a video library and watch the moments.

    from tfvtg.app import create_app
    app = create_app("videos.tfvtg")          # an ASGI app; run it with uvicorn

Modules: service (what the page asks for, without the web), server (the
FastAPI app and its routes), media (range requests, thumbnails), safety
(what is refused before routing). Needs the ``app`` extra
(``pip install "tfvtg[app]"``). See docs/serve.md.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from ..errors import missing_extra

__all__ = ["create_app", "Service", "Settings", "require_app"]

_APP_MODULES = ("fastapi", "uvicorn", "starlette")


def require_app() -> None:
    """Raise :class:`tfvtg.MissingExtraError` naming ``tfvtg[app]`` when the
    web framework is not installed."""
    for module in _APP_MODULES:
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.split(".")[0] != module:
                raise
            raise missing_extra("app", module) from exc


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The ASGI app (see :func:`tfvtg.app.server.create_app`)."""
    require_app()
    from .server import create_app as make

    return make(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("Service", "Settings"):
        return getattr(import_module("tfvtg.app.service"), name)
    raise AttributeError(f"module 'tfvtg.app' has no attribute {name!r}")
