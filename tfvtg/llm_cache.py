"""Persistent cache of LLM decompositions (sqlite, safe under concurrent writers).

Keyed by (model, prompt version, query), so re-running a batch with the same
model and prompt sends no requests. Values are stored in TFVTG's published
per-query format (see :mod:`tfvtg.decomposition`). The cache never stores
API keys: only the model name, the prompt version, the query and the answer.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .decomposition import Decomposition

__all__ = ["LLMCache", "default_cache_path", "import_tfvtg_outputs"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decompositions (
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, prompt_version, query)
)
"""


def default_cache_path() -> Path:
    """``$TFVTG_CACHE_DIR/llm_cache.sqlite`` or ``~/.cache/tfvtg/llm_cache.sqlite``."""
    root = os.environ.get("TFVTG_CACHE_DIR")
    if root:
        return Path(root) / "llm_cache.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "tfvtg" / "llm_cache.sqlite"


def _normalise_query(query: str) -> str:
    # Whitespace differences should not cost a request; case and wording do matter.
    return " ".join(query.split())


class LLMCache:
    """A sqlite file of decompositions keyed by model, prompt version and query.

    Safe to share between threads and processes: each call opens its own
    connection, the database runs in WAL mode and waits (``busy_timeout_s``)
    for a concurrent writer instead of failing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.busy_timeout_s = float(busy_timeout_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        return _Closing(conn)  # type: ignore[return-value]

    def get(self, model: str, prompt_version: str, query: str) -> Decomposition | None:
        """The cached decomposition, or None when this key was never stored."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT response FROM decompositions WHERE model=? AND prompt_version=? AND query=?",
                (model, prompt_version, _normalise_query(query)),
            ).fetchone()
        if row is None:
            return None
        try:
            return Decomposition.from_tfvtg(json.loads(row[0]))
        except (ValueError, json.JSONDecodeError):
            return None  # a damaged row is treated as a miss and overwritten later

    def put(self, model: str, prompt_version: str, query: str, decomposition: Decomposition) -> None:
        """Store (or replace) one decomposition."""
        self.put_many(model, prompt_version, [(query, decomposition)])

    def put_many(self, model: str, prompt_version: str,
                 items: Iterable[tuple[str, Decomposition | Mapping[str, Any]]]) -> int:
        """Store many decompositions in one transaction; returns how many."""
        now = time.time()
        rows = []
        for query, dec in items:
            dec = Decomposition.from_tfvtg(dec)
            rows.append((model, prompt_version, _normalise_query(query), json.dumps(dec.to_tfvtg()), now))
        if not rows:
            return 0
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO decompositions VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return len(rows)

    def __len__(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM decompositions").fetchone()[0])

    def import_tfvtg_outputs(self, path: str | os.PathLike[str], *, model: str, prompt_version: str) -> int:
        """Load a TFVTG ``llm_outputs.json`` file into the cache; see :func:`import_tfvtg_outputs`."""
        return import_tfvtg_outputs(path, cache=self, model=model, prompt_version=prompt_version)


class _Closing:
    """A sqlite connection used as a context manager that closes on exit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def import_tfvtg_outputs(path: str | os.PathLike[str], *, cache: LLMCache | str | os.PathLike[str] | None = None,
                         model: str, prompt_version: str) -> int:
    """Import a whole TFVTG ``llm_outputs.json`` into the cache.

    The file maps video ids to ``{"sentences": [...], "response": [...]}``;
    each non-empty response is stored under (``model``, ``prompt_version``,
    sentence). Use the model and prompt version of the decomposer that should
    reuse these answers (``OpenAIDecomposer.import_tfvtg_outputs`` does).

    Returns the number of decompositions imported. Empty or malformed
    responses are skipped (TFVTG leaves ``{}`` for failed queries).
    """
    if not isinstance(cache, LLMCache):
        cache = LLMCache(cache)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no TFVTG LLM-output file at {str(path)!r}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc}); expected TFVTG's llm_outputs.json") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object {{video_id: {{sentences, response}}}}")
    items = []
    for vid, entry in data.items():
        if not isinstance(entry, dict):
            continue
        for sentence, response in zip(entry.get("sentences") or [], entry.get("response") or []):
            if not response or not isinstance(sentence, str) or not sentence.strip():
                continue
            try:
                dec = Decomposition.from_tfvtg(response)
            except ValueError:
                continue
            if not dec.fallback:
                items.append((sentence, dec))
    return cache.put_many(model, prompt_version, items)
