"""The results file of an evaluation: one JSON line per query, resumable,
tied to the settings that made it.

Layout (JSON lines, strict JSON: no NaN or Infinity tokens)::

    {"tfvtg_eval": {"format": 1, "settings": {...}, "inputs": {...}, "info": {...}}}
    {"qid": "v1#0", "video": "v1", "sentence": "...", "prediction": [s, e], "topk": [[s, e, score], ...],
     "gt": [[s, e]], "iou": 0.53}
    ...

The first line records the run's settings (dataset, grounding config,
padding and seed, method, encoder, LLM) and the SHA-256 of its input files
(annotations, LLM outputs, durations). A run resumes a file only when both
match; otherwise :class:`SettingsMismatchError` says what differs. Each
record is appended and flushed as soon as its query is done, so a killed run
loses at most the line it was writing; a torn last line is cut before
appending. While a run writes, it holds an exclusive advisory lock
(``fcntl.flock``) on a sidecar ``.<name>.lock`` file, so a second run on the
same file stops at once with :class:`ResultsFileLockedError` instead of
writing every line twice (no lock on systems without ``fcntl``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tfvtg.errors import ResultsFileError

from .metrics import temporal_iou

__all__ = ["ResultsFile", "SettingsMismatchError", "ResultsFileLockedError", "make_record", "read_results",
           "read_header", "file_digest", "FORMAT"]

FORMAT = 1
_HEADER = "tfvtg_eval"


class SettingsMismatchError(ResultsFileError):
    """The results file was written by a run with other settings or inputs.

    Attributes:
        path: the results file.
        differences: (what, in the file, in this run) for each difference.
    """

    def __init__(self, reason: str, path: Path, differences: list[tuple[str, Any, Any]]):
        super().__init__(f"{reason}; pass overwrite=True (tfvtg eval --overwrite) to start it over, or write to "
                         "another file")
        self.reason = reason
        self.path = path
        self.differences = differences


class ResultsFileLockedError(ResultsFileError):
    """Another evaluation is writing the same results file."""


def file_digest(path: str | os.PathLike[str] | None) -> str | None:
    """SHA-256 (hex) of a file's bytes; None for no file."""
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _finite_or_none(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def make_record(qid: str, video: str, sentence: str, rows: Sequence[Sequence[Any]],
                gt: Sequence[Sequence[float]], top_k: int = 10,
                saliency: Sequence[float] | None = None) -> dict[str, Any]:
    """One query's result line.

    Args:
        rows: ranked moments [start, end, score] in seconds, best first.
        gt: ground-truth spans in seconds.
        top_k: moments kept.
        saliency: per-clip scores (QVHighlights' highlight metrics).

    Scores that are not finite (the reference's NaN) become null; "iou" is
    the top moment's temporal IoU with the first ground-truth span, never
    below 0 (disjoint spans give 0; TFVTG's raw formula goes negative).
    """
    topk: list[list[Any]] = [[float(r[0]), float(r[1]), _finite_or_none(r[2]) if len(r) > 2 else None]
                             for r in list(rows)[:top_k]]
    spans = [[float(s[0]), float(s[1])] for s in gt]
    record: dict[str, Any] = {
        "qid": qid, "video": video, "sentence": sentence,
        "prediction": topk[0][:2] if topk else None, "topk": topk, "gt": spans,
        "iou": max(0.0, temporal_iou(topk[0], spans[0])) if topk and spans else None,
    }
    if saliency is not None:
        record["saliency"] = [_finite_or_none(x) for x in saliency]
    return record


def _is_header(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(_HEADER), dict)


def read_results(path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """Result lines of a (possibly interrupted) run, in file order; the
    settings line, a torn last line and anything that is not a result are
    left out."""
    out: list[dict[str, Any]] = []
    if path is None or not Path(path).is_file():
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict) and "qid" in value and not _is_header(value):
                out.append(value)
    return out


def read_header(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings line of a results file, or None when it has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.endswith("\n"):
        return None
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        return None
    return value[_HEADER] if _is_header(value) else None


def _plain(value: Any) -> Any:
    """``value`` as it reads back from the file (tuples become lists, NaN null)."""
    from tfvtg.io import dumps_strict

    return json.loads(dumps_strict(value))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ResultsFile:
    """An open results file: locked, checked against this run's settings, appended to.

    Args:
        path: the JSONL file (created with its folder when missing).
        settings: what determines each query's result (compared on resume).
        inputs: digests of the input files (compared on resume).
        info: recorded but not compared (paths, versions).
        overwrite: start over even when the file holds another run's results.

    Use as a context manager; ``done`` holds the records already in the file,
    by qid.
    """

    def __init__(self, path: str | os.PathLike[str], settings: Mapping[str, Any], inputs: Mapping[str, Any],
                 info: Mapping[str, Any] | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.settings = _plain(dict(settings))
        self.inputs = _plain(dict(inputs))
        self.info = _plain(dict(info or {}))
        self.overwrite = overwrite
        self.done: dict[str, dict[str, Any]] = {}
        self._lock: IO[bytes] | None = None
        self._sink: IO[str] | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def __enter__(self) -> ResultsFile:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.path.is_dir():
            raise ResultsFileError(f"{self.path} is a directory; the results need a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            if self.overwrite or not self.path.exists() or self._drop_torn_line() == 0:
                self._write_header()
            else:
                self._check_header()
                for record in read_results(self.path):
                    self.done[str(record["qid"])] = record
            self._sink = open(self.path, "a", encoding="utf-8")
        except BaseException:
            self.close()
            raise

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record and flush it (a killed run keeps every finished query)."""
        from tfvtg.io import dumps_strict

        if self._sink is None:
            raise ResultsFileError(f"{self.path} is not open for writing")
        self._sink.write(dumps_strict(record) + "\n")
        self._sink.flush()
        self.done[str(record["qid"])] = dict(record)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the lock
            self._lock = None

    # -- internals ---------------------------------------------------------
    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return
        lock = open(self.lock_path, "ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ResultsFileLockedError(
                f"another evaluation is writing {self.path} (it holds {self.lock_path}); wait for it to finish "
                "or write to another results file") from None
        self._lock = lock

    def _drop_torn_line(self) -> int:
        """Cut an unfinished last line (a killed run's); returns the size left."""
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                return data.rfind(b"\n") + 1
            return len(data)

    def _write_header(self) -> None:
        from tfvtg.io import atomic_write, dumps_strict

        line = dumps_strict({_HEADER: {"format": FORMAT, "settings": self.settings, "inputs": self.inputs,
                                       "info": self.info}}) + "\n"
        atomic_write(self.path, lambda f: f.write(line), mode="w")

    def _check_header(self) -> None:
        header = read_header(self.path)
        if header is None:
            raise SettingsMismatchError(
                f"{self.path} holds results without a settings line (another program's, or an older tfvtg's), "
                f"so they cannot be resumed safely", self.path, [("settings", None, self.settings)])
        if header.get("format") != FORMAT:
            raise SettingsMismatchError(f"{self.path} has results format {header.get('format')!r}, this tfvtg "
                                        f"writes {FORMAT}", self.path, [("format", header.get("format"),
                                                                                    FORMAT)])
        old = _flatten({"settings": header.get("settings"), "inputs": header.get("inputs")})
        new = _flatten({"settings": self.settings, "inputs": self.inputs})
        diffs = [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diffs:
            shown = "; ".join(f"the {k[len('inputs.'):]} file differs" if k.startswith("inputs.")
                              else f"{k[len('settings.'):]}: {_show(a)} in the file, {_show(b)} now"
                              for k, a, b in diffs[:6])
            more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
            raise SettingsMismatchError(f"{self.path} holds results of a run with other settings ({shown}{more})",
                                        self.path, diffs)
