"""Optional heavy dependencies, imported on use with an error naming the extra."""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import missing_extra

_EXTRA_OF = {"torch": "vision", "transformers": "vision", "PIL": "vision", "av": "vision",
             "openai": "llm", "matplotlib": "plot", "ray": "ray", "faiss": "library",
             "fastapi": "app", "uvicorn": "app", "multipart": "app"}


def require(module: str) -> Any:
    """Import ``module`` or raise MissingExtraError naming the extra that installs it."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # something inside the package is broken, not missing
        raise missing_extra(_EXTRA_OF.get(top, "all"), top) from exc


def require_torch() -> Any:
    return require("torch")
