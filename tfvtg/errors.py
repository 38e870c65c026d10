"""Public home of the error family (see :mod:`tfvtg.core.errors`).

Catch :class:`TfvtgError` for anything tfvtg raises, or the builtin parent
(``ValueError``, ``OSError``, ``TimeoutError``, ...) each class also keeps.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .core.errors import *  # noqa: F403
from .core.errors import __all__ as __all__  # noqa: F401


def missing_extra(extra: str, module: str) -> MissingExtraError:  # noqa: F405
    """The error for an optional dependency that is not installed."""
    return MissingExtraError(  # noqa: F405
        f"{module} is not installed; install the extra with: pip install \"tfvtg[{extra}]\"", name=module)


# optional top-level module -> the tfvtg extra that installs it
EXTRA_OF = {"torch": "vision", "transformers": "vision", "PIL": "vision", "av": "vision",
            "openai": "llm", "matplotlib": "plot", "ray": "ray", "faiss": "library",
            "fastapi": "app", "uvicorn": "app", "multipart": "app"}


def require_extra(module: str) -> Any:
    """Import ``module`` (e.g. "torch", "matplotlib.pyplot") or raise
    :class:`MissingExtraError` naming the tfvtg extra that installs it.
    Public, so that packages built on tfvtg (numpro) say the same."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # something inside the package is broken, not missing
        raise missing_extra(EXTRA_OF.get(top, "all"), top) from exc
