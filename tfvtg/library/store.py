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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import LibraryError
from ..io import load_npy

__all__ = ["FeatureStore", "Flush", "new_key"]

FEATURES_DIR = "features"


def new_key() -> str:
    """A fresh file key (never reused, so a removed video's file name cannot
    be taken by a later one while a reader still maps it)."""
    return secrets.token_hex(16)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_and_close(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
        return None
    except OSError as exc:
        return exc
    finally:
        os.close(fd)


class Flush:
    """fsyncs of freshly written files, each started the moment its file is
    written (on a few threads) and awaited together before the commit.

    Started early, the disk writes one file while the next ones are copied
    into the page cache: on this project's VM a batch of 64 minute-long
    videos went from 71,000 to 102,000 frames/s against an fsync of the
    whole batch after the last write. Use as a context manager: leaving it
    waits for every fsync (and closes every descriptor), also on error.
    """

    THREADS = 8

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[OSError | None]] = []

    def add(self, fd: int | None) -> None:
        """Start flushing ``fd`` (from :meth:`FeatureStore.write`; None is ignored)."""
        if fd is None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="tfvtg-fsync")
        self._pending.append(self._pool.submit(_sync_and_close, fd))

    def wait(self) -> None:
        """Wait for every started fsync; raise LibraryError if one failed."""
        pending, self._pending = self._pending, []
        errors = [f.result() for f in pending]
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise LibraryError(f"could not flush feature files to disk: {error}") from error

    def __enter__(self) -> Flush:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.wait()
            return
        try:  # already failing: close the descriptors, keep the first error
            self.wait()
        except LibraryError:
            pass


class FeatureStore:
    """The ``features/`` folder of a library."""

    def __init__(self, root: Path):
        self.root = root
        self.directory = root / FEATURES_DIR

    def relpath(self, key: str) -> str:
        return f"{FEATURES_DIR}/{key[:2]}/{key}.npy"

    def write(self, key: str, tokens: np.ndarray, sync: bool = True) -> tuple[str, int | None]:
        """Write ``tokens`` (float16) as ``features/<xx>/<key>.npy``.

        Returns (relative path, file descriptor to fsync or None). With
        ``sync`` the caller gets an open descriptor and must hand it to a
        :class:`Flush` (which closes it), and wait for that before the
        catalogue row is committed.
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
    def flushing() -> Flush:
        """A :class:`Flush`: fsync each file as soon as it is written, wait for all at the end."""
        return Flush()

    def open(self, rel: str) -> np.ndarray:
        """The memory-mapped (T, Q, D) float16 array of a feature file."""
        path = self.root / rel
        try:
            return load_npy(path, mmap=True)  # thread-safe header parsing (see tfvtg.io)
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
