"""Warnings that point at the caller's line, not at tfvtg or asyncio internals."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
import warnings
from pathlib import Path


def _internal_prefixes() -> tuple[str, ...]:
    folders = [Path(__file__).parent.parent, Path(asyncio.__file__).parent, Path(concurrent.futures.__file__).parent]
    prefixes = {str(f) + os.sep for f in folders} | {str(f.resolve()) + os.sep for f in folders}
    return (*sorted(prefixes), threading.__file__, str(Path(threading.__file__).resolve()))


_INTERNAL = _internal_prefixes()


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside tfvtg, asyncio
    and threading: the line in the user's code that called the library, even
    when the warning arises inside an event loop the library runs."""
    frame = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)
