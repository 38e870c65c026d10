"""The library's catalogue: one SQLite database (WAL) beside the feature files.

Tables:

* ``meta(key, value)``: the library's settings (embedding space, encoder
  name, sampling rate, segment length of the coarse index) and a
  ``generation`` counter bumped by every write, which readers poll to know
  that their in-memory coarse index is stale.
* ``videos``: one row per video (id, source, content identity, duration in
  seconds, fps, encoder space, frame count T, tokens Q, dimension D, feature
  file, time added).
* ``coarse``: per video, the coarse index's vectors (float16 bytes) and the
  frame bounds of its segments.

A video is *present* exactly when its ``videos`` row is committed: the
feature file is written (and flushed) first, then the row and its coarse
vectors are inserted in one transaction. WAL lets readers search a
consistent snapshot while one writer adds.

The format version lives in ``library.json`` (read before SQLite is
touched), so a library written by a newer tfvtg is refused without a byte
changed.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LibraryError, LibraryFormatError
from ..io import write_json

__all__ = ["FORMAT_VERSION", "FORMAT_NAME", "Catalogue", "VideoRecord", "read_format", "write_format"]

FORMAT_NAME = "tfvtg-library"
FORMAT_VERSION = 1
FORMAT_FILE = "library.json"
CATALOGUE_FILE = "catalogue.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    source TEXT,
    identity TEXT,
    duration REAL NOT NULL,
    fps REAL NOT NULL,
    encoder TEXT,
    frames INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    file TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_identity ON videos(identity);
CREATE TABLE IF NOT EXISTS coarse (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE REFERENCES videos(id) ON DELETE CASCADE,
    bounds BLOB NOT NULL,
    vectors BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class VideoRecord:
    """One catalogue row.

    Attributes:
        id: the video's id in the library.
        source: the file it came from, if any.
        identity: its content identity (see :func:`tfvtg.cache.content_identity`), if known.
        duration: seconds covered by the features.
        fps: feature frames per second.
        encoder: embedding space of the features.
        frames: T, feature frames.
        tokens: Q, tokens per frame.
        dim: D, feature dimension.
        file: the feature file, relative to the library directory.
        added: when it was added (Unix time, seconds).
    """

    id: str
    source: str | None
    identity: str | None
    duration: float
    fps: float
    encoder: str | None
    frames: int
    tokens: int
    dim: int
    file: str
    added: float


_COLUMNS = "id, source, identity, duration, fps, encoder, frames, tokens, dim, file, added"


def read_format(directory: Path) -> dict[str, Any] | None:
    """The library's ``library.json``, or None when there is none. Refuses
    (LibraryFormatError) a foreign or newer format before anything is opened."""
    marker = directory / FORMAT_FILE
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LibraryFormatError(f"{marker} is not readable ({exc}); is {directory} a tfvtg library?") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise LibraryFormatError(f"{directory} is not a tfvtg library ({marker} names another format)")
    version = info.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise LibraryFormatError(
            f"{directory} was written by a newer tfvtg (library format {version!r}; this tfvtg reads up to "
            f"{FORMAT_VERSION}); upgrade tfvtg (pip install -U tfvtg) to open it. Nothing was changed.")
    return info


def write_format(directory: Path) -> None:
    write_json(directory / FORMAT_FILE, {"format": FORMAT_NAME, "version": FORMAT_VERSION})


class Catalogue:
    """The SQLite catalogue of one library directory (one connection)."""

    def __init__(self, directory: Path, *, readonly: bool = False):
        self.path = directory / CATALOGUE_FILE
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a killed process never loses a commit; a power
            # cut may lose the last ones, never corrupt the file
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self.conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LibraryError(f"cannot open the library catalogue {self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    # -- transactions -----------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock (``BEGIN
        IMMEDIATE``) from the start: a second writer waits (up to 60 s)
        instead of interleaving. Every write bumps ``generation``."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LibraryError(f"the library {self.path.parent} is busy (another process is writing): {exc}") from exc
        try:
            yield self.conn
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES('generation', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # -- meta --------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str | None) -> None:
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    def generation(self) -> int:
        value = self.get_meta("generation")
        return int(value) if value else 0

    # -- videos ------------------------------------------------------------
    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0])

    def ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM videos ORDER BY id")]

    def get(self, video_id: str) -> VideoRecord | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM videos WHERE id = ?", (video_id,)).fetchone()
        return None if row is None else VideoRecord(*row)

    def records(self) -> list[VideoRecord]:
        return [VideoRecord(*r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM videos ORDER BY id")]

    def by_identity(self, identity: str, fps: float) -> VideoRecord | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM videos WHERE identity = ? AND abs(fps - ?) < 1e-9",
                                (identity, float(fps))).fetchone()
        return None if row is None else VideoRecord(*row)

    def files(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT file FROM videos")}

    def totals(self) -> tuple[int, float, int]:
        """(videos, seconds, frames)."""
        n, seconds, frames = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(duration), 0), COALESCE(SUM(frames), 0) FROM videos").fetchone()
        return int(n), float(seconds), int(frames)

    def insert(self, conn: sqlite3.Connection, record: VideoRecord, bounds: bytes, vectors: bytes) -> None:
        conn.execute(f"INSERT INTO videos({_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (record.id, record.source, record.identity, record.duration, record.fps, record.encoder,
                      record.frames, record.tokens, record.dim, record.file, record.added or time.time()))
        conn.execute("INSERT INTO coarse(id, bounds, vectors) VALUES(?, ?, ?)", (record.id, bounds, vectors))

    def delete(self, conn: sqlite3.Connection, video_id: str) -> None:
        conn.execute("DELETE FROM coarse WHERE id = ?", (video_id,))
        conn.execute("DELETE FROM videos WHERE id = ?", (video_id,))

    # -- coarse vectors ---------------------------------------------------
    def coarse_seqs(self) -> list[int]:
        """The sequence numbers of every video's coarse vectors (never reused:
        AUTOINCREMENT), in insertion order."""
        return [int(r[0]) for r in self.conn.execute("SELECT seq FROM coarse ORDER BY seq")]

    def coarse_rows(self, after_seq: int) -> Iterator[tuple[int, str, bytes, bytes, int]]:
        """(seq, id, bounds, vectors, tokens Q) of the coarse rows after ``after_seq``."""
        yield from self.conn.execute(
            "SELECT c.seq, c.id, c.bounds, c.vectors, v.tokens FROM coarse c JOIN videos v ON v.id = c.id "
            "WHERE c.seq > ? ORDER BY c.seq", (after_seq,))

    def coarse_bytes(self) -> int:
        row = self.conn.execute("SELECT COALESCE(SUM(length(vectors)), 0) FROM coarse").fetchone()
        return int(row[0])
