"""Benchmark annotations: Charades-STA, ActivityNet Captions, QVHighlights.

Every reader returns a :class:`QueryList` (a list of :class:`Query`, ground
truth in seconds) that also counts what it skipped. Each malformed entry is
refused on its own: one bad sentence never costs its neighbours. With
``strict=True`` the first one raises :class:`~tfvtg.errors.DatasetError`
naming the file and the line (or video key and sentence index); otherwise
the reader warns once per file, with the exact number of queries skipped,
and goes on. No input makes a reader crash: numbers too large for a float,
NaN and Infinity, JSON nested thousands deep, bytes that are not UTF-8 (the
line or entry holding them is skipped), lone surrogates in sentences
(replaced by U+FFFD).

What an entry must satisfy:

* duration: a finite number of seconds > 0;
* span [start, end]: finite seconds with 0 <= start <= end (a reversed span
  is skipped, not swapped: swapping would guess what the annotator meant),
  start before the duration, and end at most :func:`end_slack` seconds past
  it. Charades-STA's labels run up to 1.5 s past the video's length (124 of
  the 800 test queries in this project's parity subset), so those are kept
  as the published evaluations keep them;
* sentence: non-empty text.
"""
from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfvtg.errors import DatasetError, InvalidInputError

from .jsonsafe import BAD_BYTE, clean_json, clean_text, decode_utf8, finite_number, loads_json, read_bytes, read_lines, short_repr

__all__ = ["Query", "QueryList", "DatasetError", "load_tfvtg_json", "load_charades_sta", "load_qvhighlights",
           "read_durations_csv", "check_duration", "check_span", "end_slack", "load_dataset"]


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


class QueryList(list[Query]):
    """The queries of an annotation file, plus what the reader refused.

    Attributes:
        path: the file read.
        skipped: queries (sentences) refused, counted exactly; an entry
            whose sentence count is unknown counts as one.
        problems: one message per refused entry, naming file and line or key.
    """

    def __init__(self, queries: Iterable[Query] = (), path: str | os.PathLike[str] = "", skipped: int = 0,
                 problems: list[str] | None = None):
        super().__init__(queries)
        self.path = str(path)
        self.skipped = int(skipped)
        self.problems = list(problems or [])


class _Refusals:
    """Collects refused entries; raises on the first one in strict mode."""

    def __init__(self, path: str | os.PathLike[str], strict: bool):
        self.path = str(path)
        self.strict = strict
        self.skipped = 0
        self.problems: list[str] = []

    def add(self, where: str, why: str, queries: int = 1) -> None:
        message = f"{self.path}{where}: {why}"
        if self.strict:
            raise DatasetError(message)
        self.skipped += max(1, queries)
        self.problems.append(message)

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of the annotation file's non-blank lines; a
        line that is not UTF-8 is refused here."""
        for lineno, line in read_lines(self.path, "annotation file", DatasetError):
            if line is None:
                self.add(f":{lineno}", "not UTF-8 text")
            elif line.strip():
                yield lineno, line

    def finish(self, queries: list[Query]) -> QueryList:
        if self.problems:
            shown = "; ".join(self.problems[:5])
            more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
            noun = "query" if self.skipped == 1 else "queries"
            entries = "entry" if len(self.problems) == 1 else "entries"
            warnings.warn(f"skipped {self.skipped} {noun} ({len(self.problems)} malformed {entries}): {shown}{more}",
                          UserWarning, stacklevel=3)
        return QueryList(queries, self.path, self.skipped, self.problems)


# ---------------------------------------------------------------- validation

def end_slack(duration: float) -> float:
    """How far (seconds) a span's end may run past the video's duration:
    2 s or 5% of the duration, whichever is more (annotators' rounding;
    Charades-STA's worst in the parity subset is 1.5 s)."""
    return max(2.0, 0.05 * duration)


def check_duration(value: Any) -> float:
    """A video duration: finite seconds > 0."""
    duration = finite_number(value, "duration")
    if duration <= 0:
        raise InvalidInputError(f"duration must be > 0 seconds, got {duration:g}")
    return duration


def check_span(value: Any, duration: float | None) -> tuple[float, float]:
    """A ground-truth span [start, end] in seconds (see the module's rules)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InvalidInputError(f"a span must be [start, end] in seconds, got {short_repr(value)}")
    start = finite_number(value[0], "span start")
    end = finite_number(value[1], "span end")
    if start < 0:
        raise InvalidInputError(f"span [{start:g}, {end:g}] starts before 0 s")
    if end < start:
        raise InvalidInputError(f"span [{start:g}, {end:g}] ends before it starts")
    if duration is not None:
        if start >= duration and not (start == end == duration):
            raise InvalidInputError(f"span [{start:g}, {end:g}] starts after the video ends ({duration:g} s)")
        if end > duration + end_slack(duration):
            raise InvalidInputError(f"span [{start:g}, {end:g}] ends {end - duration:g} s after the video "
                                    f"({duration:g} s)")
    return start, end


def _sentence(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"a sentence must be text, got {type(value).__name__}")
    if BAD_BYTE in value:
        raise InvalidInputError("sentence holds bytes that are not UTF-8")
    text = clean_text(value).strip()
    if not text:
        raise InvalidInputError("sentence is empty")
    return text


def _video_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"a video id must be text, got {type(value).__name__}")
    text = clean_text(str(value))
    if BAD_BYTE in text:
        raise InvalidInputError("video id holds bytes that are not UTF-8")
    if not text.strip() or "\x00" in text:
        raise InvalidInputError(f"unusable video id {text!r}")
    return text


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, InvalidInputError) else f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- TFVTG / ActivityNet JSON

def load_tfvtg_json(path: str | os.PathLike[str], strict: bool = False) -> QueryList:
    """TFVTG / ActivityNet Captions JSON: ``{video: {duration, timestamps,
    sentences[, response]}}`` (TFVTG's llm_outputs.json has the same shape).

    A bad sentence or span skips that query only; a bad video entry (no
    duration, sentences and timestamps of different lengths) skips its
    queries, counted. The whole file is refused (DatasetError) only when it
    is not JSON at all or not an object.
    """
    refusals = _Refusals(path, strict)
    data = _read_json_object(path)
    queries: list[Query] = []
    for key, ann in data.items():
        where = f": video {key!r}"
        n_sentences = len(ann["sentences"]) if isinstance(ann, dict) and isinstance(ann.get("sentences"), list) else 1
        try:
            vid = _video_id(key)
            if not isinstance(ann, dict):
                raise InvalidInputError(f"expected an object, got {type(ann).__name__}")
            if "duration" not in ann and "video_duration" not in ann:
                raise InvalidInputError("no 'duration'")
            duration = check_duration(ann["duration"] if "duration" in ann else ann["video_duration"])
            sentences, stamps = ann.get("sentences"), ann.get("timestamps")
            if not isinstance(sentences, list) or not isinstance(stamps, list):
                raise InvalidInputError("'sentences' and 'timestamps' must be lists")
            if len(sentences) != len(stamps):
                n_sentences = max(len(sentences), len(stamps))
                raise InvalidInputError(f"{len(sentences)} sentences but {len(stamps)} timestamps")
        except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
            refusals.add(where, _why(exc), n_sentences)
            continue
        responses = ann.get("response")
        for i, (sentence, stamp) in enumerate(zip(sentences, stamps)):
            try:
                text = _sentence(sentence)
                span = check_span(stamp, duration)
            except (InvalidInputError, TypeError, ValueError) as exc:
                refusals.add(f"{where}, sentence {i}", _why(exc))
                continue
            queries.append(Query(f"{vid}#{i}", vid, text, duration, (span,), _response(responses, i)))
    return refusals.finish(queries)


def _response(responses: Any, i: int) -> dict[str, Any] | None:
    """The stored LLM answer of sentence ``i``: a dict, {} where the list has
    something unusable (TFVTG writes {} for a failed call), None without a list."""
    if not isinstance(responses, list):
        return None
    value = responses[i] if i < len(responses) else None
    return value if isinstance(value, dict) else {}


def _read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    text, _bad = decode_utf8(read_bytes(path, "annotation file", DatasetError))
    data = clean_json(loads_json(text, path, DatasetError))
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object {{video: {{duration, timestamps, sentences}}}}, "
                           f"got {type(data).__name__}")
    return data


# ---------------------------------------------------------------- Charades-STA text

def read_durations_csv(path: str | os.PathLike[str], strict: bool = False) -> dict[str, float]:
    """Video durations from a CSV with an id column ("id" or "video") and a
    length column ("length" or "duration"), e.g. Charades_v1_test.csv.
    Rows with an unusable duration are skipped (warned, counted)."""
    refusals = _Refusals(path, strict)
    lines = [(n, t) for n, t in read_lines(path, "durations file", DatasetError)]
    for n, t in lines:
        if t is None:
            refusals.add(f":{n}", "not UTF-8 text")
    reader = csv.DictReader(io.StringIO("\n".join(t for _, t in lines if t is not None)))
    cols = {c.lower().strip(): c for c in reader.fieldnames or []}
    idc = cols.get("id") or cols.get("video") or cols.get("vid")
    lc = cols.get("length") or cols.get("duration")
    if not idc or not lc:
        raise DatasetError(f"{path}: needs an id column (id/video) and a length column (length/duration)")
    out: dict[str, float] = {}
    for row in reader:
        if not row.get(lc):
            continue
        try:
            out[_video_id(row.get(idc))] = check_duration(row[lc])
        except InvalidInputError as exc:
            refusals.add(f": video {row.get(idc)!r}", str(exc))
    refusals.finish([])
    return out


def load_charades_sta(path: str | os.PathLike[str], durations: str | os.PathLike[str] | dict[str, float] | None = None,
                      features: str | os.PathLike[str] | None = None, fps: float = 3.0,
                      strict: bool = False) -> QueryList:
    """The original Charades-STA text format: one ``vid start end##sentence`` per line.

    Durations come from ``durations`` (a CSV path or a dict) or, failing
    that, from the feature files in ``features`` (T / fps seconds, read from
    the ``.npy`` header only); otherwise a query's duration is None and the
    evaluation takes it from the features it loads.
    """
    if isinstance(durations, (str, os.PathLike)):
        durations = read_durations_csv(durations, strict=strict)
    known = dict(durations or {})
    refusals = _Refusals(path, strict)
    queries: list[Query] = []
    counts: dict[str, int] = {}
    for lineno, line in refusals.lines():
        try:
            head, sentence = line.split("##", 1)
            parts = head.split()
            if len(parts) != 3:
                raise InvalidInputError("expected 'vid start end##sentence'")
            vid = _video_id(parts[0])
            duration = known.get(vid)
            if duration is None and features is not None:
                duration = _duration_from_features(Path(features), vid, fps)
            span = check_span(parts[1:], duration)
            text = _sentence(sentence)
        except (InvalidInputError, ValueError) as exc:
            refusals.add(f":{lineno}", f"{_why(exc)}: {line.strip()[:80]!r}")
            continue
        i = counts.get(vid, 0)
        counts[vid] = i + 1
        queries.append(Query(f"{vid}#{i}", vid, text, duration, (span,)))
    return refusals.finish(queries)


def _duration_from_features(directory: Path, vid: str, fps: float) -> float | None:
    npy = directory / f"{vid}.npy"
    if "/" in vid or "\\" in vid or vid.startswith(".") or not npy.is_file():
        return None
    from ..io import load_npy

    try:
        frames = load_npy(npy, mmap=True).shape[0]
    except (OSError, ValueError, EOFError, IndexError):
        return None
    return frames / fps if frames > 0 else None


# ---------------------------------------------------------------- QVHighlights

def load_qvhighlights(path: str | os.PathLike[str], strict: bool = False) -> QueryList:
    """QVHighlights JSONL: one ``{qid, query, vid, duration, relevant_windows,
    relevant_clip_ids, saliency_scores}`` object per line (the test split has
    no ground truth: spans are then empty). A clip id must name a 2 s clip of
    the video (0 <= id < duration / 2) and each saliency score is 3 whole
    numbers in 0..4; a qid seen before is refused."""
    refusals = _Refusals(path, strict)
    queries: list[Query] = []
    seen: set[str] = set()
    for lineno, line in refusals.lines():
        try:
            d = loads_json(line, "line")
            if not isinstance(d, dict):
                raise InvalidInputError(f"expected a JSON object, got {type(d).__name__}")
            for key in ("qid", "query", "vid", "duration"):
                if key not in d:
                    raise InvalidInputError(f"no {key!r}")
            qid = _video_id(d["qid"])
            if qid in seen:
                raise InvalidInputError(f"qid {qid!r} appears twice")
            duration = check_duration(d["duration"])
            windows = d.get("relevant_windows") or []
            if not isinstance(windows, list):
                raise InvalidInputError("'relevant_windows' must be a list")
            spans = tuple(check_span(w, duration) for w in windows)
            saliency = _saliency(d.get("relevant_clip_ids") or [], d.get("saliency_scores") or [], duration)
            query = Query(qid, _video_id(d["vid"]), _sentence(d["query"]), duration, spans, None, saliency)
        except (InvalidInputError, ValueError, TypeError) as exc:
            refusals.add(f":{lineno}", _why(exc))
            continue
        seen.add(qid)
        queries.append(query)
    return refusals.finish(queries)


def _saliency(clip_ids: Any, scores: Any, duration: float) -> dict[int, tuple[int, ...]]:
    if not isinstance(clip_ids, list) or not isinstance(scores, list):
        raise InvalidInputError("'relevant_clip_ids' and 'saliency_scores' must be lists")
    if len(clip_ids) != len(scores):
        raise InvalidInputError(f"{len(clip_ids)} clip ids but {len(scores)} saliency scores")
    n_clips = int(duration / 2.0)
    out: dict[int, tuple[int, ...]] = {}
    for c, s in zip(clip_ids, scores):
        clip = _whole(c, "clip id")
        if not 0 <= clip < max(n_clips, 1):
            raise InvalidInputError(f"clip id {clip} is outside the video's {n_clips} clips of 2 s")
        if not isinstance(s, list) or len(s) != 3:
            raise InvalidInputError(f"saliency scores of clip {clip} must be 3 numbers, got {short_repr(s)}")
        values = tuple(_whole(x, "saliency score") for x in s)
        if any(not 0 <= x <= 4 for x in values):
            raise InvalidInputError(f"saliency scores of clip {clip} must be in 0..4, got {values}")
        out[clip] = values
    return out


def _whole(value: Any, what: str) -> int:
    x = finite_number(value, what)
    if x != math.floor(x):
        raise InvalidInputError(f"{what} must be a whole number, got {x:g}")
    return int(x)


# ---------------------------------------------------------------- the registry's entry points (compatibility)

def load_dataset(dataset: str, annotations: str | os.PathLike[str], **kwargs: Any) -> QueryList:
    """Read ``annotations`` of a named dataset (see :mod:`tfvtg.eval.registry`)."""
    from .registry import load_dataset as _load

    return _load(dataset, annotations, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "DATASETS":  # kept for callers of the old table; the registry is the one source
        from .registry import DATASETS

        return DATASETS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
