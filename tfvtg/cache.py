"""On-disk feature cache for ``ground(video_path, ...)``.

Entries are TFVTG-layout ``.npy`` files ((T, 32, 256) float16) with a JSON
sidecar (duration, fps, model, source), named by a key derived from the
video's content identity, the model and the sampling rate.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .features import VideoFeatures
from .io import save_npy, write_json

__all__ = ["FeatureCache", "content_identity", "default_cache_dir"]

_EDGE = 1 << 20  # bytes hashed at each end of the file


def default_cache_dir() -> Path:
    """TFVTG_CACHE_DIR, else ~/.cache/tfvtg/features."""
    env = os.environ.get("TFVTG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tfvtg" / "features"


def content_identity(path: str | os.PathLike[str]) -> str:
    """A cheap fingerprint of a file's content: size, modification time and a
    SHA-256 of its first and last MiB. Any edit changes the size, the time or
    the hashed bytes; re-encoding a multi-GB video is never hashed whole."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(p, "rb") as f:
        h.update(f.read(_EDGE))
        if st.st_size > 2 * _EDGE:
            f.seek(-_EDGE, os.SEEK_END)
            h.update(f.read(_EDGE))
    return h.hexdigest()


class FeatureCache:
    """A directory of cached video features."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()

    def key(self, video: str | os.PathLike[str], model: str, fps: float) -> str:
        if not Path(video).exists():
            raise FileNotFoundError(f"video not found: {video}")
        ident = content_identity(video)
        return hashlib.sha256(f"{ident}|{model}|{float(fps)!r}".encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str) -> VideoFeatures | None:
        npy = self.path(key)
        if not npy.exists():
            return None
        try:
            return VideoFeatures.load(npy)
        except (ValueError, OSError):
            return None  # a damaged entry is re-extracted

    def put(self, key: str, raw: np.ndarray, *, duration: float, fps: float, source: str, model: str) -> Path:
        npy = self.path(key)
        # sidecar first: an .npy is only ever visible with its metadata
        write_json(npy.with_suffix(".json"), {"duration": duration, "fps": fps, "source": source, "model": model})
        save_npy(npy, np.asarray(raw, dtype=np.float16))
        return npy
