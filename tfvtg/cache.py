"""On-disk caches: where they live, and the feature cache of ``ground(video_path, ...)``.

One rule for every cache: the root is TFVTG_CACHE_DIR, else ~/.cache/tfvtg;
features go to ``<root>/features``, LLM answers to ``<root>/llm.sqlite``.

Feature entries are TFVTG-layout ``.npy`` files ((T, Q, D) float16) with a
JSON sidecar (duration, fps, encoder, source), named by a key derived from
the video's content identity, the encoder and the sampling rate. A damaged
entry is extracted again; a directory that cannot be written is bypassed
with one warning.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from .core.features import VideoFeatures
from .errors import MissingFileError
from .io import remove_orphans

__all__ = ["FeatureCache", "content_identity", "cache_root", "default_cache_dir"]

_EDGE = 1 << 20  # bytes hashed at each end of the file


def cache_root() -> Path:
    """TFVTG_CACHE_DIR, else ~/.cache/tfvtg."""
    env = os.environ.get("TFVTG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tfvtg"


def default_cache_dir() -> Path:
    """Where cached video features go: ``cache_root() / "features"``."""
    return cache_root() / "features"


def content_identity(path: str | os.PathLike[str]) -> str:
    """A cheap fingerprint of a file's content: size, modification time and a
    SHA-256 of its first and last MiB. Any edit changes the size, the time or
    the hashed bytes; re-encoding a multi-GB video is never hashed whole."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"video not found: {p}")
    st = p.stat()
    h = hashlib.sha256()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(p, "rb") as f:
        h.update(f.read(_EDGE))
        if st.st_size > 2 * _EDGE:
            f.seek(-_EDGE, os.SEEK_END)
            h.update(f.read(_EDGE))
    return h.hexdigest()


_WARNED: set[str] = set()


def _warn_once(directory: Path, exc: BaseException) -> None:
    if str(directory) not in _WARNED:
        _WARNED.add(str(directory))
        warnings.warn(f"feature cache {directory} is not usable ({exc}); features are not cached",
                      RuntimeWarning, stacklevel=4)


class FeatureCache:
    """A directory of cached video features."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()

    def key(self, video: str | os.PathLike[str], model: str, fps: float) -> str:
        ident = content_identity(video)
        return hashlib.sha256(f"{ident}|{model}|{float(fps)!r}".encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str) -> VideoFeatures | None:
        """The cached features, or None when absent or damaged (a damaged
        entry is removed so that it is extracted again)."""
        npy = self.path(key)
        if not npy.exists():
            return None
        try:
            return VideoFeatures.load(npy)
        except (ValueError, OSError):
            for stale in (npy, npy.with_suffix(".json")):
                try:
                    stale.unlink()
                except OSError:
                    pass
            return None

    def put(self, key: str, features: VideoFeatures) -> Path | None:
        """Store ``features``; returns the path, or None (with one warning)
        when the directory cannot be written."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.directory)
            return features.save(self.path(key))
        except OSError as exc:
            _warn_once(self.directory, exc)
            return None

    def fetch(self, video: str | os.PathLike[str], encoder: Any, fps: float) -> VideoFeatures:
        """Cached features of ``video`` for ``encoder`` at ``fps``, extracting on a miss."""
        key = self.key(video, model=str(getattr(encoder, "name", type(encoder).__name__)), fps=fps)
        hit = self.get(key)
        if hit is not None:
            hit.source = str(video)
            return hit
        features = encoder.encode_video(video, fps=fps)
        self.put(key, features)
        return features
