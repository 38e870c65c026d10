"""Atomic file writes: a reader (or a killed run) never sees half a file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["atomic_write", "save_npy", "write_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through ``write(file)`` into a temporary file beside ``path``,
    flush it to disk, then rename it over ``path`` (atomic on POSIX and
    Windows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """``np.save`` atomically (the file is named exactly ``path``)."""
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> Path:
    """JSON dump, atomically."""
    return atomic_write(path, lambda f: json.dump(data, f, indent=indent, ensure_ascii=False), mode="w")
