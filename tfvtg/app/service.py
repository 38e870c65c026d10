"""What the web page asks for, without the web: searches, similarity curves,
video files by id, thumbnails, clips, uploads and their encoding jobs.

:class:`Service` is used by :mod:`tfvtg.app.server` (the FastAPI routes are
thin wrappers) and can be driven directly from Python or tests.

The library is opened through :class:`ReadOnlyLibrary`, which exposes the
reading methods of :class:`tfvtg.Library` only: nothing the server does can
add, remove or change a video. Model calls (the library's search, text and
frame encoding) run one at a time under one lock: the encoder is one torch
module shared by every request.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import GroundingConfig
from ..core.decomposition import Decomposition
from ..core.features import VideoFeatures
from ..core.grounder import Grounder
from ..core.moments import GroundingResult
from ..errors import (
    DecompositionError,
    InvalidInputError,
    InvalidTypeError,
    LibraryError,
    MissingFileError,
    TfvtgError,
    UnknownVideoError,
    VideoDecodeError,
)
from .media import ThumbnailCache
from .safety import NotReadyError, UnknownUploadError, UploadTooLargeError, check_token, check_video_id

__all__ = ["Service", "Settings", "ReadOnlyLibrary", "Upload", "Job", "open_library", "CURVE_POINTS"]

#: most points of a similarity curve sent to the page (longer curves are max-pooled)
CURVE_POINTS = 1500
_VIDEO_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".3gp", ".flv", ".wmv",
                   ".ogv")


@dataclass
class Settings:
    """Server settings.

    Attributes:
        max_upload_bytes: largest upload accepted (default 2 GiB).
        max_uploads: uploads kept at once; the oldest is deleted to make room.
        upload_fps: feature frames per second for uploaded videos.
        thumb_width: default thumbnail width in pixels.
        max_top_k: the most hits one search returns.
        upload_dir: where uploads go (default: a new temporary directory,
            deleted when the server stops).
    """

    max_upload_bytes: int = 2 * 1024 ** 3
    max_uploads: int = 8
    upload_fps: float = 3.0
    thumb_width: int = 192
    max_top_k: int = 100
    upload_dir: str | None = None


def open_library(directory: str | os.PathLike[str], encoder: Any = None, **kwargs: Any) -> Any:
    """Open an existing library (never create one: a typo must not leave an
    empty library behind)."""
    from ..library import Library

    path = Path(directory).expanduser()
    if not path.is_dir():
        raise MissingFileError(f"no library directory at {path}; build one with `tfvtg index VIDEOS --library {path}`")
    if not (path / "library.json").is_file():
        raise LibraryError(f"{path} is not a tfvtg library (no library.json); build one with "
                           f"`tfvtg index VIDEOS --library {path}`")
    return Library(path, encoder=encoder, **kwargs)


class ReadOnlyLibrary:
    """A :class:`tfvtg.Library` seen through its reading methods only.

    There is no ``add``, ``remove`` or ``add_features`` here. Two library
    objects on the same directory serve it (SQLite's WAL lets readers share
    it): the given one searches, under the model lock (its coarse index and
    encoder); a second one answers the quick reads (ids, records, features,
    clips) under its own lock, so the page's lists and thumbnails never wait
    for a search or for the encoder to load."""

    def __init__(self, library: Any, model_lock: threading.RLock):
        from ..library import Library

        self._lib = library
        self._model_lock = model_lock
        self._meta = Library(library.path)
        self._meta_lock = threading.RLock()

    @property
    def path(self) -> Path:
        return Path(self._lib.path)

    @property
    def config(self) -> Any:
        return self._lib.config

    @property
    def decomposer(self) -> Any:
        return self._lib.decomposer

    def __len__(self) -> int:
        with self._meta_lock:
            return len(self._meta)

    def __contains__(self, video_id: object) -> bool:
        with self._meta_lock:
            return video_id in self._meta

    def search(self, query: str, top_k: int, candidates: int | None = None, decomposition: Any = None) -> Any:
        with self._model_lock:
            return self._lib.search(query, top_k=top_k, candidates=candidates, decomposition=decomposition)

    def encoder(self) -> Any:
        """The searching library's encoder (one model in memory for everything)."""
        with self._model_lock:
            return self._lib.encoder()

    def features(self, video_id: str) -> VideoFeatures:
        with self._meta_lock:
            return self._meta.features(video_id)

    def info(self, video_id: str) -> Any:
        with self._meta_lock:
            return self._meta.info(video_id)

    def records(self) -> list[Any]:
        with self._meta_lock:
            return list(self._meta.iter_records())

    def stats(self) -> dict[str, Any]:
        with self._meta_lock:
            return dict(self._meta.stats())

    @property
    def encoder_name(self) -> str | None:
        with self._meta_lock:
            return self._meta.encoder_name

    def cut(self, video_id: str, out: Path, start: float, end: float, pad: float, mode: str = "auto") -> Any:
        # reads the source video and writes ``out`` (outside the library)
        with self._meta_lock:
            return self._meta.cut(video_id, out, pad=pad, start=start, end=end, mode=mode)

    def close(self, wait: float = 2.0) -> None:
        """Close both library objects; a search (or the encoder still loading)
        is waited for ``wait`` seconds at most: a server stopping with Ctrl-C
        must not hang on it (the process is ending; SQLite needs no goodbye)."""
        if self._model_lock.acquire(timeout=wait):
            try:
                self._lib.close()
            finally:
                self._model_lock.release()
        with self._meta_lock:
            self._meta.close()


@dataclass
class Job:
    """A background task (encoding an upload) the page polls.

    Attributes:
        id: the job's token.
        kind: what it does ("encode").
        state: "running", "done" or "failed".
        done, total: units of work done and to do (frames), total 0 while unknown.
        message: what it is doing, or why it failed, in words.
    """

    id: str
    kind: str
    state: str = "running"
    done: int = 0
    total: int = 0
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        fraction = (self.done / self.total) if self.total else None
        end = self.finished if self.finished is not None else time.time()
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "fraction": fraction, "message": self.message, "seconds": round(end - self.started, 3),
                "result": self.result}


@dataclass
class Upload:
    """A video uploaded in "one video" mode.

    Attributes:
        token: its id in URLs (16 hex digits made by the server).
        name: the file name the browser gave (display only; never a path).
        path: where the bytes are, inside the server's upload directory.
        size: bytes.
        duration: seconds (from the container), once probed.
        features: its features once encoded, else None.
        job: the encoding job's id.
    """

    token: str
    name: str
    path: Path
    size: int = 0
    duration: float = 0.0
    features: VideoFeatures | None = None
    job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "name": self.name, "size": self.size, "duration": self.duration,
                "ready": self.features is not None, "job": self.job, "media": f"/api/uploads/{self.token}"}


class _TextCache:
    """Sentence embeddings kept across requests (the curve of every hit of
    one search needs the same few sentences)."""

    def __init__(self, encoder_of: Callable[[], Any], lock: threading.RLock, max_items: int = 512):
        self._encoder_of = encoder_of
        self._lock = lock
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self.max_items = max_items

    @property
    def encoder(self) -> Any:
        return self._encoder_of()

    def __getattr__(self, name: str) -> Any:  # space, mask_threshold
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._encoder_of(), name)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # the model's lock: cached rows come back at once, new ones one batch at a time
            missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
            if missing:
                emb = np.asarray(self._encoder_of().encode_text(list(missing)), dtype=np.float32)
                if emb.ndim == 1:
                    emb = emb[None, :]
                for text, row in zip(missing, emb):
                    self._rows[text] = row
            out = np.stack([self._rows[t] for t in texts])
            for t in texts:
                self._rows.move_to_end(t)
            while len(self._rows) > self.max_items:
                self._rows.popitem(last=False)
            return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _pool_curve(curve: np.ndarray, seconds_per_frame: float, points: int = CURVE_POINTS) -> tuple[list, list]:
    """(times, values): frame i at the middle of its span, (i + 0.5) * s; a
    curve longer than ``points`` is max-pooled into ``points`` bins (peaks
    survive, which is what the eye looks for)."""
    t = curve.shape[0]
    values = np.asarray(curve, dtype=np.float64)
    if t <= points:
        times = (np.arange(t) + 0.5) * seconds_per_frame
        pooled = values
    else:
        edges = np.linspace(0, t, points + 1).astype(np.int64)
        pooled = np.maximum.reduceat(np.where(np.isfinite(values), values, -np.inf), edges[:-1])
        times = (edges[:-1] + edges[1:]) / 2.0 * seconds_per_frame
    return [round(float(x), 4) for x in times], [_finite(round(float(v), 5)) for v in pooled]


def moment_score(curve: np.ndarray, features: VideoFeatures, start: float, end: float) -> float:
    """Mean of the similarity curve over the moment's frames (the library's
    cross-video score, so one-video hits read on the same scale)."""
    t = curve.shape[0]
    per_second = t / features.duration
    a = min(max(int(math.floor(start * per_second)), 0), t - 1)
    b = min(max(int(math.ceil(end * per_second)), a + 1), t)
    segment = curve[a:b]
    segment = segment[np.isfinite(segment)]
    return float(segment.mean()) if segment.size else 0.0


class Service:
    """Everything the page asks for.

    Args:
        library: a :class:`tfvtg.Library`, a library directory, or None for
            "one video" mode only.
        encoder: the encoder for uploads (and for the library's queries when
            given): a registry name, model directory or encoder object.
            Default: the library's; without a library, ``load_encoder()``'s
            default, loaded when first needed.
        decomposer: optional LLM decomposer (``decompose(query) ->
            Decomposition``); each query is decomposed once and the sub-events
            are drawn with the curve.
        config: grounding config or preset name for uploads and curves
            (default: the library's, else "default").
        settings: :class:`Settings`.
    """

    def __init__(self, library: Any = None, *, encoder: Any = None, decomposer: Any = None,
                 config: GroundingConfig | str | None = None, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.model_lock = threading.RLock()
        self._encoder_spec = encoder
        self._encoder: Any = None if isinstance(encoder, (str, os.PathLike)) or encoder is None else encoder
        self.decomposer = decomposer
        self.library: ReadOnlyLibrary | None = None
        if library is not None:
            from ..library import Library

            if not isinstance(library, Library):
                library = open_library(library, encoder=encoder)
            self.library = ReadOnlyLibrary(library, self.model_lock)
            if decomposer is None:
                self.decomposer = library.decomposer
        self.config = config if config is not None else (self.library.config if self.library else None)
        self._text = _TextCache(self.text_encoder, self.model_lock)
        self._decompositions: OrderedDict[str, Decomposition | None] = OrderedDict()
        self.thumbnails = ThumbnailCache()
        self._owns_upload_dir = self.settings.upload_dir is None
        self.upload_dir = Path(self.settings.upload_dir or tempfile.mkdtemp(prefix="tfvtg-serve-uploads-"))
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self._jobs: dict[str, Job] = {}
        self._state_lock = threading.Lock()
        self.warm_error: str | None = None
        self.ready = threading.Event()

    # -- life --------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the encoder and the coarse index, compile the kernels (a
        search for a throwaway sentence), so the first real search is fast.
        A failure is kept in ``warm_error`` and shown on the page."""
        try:
            if self.library is not None and len(self.library):
                self.library.search("warm up", 1, decomposition=Decomposition.single("warm up"))
            elif self.library is None and self._encoder_spec is not None:
                self.text_encoder()
        except (TfvtgError, OSError, ImportError) as exc:
            self.warm_error = str(exc)
        finally:
            self.ready.set()

    def close(self) -> None:
        """Close the library and delete the uploads (and their directory when
        the server made it)."""
        if self.library is not None:
            self.library.close()
        with self._state_lock:
            for up in self._uploads.values():
                _unlink(up.path)
            self._uploads.clear()
        if self._owns_upload_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    # -- models ------------------------------------------------------------------
    def text_encoder(self) -> Any:
        """The encoder: the one given, else the library's, else the default one."""
        with self.model_lock:
            if self._encoder is None:
                if self.library is not None and self._encoder_spec is None:
                    self._encoder = self.library.encoder()
                else:
                    from ..encoders import load_encoder

                    self._encoder = load_encoder(self._encoder_spec)
            return self._encoder

    def decomposition(self, query: str) -> Decomposition | None:
        """The query's decomposition (asked once per query), or None without a decomposer."""
        if self.decomposer is None:
            return None
        with self._state_lock:
            if query in self._decompositions:
                self._decompositions.move_to_end(query)
                return self._decompositions[query]
        try:
            dec = self.decomposer.decompose(query)
        except DecompositionError:
            dec = Decomposition.single(query, fallback=True)
        with self._state_lock:
            self._decompositions[query] = dec
            while len(self._decompositions) > 256:
                self._decompositions.popitem(last=False)
        return dec

    def _grounder(self) -> Grounder:
        return Grounder(self._text, self.config)

    # -- library -----------------------------------------------------------------
    def _need_library(self) -> ReadOnlyLibrary:
        if self.library is None:
            raise LibraryError("this server has no library (it was started without LIBRARY_DIR): use the "
                               "\"one video\" mode, or restart with `tfvtg serve LIBRARY_DIR`")
        return self.library

    def info(self) -> dict[str, Any]:
        """What the page needs to know at start: mode, library summary, limits."""
        out: dict[str, Any] = {"library": None, "max_upload_bytes": self.settings.max_upload_bytes,
                               "max_top_k": self.settings.max_top_k, "decomposer": self.decomposer is not None,
                               "ready": self.ready.is_set(), "warm_error": self.warm_error}
        if self.library is not None:
            stats = self.library.stats()
            out["library"] = {"path": stats.get("path"), "name": self.library.path.name, "videos": stats.get("videos"),
                              "hours": stats.get("hours"), "encoder": stats.get("encoder"), "fps": stats.get("fps")}
        return out

    def videos(self) -> list[dict[str, Any]]:
        """Every video of the library: id, duration (s), frames, fps, whether its file is known."""
        lib = self._need_library()
        return [{"id": r.id, "duration": r.duration, "frames": r.frames, "fps": r.fps,
                 "has_source": bool(r.source), "media": _media_url(r.id)} for r in lib.records()]

    def _check_top_k(self, top_k: int) -> int:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidInputError(f"top_k must be a whole number from 1 to {self.settings.max_top_k}, got {top_k!r}")
        return top_k

    @staticmethod
    def _check_query(query: Any) -> str:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("type a sentence to search for (the query is empty)")
        if len(query) > 1000:
            raise InvalidInputError(f"the query is {len(query)} characters long; keep it under 1000")
        return query.strip()

    def search(self, query: str, top_k: int = 10) -> dict[str, Any]:
        """The library's hits for ``query``, best first, as the page shows them."""
        lib = self._need_library()
        query = self._check_query(query)
        top_k = self._check_top_k(top_k)
        started = time.perf_counter()
        dec = self.decomposition(query)
        # twice the hits from the same candidate videos: the same span can come
        # back twice from one video (a decomposition's candidates repeat), and
        # the page shows each moment once
        hits = lib.search(query, 2 * top_k, candidates=max(2 * top_k, 20), decomposition=dec)
        searched = time.perf_counter() - started
        rows: list[dict[str, Any]] = []
        durations: dict[str, float] = {}
        seen: set[tuple[str, float, float]] = set()
        for h in hits:
            span = (h.video, round(h.start, 2), round(h.end, 2))
            if span in seen:
                continue
            seen.add(span)
            if len(rows) == top_k:
                break
            rank = len(rows)
            if h.video not in durations:
                durations[h.video] = float(lib.info(h.video).duration)
            rows.append({"rank": rank, "video": h.video, "name": h.video, "start": h.start, "end": h.end,
                         "score": h.score, "confidence": _finite(h.confidence), "duration": durations[h.video],
                         "has_source": bool(h.source), "media": _media_url(h.video)})
        return {"query": query, "top_k": top_k, "hits": rows, "note": getattr(hits, "note", None),
                "candidates": getattr(hits, "candidates", None), "decomposition": _decomposition_dict(dec),
                "search_ms": round(searched * 1000, 2)}

    # -- media by id ----------------------------------------------------------------
    def source(self, kind: str, key: str) -> Path:
        """The video file of a library id ("video") or upload token ("upload").
        The only way from a request to a file: a catalogue lookup or the
        server's own upload table."""
        if kind == "video":
            lib = self._need_library()
            rec = lib.info(check_video_id(key))
            if not rec.source:
                raise MissingFileError(f"the library has no video file for {key!r} (it was added as features); "
                                       "only its moments can be searched")
            path = Path(rec.source)
            if not path.is_file():
                raise MissingFileError(f"the video file of {key!r} is gone: {rec.source}")
            return path
        if kind == "upload":
            return self.upload(key).path
        raise InvalidInputError(f"unknown media kind {kind!r}")

    def duration(self, kind: str, key: str) -> float:
        if kind == "video":
            return float(self._need_library().info(check_video_id(key)).duration)
        up = self.upload(key)
        return float(up.features.duration if up.features is not None else up.duration)

    def features(self, kind: str, key: str) -> VideoFeatures:
        if kind == "video":
            return self._need_library().features(check_video_id(key))
        up = self.upload(key)
        if up.features is None:
            job = self._jobs.get(up.job or "")
            if job is not None and job.state == "failed":
                raise NotReadyError(f"{up.name} could not be encoded: {job.message}")
            raise NotReadyError(f"{up.name} is still being encoded; wait for the progress bar to finish")
        return up.features

    def thumbnail(self, kind: str, key: str, seconds: float, width: int | None = None) -> bytes:
        """A JPEG of the frame at ``seconds``."""
        width = width or self.settings.thumb_width
        if isinstance(width, bool) or not isinstance(width, int) or not 16 <= width <= 640:
            raise InvalidInputError(f"a thumbnail width is 16-640 pixels, got {width!r}")
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise InvalidInputError(f"t must be a number of seconds >= 0, got {seconds!r}")
        path = self.source(kind, key)
        seconds = min(float(seconds), max(self.duration(kind, key) - 1e-3, 0.0))
        return self.thumbnails.get(str(path), seconds, width)

    def cut(self, kind: str, key: str, start: float, end: float, pad: float, out: Path, mode: str = "auto") -> Any:
        """Write the moment (``pad`` seconds either side) as an MP4 at ``out``
        with the library's export ("auto": stream copy where keyframes allow;
        "reencode": H.264 a browser plays). Returns its
        :class:`tfvtg.library.export.Clip`."""
        for name, value in (("start", start), ("end", end), ("pad", pad)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a number of seconds, got {value!r}")
        if mode not in ("auto", "reencode"):
            raise InvalidInputError(f"mode is 'auto' or 'reencode', got {mode!r}")
        if not 0 <= pad <= 60:
            raise InvalidInputError(f"pad must be 0-60 seconds, got {pad!r}")
        if kind == "video":
            lib = self._need_library()
            return lib.cut(check_video_id(key), out, float(start), float(end), float(pad), mode)
        from ..library.export import cut_clip

        up = self.upload(key)
        return cut_clip(up.path, float(start), float(end), out, pad=float(pad), duration=self.duration(kind, key),
                        mode=mode)

    def curve(self, kind: str, key: str, query: str, start: float | None = None, end: float | None = None
              ) -> dict[str, Any]:
        """The similarity curve of ``query`` over the whole video, the moment
        [start, end], the other candidate moments, and the sub-events when
        the query was decomposed: what the page draws for a selected hit."""
        query = self._check_query(query)
        features = self.features(kind, key)
        result = self._ground(features, query)
        assert result.curve is not None
        seconds_per_frame = features.duration / features.num_frames
        times, values = _pool_curve(result.curve, seconds_per_frame)
        sub_events = []
        if result.decomposition is not None and result.sub_event_moments:
            for i, (texts, moments) in enumerate(zip(result.decomposition.sub_events, result.sub_event_moments)):
                entry: dict[str, Any] = {"index": i, "description": texts[0], "descriptions": list(texts),
                                         "moments": [{"start": m.start, "end": m.end, "score": _finite(m.score)}
                                                     for m in moments if m.end > m.start]}
                if i < len(result.sub_event_curves):
                    entry["values"] = _pool_curve(result.sub_event_curves[i], seconds_per_frame)[1]
                sub_events.append(entry)
        moment = None
        if start is not None and end is not None:
            moment = {"start": float(start), "end": float(end)}
        elif result.moments:
            moment = {"start": result.moments[0].start, "end": result.moments[0].end}
        finite = np.asarray([v for v in values if v is not None], dtype=np.float64)
        return {"query": query, "duration": features.duration, "fps": features.num_frames / features.duration,
                "times": times, "values": values,
                "min": float(finite.min()) if finite.size else 0.0, "max": float(finite.max()) if finite.size else 1.0,
                "moment": moment,
                "candidates": [{"start": m.start, "end": m.end, "score": _finite(m.score), "rank": i}
                               for i, m in enumerate(result.moments) if m.end > m.start],
                "relationship": result.decomposition.relationship if result.decomposition is not None else None,
                "sub_events": sub_events}

    def _ground(self, features: VideoFeatures, query: str) -> GroundingResult:
        dec = self.decomposition(query)
        return self._grounder().ground(features, query, dec)

    # -- uploads ---------------------------------------------------------------------
    def upload(self, token: str) -> Upload:
        check_token(token)
        with self._state_lock:
            up = self._uploads.get(token)
        if up is None:
            raise UnknownUploadError(f"no upload {token!r} on this server (uploads are dropped when the server "
                                     "restarts or when newer ones need the room); upload the file again")
        return up

    def receive_upload(self, name: str, chunks: Iterator[bytes] | Any, declared_size: int | None = None) -> Upload:
        """Store an upload from an iterator of byte chunks (sync); see :meth:`new_upload`
        and :meth:`finish_upload` for the streaming (async) path."""
        up = self.new_upload(name, declared_size)
        try:
            with open(up.path, "wb") as f:
                for chunk in chunks:
                    self.write_chunk(up, f, chunk)
        except BaseException:
            self.drop_upload(up)
            raise
        return self.finish_upload(up)

    def new_upload(self, name: str, declared_size: int | None = None) -> Upload:
        """Reserve an upload: a token and a file inside the upload directory.
        The browser's file name is only displayed; the stored name is the token."""
        limit = self.settings.max_upload_bytes
        if declared_size is not None and declared_size > limit:
            raise UploadTooLargeError(f"the file is {_size(declared_size)}; uploads are limited to {_size(limit)} "
                                      "(start the server with a larger --max-upload-mb)")
        display = os.path.basename(str(name or "").replace("\\", "/")).strip()[:200] or "upload"
        suffix = Path(display).suffix.lower()
        token = secrets.token_hex(8)
        path = self.upload_dir / (token + (suffix if suffix in _VIDEO_SUFFIXES else ".bin"))
        return Upload(token, display, path)

    def write_chunk(self, up: Upload, f: Any, chunk: bytes) -> None:
        up.size += len(chunk)
        if up.size > self.settings.max_upload_bytes:
            raise UploadTooLargeError(f"the upload is over the limit of {_size(self.settings.max_upload_bytes)} "
                                      "(start the server with a larger --max-upload-mb)")
        f.write(chunk)

    def drop_upload(self, up: Upload) -> None:
        _unlink(up.path)
        with self._state_lock:
            self._uploads.pop(up.token, None)

    def finish_upload(self, up: Upload) -> Upload:
        """Check the stored file is a video (refused in words when it is not),
        register it, and start encoding it in the background."""
        from ..video.decode import probe

        if up.size == 0:
            self.drop_upload(up)
            raise InvalidInputError(f"{up.name} is empty (0 bytes); pick a video file")
        try:
            info = probe(up.path, backend="pyav")
            if info.num_frames <= 0 or not info.avg_fps > 0:
                raise VideoDecodeError("no video frames")
        except (VideoDecodeError, OSError, ValueError) as exc:
            self.drop_upload(up)
            why = str(exc).replace(f": '{up.path}'", "").replace(str(up.path), up.name)  # no server paths
            why = re.sub(r"\[Errno -?\d+\] ", "", why)  # FFmpeg's error numbers say nothing to a person
            raise VideoDecodeError(f"{up.name} is not a video this server can read ({why}); "
                                   "upload a video file such as .mp4 or .webm") from None
        up.duration = float(info.duration)
        job = Job(secrets.token_hex(8), "encode", message="waiting for the encoder")
        up.job = job.id
        with self._state_lock:
            self._uploads[up.token] = up
            self._jobs[job.id] = job
            while len(self._uploads) > self.settings.max_uploads:
                _, old = self._uploads.popitem(last=False)
                _unlink(old.path)
                self._jobs.pop(old.job or "", None)
        threading.Thread(target=self._encode_upload, args=(up, job), name=f"tfvtg-encode-{up.token}",
                         daemon=True).start()
        return up

    def _encode_upload(self, up: Upload, job: Job) -> None:
        try:
            up.features = self.encode_video(up.path, job)
            job.state, job.message = "done", f"encoded {job.total} frames"
            job.result = up.to_dict()
        except Exception as exc:  # a background thread must report, not die silently
            job.state = "failed"
            job.message = str(exc) if isinstance(exc, TfvtgError) else f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    def encode_video(self, path: Path, job: Job) -> VideoFeatures:
        """Decode and encode a video batch by batch, counting frames in ``job``."""
        from ..video.decode import iter_frame_batches

        fps = self.settings.upload_fps
        job.message = "loading the encoder"
        encoder = self.text_encoder()
        if not callable(getattr(encoder, "encode_frames", None)):
            if not callable(getattr(encoder, "encode_video", None)):
                raise InvalidTypeError(f"{type(encoder).__name__} cannot encode videos (no encode_frames or "
                                       "encode_video); start the server with --encoder NAME_OR_PATH")
            job.message = "encoding"
            with self.model_lock:
                return encoder.encode_video(path, fps=fps)
        info, indices, batches = iter_frame_batches(path, fps=fps, batch_size=int(getattr(encoder, "batch_size", 16)),
                                                    backend="pyav")
        job.total = int(len(indices))
        job.message = "encoding frames"
        parts = []
        for batch in batches:
            with self.model_lock:
                parts.append(np.asarray(encoder.encode_frames(batch), dtype=np.float16))
            job.done += len(batch)
        tokens = np.concatenate(parts, axis=0)
        return VideoFeatures(tokens, duration=info.duration, fps=fps, source=str(path),
                             encoder=getattr(encoder, "space", None))

    def job(self, job_id: str) -> dict[str, Any]:
        check_token(job_id)
        with self._state_lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownUploadError(f"no job {job_id!r} on this server")
        return job.to_dict()

    def upload_search(self, token: str, query: str, top_k: int = 5) -> dict[str, Any]:
        """The moments of one uploaded video for ``query``, as library hits."""
        query = self._check_query(query)
        top_k = self._check_top_k(top_k)
        up = self.upload(token)
        started = time.perf_counter()
        features = self.features("upload", token)
        result = self._ground(features, query)
        assert result.curve is not None
        rows = []
        for rank, m in enumerate(result.moments):
            if not m.end > m.start:
                continue
            rows.append({"rank": rank, "video": up.token, "name": up.name, "start": m.start, "end": m.end,
                         "score": moment_score(result.curve, features, m.start, m.end), "confidence": _finite(m.score),
                         "duration": features.duration, "has_source": True, "media": f"/api/uploads/{up.token}"})
        rows = rows[:top_k]
        return {"query": query, "top_k": top_k, "hits": rows, "note": None if rows else
                "no moment stands out for this sentence in this video", "candidates": 1,
                "decomposition": _decomposition_dict(result.decomposition),
                "search_ms": round((time.perf_counter() - started) * 1000, 2)}


def _media_url(video_id: str) -> str:
    from urllib.parse import quote

    return "/api/videos/" + quote(video_id, safe="")


def _decomposition_dict(dec: Decomposition | None) -> dict[str, Any] | None:
    if dec is None:
        return None
    return {"relationship": dec.relationship, "sub_events": [list(ev) for ev in dec.sub_events],
            "fallback": bool(dec.fallback)}


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def error_status(exc: BaseException) -> int:
    """The HTTP status of an error the page will show in words."""
    from .media import RangeNotSatisfiable
    from .safety import RefusedRequestError

    table: list[tuple[type[BaseException], int]] = [
        (RefusedRequestError, 400), (UploadTooLargeError, 413), (RangeNotSatisfiable, 416),
        (UnknownVideoError, 404), (UnknownUploadError, 404), (MissingFileError, 404), (NotReadyError, 409),
        (VideoDecodeError, 422), (InvalidInputError, 400), (InvalidTypeError, 400), (LibraryError, 409)]
    for cls, status in table:
        if isinstance(exc, cls):
            return status
    return 500
