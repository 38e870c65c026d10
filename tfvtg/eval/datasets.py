"""Benchmark annotations: Charades-STA, ActivityNet Captions, QVHighlights.

Every reader yields :class:`Query` objects with ground truth in seconds. A
malformed line or entry is reported with its line number (or key): with
``strict=True`` as a :class:`DatasetError`, otherwise as a warning, and the
rest of the file is read.
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfvtg.errors import DatasetError, InvalidInputError, MissingFileError

__all__ = ["Query", "DatasetError", "load_tfvtg_json", "load_charades_sta", "load_qvhighlights", "load_dataset",
           "DATASETS"]




@dataclass(frozen=True)
class Query:
    """One grounding query with its ground truth.

    Attributes:
        qid: unique id ("<video>#<i>" for JSON/text formats, the qid for QVHighlights).
        video: video id (feature file stem).
        sentence: the query text.
        duration: video length in seconds (None when unknown).
        spans: ground-truth (start, end) spans in seconds (one for Charades-STA
            and ActivityNet, several relevant windows for QVHighlights).
        response: TFVTG-format LLM decomposition stored with the annotation, if any.
        saliency: QVHighlights clip saliency: {clip id: (3 scores)}.
    """

    qid: str
    video: str
    sentence: str
    duration: float | None
    spans: tuple[tuple[float, float], ...]
    response: dict[str, Any] | None = None
    saliency: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def span(self) -> tuple[float, float]:
        """The first ground-truth span."""
        return self.spans[0]


def _report(errors: list[str], strict: bool, path: str | os.PathLike[str]) -> None:
    if not errors:
        return
    if strict:
        raise DatasetError(errors[0])
    shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
    warnings.warn(f"skipped {len(errors)} malformed entries in {path}: {shown}", stacklevel=3)


def _span(value: Any) -> tuple[float, float]:
    s, e = (float(v) for v in value)
    if not e >= s:
        raise InvalidInputError(f"span end {e} is before its start {s}")
    return s, e


def load_tfvtg_json(path: str | os.PathLike[str], strict: bool = False) -> list[Query]:
    """TFVTG / ActivityNet Captions JSON: ``{video: {duration, timestamps,
    sentences[, response]}}`` (TFVTG's llm_outputs.json has the same shape)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object {{video: {{duration, timestamps, sentences}}}}")
    queries, errors = [], []
    for vid, ann in data.items():
        try:
            if not isinstance(ann, dict):
                raise InvalidInputError(f"expected an object, got {type(ann).__name__}")
            duration = float(ann["duration"] if "duration" in ann else ann["video_duration"])
            sentences, stamps = ann["sentences"], ann["timestamps"]
            if len(sentences) != len(stamps):
                raise InvalidInputError(f"{len(sentences)} sentences but {len(stamps)} timestamps")
            responses = ann.get("response") or [None] * len(sentences)
            for i, (sentence, stamp) in enumerate(zip(sentences, stamps)):
                if not isinstance(sentence, str) or not sentence.strip():
                    raise InvalidInputError(f"sentence {i} is empty")
                resp = responses[i] if i < len(responses) else None
                queries.append(Query(f"{vid}#{i}", vid, sentence, duration, (_span(stamp),), resp))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"{path}: video {vid!r}: {type(exc).__name__}: {exc}")
    _report(errors, strict, path)
    return queries


def read_durations_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """Video durations from a CSV with an id column ("id" or "video") and a
    length column ("length" or "duration"), e.g. Charades_v1_test.csv."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = {c.lower(): c for c in reader.fieldnames or []}
        idc = cols.get("id") or cols.get("video") or cols.get("vid")
        lc = cols.get("length") or cols.get("duration")
        if not idc or not lc:
            raise DatasetError(f"{path}: needs an id column (id/video) and a length column (length/duration)")
        return {row[idc]: float(row[lc]) for row in reader if row.get(lc)}


def load_charades_sta(path: str | os.PathLike[str], durations: str | os.PathLike[str] | dict[str, float] | None = None,
                      features: str | os.PathLike[str] | None = None, fps: float = 3.0,
                      strict: bool = False) -> list[Query]:
    """The original Charades-STA text format: one ``vid start end##sentence`` per line.

    Durations come from ``durations`` (a CSV path or a dict) or, failing
    that, from the feature files in ``features`` (T / fps seconds).
    """
    if isinstance(durations, (str, os.PathLike)):
        durations = read_durations_csv(durations)
    durations = dict(durations or {})
    queries, errors, counts = [], [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                head, sentence = line.rstrip("\n").split("##", 1)
                vid, start, end = head.split()
                span = _span((start, end))
                if not sentence.strip():
                    raise InvalidInputError("empty sentence")
            except ValueError as exc:
                errors.append(f"{path}:{lineno}: expected 'vid start end##sentence' ({exc}): {line.strip()[:80]!r}")
                continue
            duration = durations.get(vid)
            if duration is None and features is not None:
                npy = Path(features) / f"{vid}.npy"
                if npy.exists():
                    import numpy as np

                    duration = np.load(npy, mmap_mode="r").shape[0] / fps
            i = counts.get(vid, 0)
            counts[vid] = i + 1
            queries.append(Query(f"{vid}#{i}", vid, sentence.strip(), duration, (span,)))
    _report(errors, strict, path)
    return queries


def load_qvhighlights(path: str | os.PathLike[str], strict: bool = False) -> list[Query]:
    """QVHighlights JSONL: one ``{qid, query, vid, duration, relevant_windows,
    relevant_clip_ids, saliency_scores}`` object per line (the test split has
    no ground truth: spans are then empty)."""
    queries, errors = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise InvalidInputError(f"expected a JSON object, got {type(d).__name__}")
                spans = tuple(_span(w) for w in d.get("relevant_windows", []))
                saliency = {int(c): tuple(int(x) for x in s)
                            for c, s in zip(d.get("relevant_clip_ids", []), d.get("saliency_scores", []))}
                queries.append(Query(str(d["qid"]), str(d["vid"]), str(d["query"]), float(d["duration"]), spans,
                                     None, saliency))
            except (ValueError, KeyError, TypeError) as exc:
                errors.append(f"{path}:{lineno}: {type(exc).__name__}: {exc}")
    _report(errors, strict, path)
    return queries


DATASETS: dict[str, Callable[..., list[Query]]] = {
    "charades": load_tfvtg_json,
    "activitynet": load_tfvtg_json,
    "qvhighlights": load_qvhighlights,
}


def load_dataset(dataset: str, annotations: str | os.PathLike[str], **kwargs: Any) -> list[Query]:
    """Read ``annotations`` of a named dataset. Charades-STA annotations may
    be TFVTG's JSON or the original ``.txt`` format (chosen by suffix)."""
    name = dataset.lower().replace("-", "").replace("_", "")
    name = {"charadessta": "charades", "anet": "activitynet", "qvhighlight": "qvhighlights"}.get(name, name)
    if name not in DATASETS:
        raise InvalidInputError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if not Path(annotations).exists():
        raise MissingFileError(f"annotation file not found: {annotations}")
    if name == "charades" and str(annotations).endswith(".txt"):
        return load_charades_sta(annotations, **kwargs)
    return DATASETS[name](annotations, **{k: v for k, v in kwargs.items() if k == "strict"})
