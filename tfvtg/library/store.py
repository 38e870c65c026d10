"""Feature files of a library: one (T, Q, D) float16 ``.npy`` per video,
memory-mapped when read.

Files live in ``features/<xx>/<key>.npy`` (``xx``: the key's first two hex
digits, so no folder holds more than a few thousand files in a
hundred-thousand-video library). The tokens are stored L2-normalised (as
:meth:`tfvtg.VideoFeatures.save` does), so cosine scores need no norm at
search time.

Writes go through a temporary ``.<name>.<random>.tmp`` file renamed into
place: a killed writer leaves either no file or a temporary one, never a
half file under the final name. Files that no catalogue row names (a writer
killed between the rename and the commit) and temporary files are removed
by :meth:`FeatureStore.remove_orphans` under the catalogue's write lock.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import LibraryError

__all__ = ["FeatureStore", "new_key"]

FEATURES_DIR = "features"


def new_key() -> str:
    """A fresh file key (never reused, so a removed video's file name cannot
    be taken by a later one while a reader still maps it)."""
    return secrets.token_hex(16)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class FeatureStore:
    """The ``features/`` folder of a library."""

    def __init__(self, root: Path):
        self.root = root
        self.directory = root / FEATURES_DIR

    def relpath(self, key: str) -> str:
        return f"{FEATURES_DIR}/{key[:2]}/{key}.npy"

    def write(self, key: str, tokens: np.ndarray, sync: bool = True) -> tuple[str, int | None]:
        """Write ``tokens`` (float16) as ``features/<xx>/<key>.npy``.

        Returns (relative path, file descriptor to fsync later or None). With
        ``sync`` the caller gets an open descriptor and must call
        :meth:`flush` on it before the catalogue row is committed (batching
        the flushes of many files costs one disk round trip instead of one
        per file).
        """
        rel = self.relpath(key)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(os.dup(fd), "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(tokens, dtype=np.float16), allow_pickle=False)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if sync:
            return rel, fd
        os.close(fd)
        return rel, None

    @staticmethod
    def flush(fds: Iterable[int | None]) -> None:
        """fsync and close descriptors returned by :meth:`write` (several at
        once: the disk takes the writes in parallel)."""
        todo = [fd for fd in fds if fd is not None]
        if not todo:
            return

        def sync(fd: int) -> OSError | None:
            try:
                os.fsync(fd)
                return None
            except OSError as exc:
                return exc
            finally:
                os.close(fd)

        if len(todo) == 1:
            errors = [sync(todo[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(8, len(todo))) as pool:
                errors = list(pool.map(sync, todo))
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise LibraryError(f"could not flush feature files to disk: {error}") from error

    def open(self, rel: str) -> np.ndarray:
        """The memory-mapped (T, Q, D) float16 array of a feature file."""
        path = self.root / rel
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise LibraryError(f"the feature file {path} is damaged ({exc}); remove the video and add it again") from exc

    def delete(self, rel: str) -> None:
        try:
            (self.root / rel).unlink()
        except FileNotFoundError:
            pass

    def remove_orphans(self, known: set[str]) -> int:
        """Delete temporary files and feature files no catalogue row names.
        Call only while holding the catalogue's write lock."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for sub in self.directory.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                rel = f"{FEATURES_DIR}/{sub.name}/{f.name}"
                if f.name.endswith(".tmp") or (f.suffix == ".npy" and rel not in known):
                    try:
                        f.unlink()
                        removed += 1
                    except OSError:
                        pass
        return removed

    def size_on_disk(self) -> int:
        """Bytes of every feature file."""
        total = 0
        if self.directory.is_dir():
            for f in self.directory.rglob("*.npy"):
                try:
                    total += f.stat().st_size
                except OSError:
                    pass
        return total
