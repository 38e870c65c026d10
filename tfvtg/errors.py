"""Public home of the error family (see :mod:`tfvtg.core.errors`).

Catch :class:`TfvtgError` for anything tfvtg raises, or the builtin parent
(``ValueError``, ``OSError``, ``TimeoutError``, ...) each class also keeps.
"""
from __future__ import annotations

from .core.errors import *  # noqa: F403
from .core.errors import __all__ as __all__  # noqa: F401


def missing_extra(extra: str, module: str) -> MissingExtraError:  # noqa: F405
    """The error for an optional dependency that is not installed."""
    return MissingExtraError(  # noqa: F405
        f"{module} is not installed; install the extra with: pip install \"tfvtg[{extra}]\"", name=module)
