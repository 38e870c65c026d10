"""Warnings that point at the caller's line, not at library internals."""
from __future__ import annotations

import sys
import warnings
from types import FrameType

_OWN_PACKAGES = ("tfvtg", "numpro")


def warn_user(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside tfvtg and
    numpro (the user's call), however deep inside the library it is raised."""
    level = 2  # 1 would be this function, 2 its caller
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] not in _OWN_PACKAGES:
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
