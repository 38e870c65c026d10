"""Optional heavy dependencies, imported on use with an error naming the
extra (the implementation is public: :func:`tfvtg.errors.require_extra`)."""
from __future__ import annotations

from typing import Any

from .errors import require_extra as require

__all__ = ["require", "require_torch"]


def require_torch() -> Any:
    return require("torch")
