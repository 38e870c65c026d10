"""Files written for the user: atomic, with the user's umask, strict JSON.

A reader (or a killed run) never sees half a file; temporary files are
``.<name>.<random>.tmp`` beside the target, and :func:`remove_orphans`
clears those a killed run left behind. JSON is strict (no NaN or Infinity
tokens: non-finite floats are written as null).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError, MissingFileError

if TYPE_CHECKING:  # pragma: no cover
    from .core.features import VideoFeatures

__all__ = ["atomic_write", "save_npy", "write_json", "strict_json", "dumps_strict", "remove_orphans",
           "save_features", "load_features"]


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through ``write(file)`` into a temporary file beside ``path``,
    flush it to disk, give it the permissions a plain ``open`` would (0666
    less the umask), then rename it over ``path`` (atomic on POSIX and
    Windows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def remove_orphans(directory: str | os.PathLike[str]) -> int:
    """Delete temporary files a killed :func:`atomic_write` left in
    ``directory`` (``.<name>.*.tmp``); returns how many."""
    removed = 0
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """``np.save`` atomically (the file is named exactly ``path``)."""
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None and
    numpy scalars and arrays turned into plain Python, so that it dumps as
    strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        return strict_json(value.item())
    if isinstance(value, str):
        # a lone surrogate (e.g. from JSON "\ud800") cannot be encoded as UTF-8
        return value.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(value) else value
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def dumps_strict(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` of :func:`strict_json` (never a NaN/Infinity token)."""
    return json.dumps(strict_json(value), indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> Path:
    """Strict JSON dump, atomically."""
    text = dumps_strict(data, indent=indent)
    return atomic_write(path, lambda f: f.write(text), mode="w")


# -- feature files (VideoFeatures.save / .load) ---------------------------------

def save_features(features: VideoFeatures, path: str | os.PathLike[str]) -> Path:
    """TFVTG's layout: (T, Q, D) float16 ``.npy`` + ``.json`` sidecar."""
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_suffix(".npy")
    tokens = features.tokens if not features.on_torch else features.tokens.detach().cpu().numpy()
    # sidecar first: an .npy is only ever visible with its metadata
    write_json(path.with_suffix(".json"), {"duration": features.duration, "fps": features.fps,
                                           "source": features.source, "encoder": features.encoder})
    from .core.features import float16_copy

    return save_npy(path, float16_copy(tokens))


def read_sidecar(npy: Path) -> dict[str, Any]:
    """The ``.json`` beside a feature file, or {} when absent or unusable
    (not JSON, not an object): metadata is optional."""
    sidecar = npy.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


#: the sampling rate of TFVTG's released feature files, which carry no sidecar
RELEASED_FEATURES_FPS = 3.0


def feature_timing(num_frames: int, meta: dict[str, Any], duration: float | None = None
                   ) -> tuple[float, float | None]:
    """(duration in seconds, fps or None) of a feature file of ``num_frames``
    frames: the one rule every reader uses. The duration is the caller's
    when given, else the sidecar's (``meta``), else ``num_frames / 3`` (TFVTG's
    released files are sampled at 3 fps); fps is the sidecar's, or 3 in that
    last case."""
    fps = meta.get("fps") if _positive(meta.get("fps")) else None
    if duration is None and _positive(meta.get("duration")):
        duration = float(meta["duration"])
    if duration is None:
        return num_frames / RELEASED_FEATURES_FPS, RELEASED_FEATURES_FPS
    return float(duration), fps


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# numpy reads a .npy header with ast.literal_eval, and CPython 3.11's AST
# constructor keeps its recursion depth in shared state: two threads parsing
# at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905; seen here when the library grounds
# candidates on two threads). np.load runs one at a time: a memory map only
# parses the header under the lock (its data is read later, by whoever uses
# it); a full read holds the lock while it reads.
_NPY_LOCK = threading.Lock()


def load_npy(path: str | os.PathLike[str], mmap: bool = True) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, memory-mapped read-only when
    ``mmap``, safe to call from several threads at once (numpy's own
    exceptions for a damaged file pass through)."""
    with _NPY_LOCK:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles; a damaged file raises InvalidInputError
    naming it."""
    if not path.is_file():
        raise MissingFileError(f"feature file not found: {path}")
    try:
        return load_npy(path, mmap=mmap)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"cannot read features from {path} ({exc}); re-extract that video") from exc


def load_features(cls: type[VideoFeatures], path: str | os.PathLike[str], duration: float | None = None,
                  ) -> VideoFeatures:
    path = Path(path)
    array = load_array(path, mmap=True)
    meta = read_sidecar(path)
    duration, fps = feature_timing(array.shape[0] if array.ndim else 0, meta, duration)
    source = meta.get("source") if isinstance(meta.get("source"), str) else None
    encoder = meta.get("encoder") if isinstance(meta.get("encoder"), str) else None
    from .core.features import looks_normalised

    # a file written by save() holds unit float16 tokens: keep them as they are,
    # memory-mapped (no float32 copy); raw encoder output is normalised as ever
    normalized = looks_normalised(array)
    try:
        return cls(array, duration=duration, fps=fps, source=source or str(path), encoder=encoder,
                   normalized=normalized)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc
