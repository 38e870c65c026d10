"""Operations that core objects offer but must not implement.

``VideoFeatures.save`` / ``.load`` touch the disk and ``GroundingResult.plot``
needs matplotlib; core may import nothing outside numpy, numba and scipy.
The package root (``tfvtg/__init__.py``) provides the implementations from
:mod:`tfvtg.io` and :mod:`tfvtg.viz`, each imported only when first called.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import TfvtgError

_PROVIDED: dict[str, Callable[..., Any]] = {}


def provide(name: str, implementation: Callable[..., Any]) -> None:
    """Register the implementation of the operation ``name``."""
    _PROVIDED[name] = implementation


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run the operation ``name``; only tfvtg's package root provides them."""
    try:
        implementation = _PROVIDED[name]
    except KeyError:
        raise TfvtgError(f"{name} is not available: import tfvtg (not only tfvtg.core) to enable it") from None
    return implementation(*args, **kwargs)
