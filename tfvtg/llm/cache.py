"""The LLM answer cache: one sqlite file of decompositions.

Keyed by (model, prompt version, query) and, for answers imported from a
TFVTG ``llm_outputs.json``, the video too: the same sentence can have a
different published decomposition in each video it appears in (349 of
Charades-STA's 2860 distinct test sentences do). A lookup with a video
takes that video's entry first and falls back to the sentence's entry.

The cache is optional and never stops work: the default file
(TFVTG_CACHE_DIR/llm.sqlite, else ~/.cache/tfvtg/llm.sqlite) is bypassed,
with one warning naming it, when it is not an SQLite file, is damaged, holds
another program's tables (never altered), or sits in a folder that cannot be
written; a read-only file is read but not written. A file the caller names
explicitly raises :class:`~tfvtg.CacheError` when it cannot work at all.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..core.decomposition import Decomposition, sanitize_text
from ..errors import CacheError, InvalidInputError, MissingFileError
from ._warnings import warn_at_caller

__all__ = ["DecompositionCache"]

_TABLE = "decompositions"
_COLUMNS = ("key", "model", "prompt_version", "query", "response", "created")
_SQLITE_HEADER = b"SQLite format 3\x00"
_WARNED: set[str] = set()
_T = TypeVar("_T")


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        warn_at_caller(message, RuntimeWarning)


class DecompositionCache:
    """Persistent LLM answers in sqlite.

    Args:
        path: the sqlite file; None for the default
            (``tfvtg.cache.cache_root() / "llm.sqlite"``).
        strict: raise :class:`~tfvtg.CacheError` when the file cannot be used
            at all; default True for a path the caller gave, False for the
            default file (which is then bypassed with one warning).

    Safe for several threads and processes writing at once (WAL journal,
    busy timeout). ``usable`` is False while the cache is bypassed;
    ``writable`` is False for a read-only file.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, strict: bool | None = None):
        explicit = path is not None
        if path is None:
            from ..cache import cache_root

            path = cache_root() / "llm.sqlite"
        self.path = Path(path).expanduser()
        self.strict = explicit if strict is None else bool(strict)
        self.usable = True
        self.writable = True
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        problem = self._open()
        if problem is not None:
            if self.strict:
                raise CacheError(f"cannot use the LLM cache {self.path}: {problem}; "
                                 "give another file or move this one away")
            self._bypass(problem)

    # -- opening ------------------------------------------------------------------
    def _open(self) -> str | None:
        """None when the cache works, else what is wrong with it (the file is
        never altered in that case)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"its folder cannot be created ({exc.strerror or exc})"
        if self.path.is_dir():
            return "it is a directory"
        exists = self.path.exists()
        if exists:
            try:
                with open(self.path, "rb") as f:
                    header = f.read(len(_SQLITE_HEADER))
            except OSError as exc:
                return f"it cannot be read ({exc.strerror or exc})"
            if header and header != _SQLITE_HEADER:  # zero bytes is an empty database to sqlite
                return "it is not an SQLite database (left untouched)"
        self.writable = os.access(self.path if exists else self.path.parent, os.W_OK)
        if not exists and not self.writable:
            return "its folder is read-only"
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            return f"it cannot be opened ({exc})"
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if _TABLE in tables:
                columns = tuple(r[1] for r in db.execute(f"PRAGMA table_info({_TABLE})"))
                if columns != _COLUMNS:
                    db.close()
                    return (f"its table {_TABLE!r} has other columns {list(columns)}: not a tfvtg cache "
                            "(left untouched)")
            elif tables:
                db.close()
                return f"it holds another program's tables ({', '.join(sorted(tables)[:5])}; left untouched)"
            elif not self.writable:
                db.close()
                return "it is empty and read-only"
            else:
                with db:
                    db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, model TEXT, "
                               "prompt_version TEXT, query TEXT, response TEXT, created REAL)")
            if self.writable:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                except sqlite3.Error:
                    pass  # a rollback journal works too, just with less concurrency
        except sqlite3.Error as exc:
            db.close()
            return f"it is damaged or unreadable ({exc})"
        self._db = db
        if not self.writable:
            _warn_once(self.path, f"LLM cache {self.path} is read-only: cached answers are used, new ones are "
                                  "not saved")
        return None

    def _connect(self) -> sqlite3.Connection:
        # One connection per cache object (and process), shared by its threads
        # under self._lock: opening one per call would checkpoint the WAL file,
        # with an fsync, on every close.
        if self.writable:
            db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        else:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0,
                                 check_same_thread=False)
        self._pid = os.getpid()
        db.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: a commit is not fsynced; a power cut may lose the last
        # answers (asked again) but never damages the file.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def close(self) -> None:
        """Close the database connection (reopened on the next use)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _bypass(self, problem: str) -> None:
        self.usable = False
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        _warn_once(self.path, f"LLM cache {self.path} is not usable ({problem}); LLM answers are not cached. "
                              "Move the file away, or set TFVTG_CACHE_DIR to another folder")

    def _run(self, action: Callable[[sqlite3.Connection], _T], default: _T, write: bool = False) -> _T:
        """``action(db)`` in one transaction; a failing cache is bypassed (one
        warning) and ``default`` returned, so work goes on."""
        if not self.usable or (write and not self.writable):
            return default
        try:
            with self._lock:
                if self._db is None or self._pid != os.getpid():  # closed, or inherited through fork
                    self._db = self._connect()
                with self._db as db:
                    return action(db)
        except sqlite3.OperationalError as exc:
            if write and "readonly" in str(exc).replace("-", "").replace(" ", ""):
                self.writable = False
                _warn_once(self.path, f"LLM cache {self.path} is read-only ({exc}): cached answers are used, "
                                      "new ones are not saved")
            else:
                self._bypass(f"{exc}")
        except sqlite3.Error as exc:
            self._bypass(f"it is damaged ({exc})")
        return default

    # -- entries ------------------------------------------------------------------
    @staticmethod
    def key(model: str, prompt_version: str, query: str, video: str | None = None) -> str:
        """The entry key: the sentence's, or, with ``video``, that video's."""
        text = f"{model}\x1f{prompt_version}\x1f{query.strip()}"
        if video is not None:
            text += f"\x1f{video}"
        return hashlib.sha256(sanitize_text(text).encode("utf-8")).hexdigest()

    def get(self, model: str, prompt_version: str, query: str, video: str | None = None) -> Decomposition | None:
        """The cached answer: ``video``'s own entry when there is one, else the
        sentence's; None when neither exists (or the entry is damaged)."""
        keys = ([self.key(model, prompt_version, query, video)] if video is not None else []) + \
            [self.key(model, prompt_version, query)]

        def read(db: sqlite3.Connection) -> dict[str, Any]:
            marks = ",".join("?" * len(keys))
            return dict(db.execute(f"SELECT key, response FROM {_TABLE} WHERE key IN ({marks})", keys).fetchall())

        nothing: dict[str, Any] = {}
        found = self._run(read, nothing)
        for key in keys:
            response = found.get(key)
            if not isinstance(response, str):
                continue
            try:
                return Decomposition.from_tfvtg(json.loads(response))
            except (ValueError, TypeError, RecursionError):
                continue  # a damaged entry is a miss; the next answer replaces it
        return None

    def put(self, model: str, prompt_version: str, query: str, decomposition: Decomposition,
            video: str | None = None) -> None:
        self.put_many(model, prompt_version, [(query, decomposition, video)])

    def put_many(self, model: str, prompt_version: str,
                 items: Iterable[tuple[str, Decomposition] | tuple[str, Decomposition, str | None]]) -> int:
        """Store ``(query, decomposition)`` or ``(query, decomposition, video)``
        items; returns how many were written (0 while bypassed or read-only)."""
        rows = []
        for item in items:
            query, dec = item[0], item[1]
            video = item[2] if len(item) > 2 else None
            rows.append((self.key(model, prompt_version, query, video), sanitize_text(model),
                         sanitize_text(prompt_version), sanitize_text(query),
                         json.dumps(dec.to_tfvtg()), time.time()))
        if not rows:
            return 0

        def write(db: sqlite3.Connection) -> int:
            db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?,?,?,?,?,?)", rows)
            return len(rows)

        return self._run(write, 0, write=True)

    def __len__(self) -> int:
        return int(self._run(lambda db: db.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0], 0))

    def __repr__(self) -> str:
        state = "" if self.usable else ", bypassed"
        return f"DecompositionCache({str(self.path)!r}{state})"

    # -- TFVTG's published answers ---------------------------------------------------
    def import_tfvtg(self, path: str | os.PathLike[str], model: str, prompt_version: str) -> int:
        """Load a TFVTG ``llm_outputs.json`` ({video: {sentences, response}})
        so that those queries cost no request.

        Every answer is kept under its (video, sentence); each distinct
        sentence also gets a sentence-only entry holding its **first** answer
        in file order, which lookups without a video (``decompose(query)``)
        use. Empty responses (``{}``, TFVTG's failure marker) are skipped
        quietly; malformed ones with a warning.

        Returns:
            the number of (video, sentence) answers imported.

        Raises:
            MissingFileError, InvalidInputError: the file is missing or not in that format.
            CacheError: this cache cannot store anything.
        """
        source = Path(path)
        if not source.is_file():
            raise MissingFileError(f"LLM outputs file not found: {source}")
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise InvalidInputError(f"cannot read {source} as JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"{source} is not in TFVTG's llm_outputs.json format "
                                    "({video: {sentences: [...], response: [...]}})")
        if not self.usable or not self.writable:
            raise CacheError(f"the LLM cache {self.path} cannot store answers ("
                             f"{'read-only' if self.usable else 'bypassed, see the warning above'})")
        items: list[tuple[str, Decomposition, str | None]] = []
        first: dict[str, tuple[str, Decomposition]] = {}
        skipped = 0
        for video, entry in data.items():
            sentences = entry.get("sentences") if isinstance(entry, dict) else None
            responses = entry.get("response") if isinstance(entry, dict) else None
            if not isinstance(sentences, Sequence) or not isinstance(responses, Sequence):
                continue  # an annotation without answers
            for sentence, response in zip(sentences, responses):
                if not response:
                    continue  # TFVTG writes {} for a query its LLM call failed on
                if not isinstance(sentence, str) or not sentence.strip():
                    skipped += 1
                    continue
                try:
                    dec = Decomposition.from_tfvtg(response)
                except (ValueError, TypeError):
                    skipped += 1
                    continue
                items.append((sentence, dec, str(video)))
                first.setdefault(sanitize_text(sentence).strip(), (sentence, dec))
        if skipped:
            warn_at_caller(f"{skipped} malformed responses in {source} were not imported")
        written = self.put_many(model, prompt_version,
                                [*items, *((s, d, None) for s, d in first.values())])
        if items and not written:
            raise CacheError(f"the LLM cache {self.path} could not store the imported answers (see the warning)")
        return len(items)
