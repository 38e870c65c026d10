"""``Library``: index many videos once, find moments across all of them."""
from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import GroundingConfig
from ..core.decomposition import Decomposition
from ..core.features import VideoFeatures, float16_copy
from ..core.grounder import Grounder
from ..errors import (
    EncoderMismatchError,
    InvalidInputError,
    InvalidTypeError,
    LibraryError,
    MissingFileError,
    UnknownVideoError,
)
from .catalogue import Catalogue, VideoRecord, read_format, write_format
from .index import DEFAULT_SEGMENT_FRAMES, Candidate, CoarseIndex, pool_segments
from .search import CachedTextEncoder, Hit, Hits, decompose_once, hits_from_result
from .store import FeatureStore, Flush, new_key

__all__ = ["Library", "AddReport", "Prepared", "prepare_features"]

#: videos longer than this (in feature frames; 10 minutes at 3 fps) are grounded
#: on a region of this many frames around the coarse index's best segment
DEFAULT_MAX_REGION_FRAMES = 1800
#: feature files flushed (fsync) together before their rows are committed
COMMIT_BATCH = 64

_ID_RE = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")


@dataclass(frozen=True)
class Prepared:
    """A video ready to store: what the encoder made, in the library's layout.

    Attributes:
        tokens: (T, Q, D) float16 normalised tokens (the feature file).
        bounds: (S + 1,) int32 segment bounds in frames.
        coarse: (S * Q, D) float16 coarse vectors.
        duration: seconds; fps: feature frames per second; encoder: space.
    """

    tokens: np.ndarray
    bounds: np.ndarray
    coarse: np.ndarray
    duration: float
    fps: float
    encoder: str | None
    source: str | None = None


def prepare_features(features: VideoFeatures, segment_frames: int) -> Prepared:
    """The stored form of ``features``: float16 normalised tokens and their
    coarse vectors. Every engine (local, Ray) goes through this one function,
    so they store the same bytes for the same encoder output."""
    if not isinstance(features, VideoFeatures):
        raise InvalidTypeError(
            f"features must be a VideoFeatures, got {type(features).__name__}; "
            "wrap an array with VideoFeatures(array, duration=seconds)")
    tokens = features.tokens
    if features.on_torch:
        tokens = tokens.detach().float().cpu().numpy()
    bounds, coarse = pool_segments(tokens, segment_frames)
    return Prepared(float16_copy(tokens), bounds, coarse, float(features.duration),
                    float(features.fps), features.encoder, features.source)


@dataclass
class AddReport:
    """What :meth:`Library.add_many` did.

    Attributes:
        done: ids of the videos added.
        skipped: inputs already in the library (same content identity and fps).
        failed: (input, reason) for each input that could not be added.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        return f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}"


def _content_identity(path: Path) -> str:
    from ..cache import content_identity

    return content_identity(path)


class Library:
    """A searchable library of videos, stored in one directory.

    Args:
        path: the library directory; created (with its parents) if missing.
            An existing non-empty directory that is not a library is refused.
        encoder: the image-text encoder: a registry name (``"blip2-coco"``),
            a model directory, or an object with ``encode_text`` (and
            ``encode_video`` to add video files). Default: the one the
            library was built with, when it was given by name; adding video
            files to a library without one uses the default BLIP-2
            (``load_encoder(None)``: "blip2-coco", or TFVTG_BLIP2_MODEL).
        config: grounding config or preset name for the fine stage (default
            "default").
        decomposer: optional LLM decomposer (see :class:`tfvtg.Grounder`);
            the query is decomposed once per search.
        fps: feature frames per second when adding video files (default: the
            library's, else 3).
        segment_frames: frames per coarse-index segment, fixed when the
            library is created (default 32: about 11 s at 3 fps).
        coarse: the coarse search backend, "flat" (exact, default) or "ivf"
            (faiss inverted file; ``nprobe`` clusters probed).
        durable: flush feature files to disk before committing them (default
            True). Without it a killed process still leaves the library
            consistent; a power cut may lose or damage the last videos.
        max_region_frames: videos longer than this (feature frames) are
            grounded on this many frames around their best coarse segment.
        workers: threads grounding candidates in parallel (default: 2, or
            1 on a one-core machine).

    The directory holds ``library.json`` (format version),
    ``catalogue.sqlite`` (SQLite, WAL: the videos and the coarse index) and
    ``features/`` (one memory-mapped float16 ``.npy`` per video).
    """

    def __init__(self, path: str | os.PathLike[str], encoder: Any = None, *,
                 config: GroundingConfig | str | None = None, decomposer: Any = None, fps: float | None = None,
                 segment_frames: int | None = None, coarse: str = "flat", nprobe: int = 16, durable: bool = True,
                 max_region_frames: int = DEFAULT_MAX_REGION_FRAMES, workers: int | None = None):
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise LibraryError(f"{self.path} is a file, not a library directory; pick a directory path")
        info = read_format(self.path) if self.path.exists() else None
        if info is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise LibraryError(
                    f"{self.path} is not empty and is not a tfvtg library (no library.json); "
                    "give a new or empty directory")
            self.path.mkdir(parents=True, exist_ok=True)
        self._catalogue = Catalogue(self.path)
        if info is None:
            write_format(self.path)
        self._store = FeatureStore(self.path)
        if segment_frames is not None and (not isinstance(segment_frames, int) or segment_frames < 1):
            raise InvalidInputError(f"segment_frames must be a whole number of frames >= 1, got {segment_frames!r}")
        stored_segment = self._catalogue.get_meta("segment_frames")
        if stored_segment is None:
            with self._catalogue.write() as conn:
                self._catalogue.set_meta(conn, "segment_frames", str(segment_frames or DEFAULT_SEGMENT_FRAMES))
                self._catalogue.set_meta(conn, "created", str(time.time()))
            stored_segment = str(segment_frames or DEFAULT_SEGMENT_FRAMES)
        self.segment_frames = int(stored_segment)
        stored_fps = self._catalogue.get_meta("fps")
        self.fps = float(fps if fps is not None else (stored_fps or 3.0))
        if not self.fps > 0:
            raise InvalidInputError(f"fps must be a positive number of frames per second, got {fps!r}")
        self.config = config
        self.decomposer = decomposer
        self.durable = bool(durable)
        if not isinstance(max_region_frames, int) or max_region_frames < 2:
            raise InvalidInputError(f"max_region_frames must be a whole number >= 2, got {max_region_frames!r}")
        self.max_region_frames = max_region_frames
        self.workers = int(workers) if workers else min(2, os.cpu_count() or 1)
        self._index = CoarseIndex(coarse, nprobe)
        self._generation = -1
        self._records: dict[str, VideoRecord] = {}
        self._orphans_checked = False
        self._encoder_name: str | None = None
        self._encoder: Any = None
        if isinstance(encoder, (str, os.PathLike)):
            self._encoder_name = os.fspath(encoder)
            self._encoder = self._load_encoder(self._encoder_name)
        elif encoder is not None:
            if not callable(getattr(encoder, "encode_text", None)):
                raise InvalidTypeError(
                    f"encoder must be a registry name, a model directory or an object with encode_text, "
                    f"got {type(encoder).__name__}")
            self._encoder = encoder
        if self._encoder is not None:
            self._check_space(getattr(self._encoder, "space", None), "the encoder")

    # -- small things ---------------------------------------------------------
    def __repr__(self) -> str:
        return f"Library({str(self.path)!r}, videos={len(self)}, encoder={self.space!r})"

    def __len__(self) -> int:
        return self._catalogue.count()

    def __contains__(self, video_id: object) -> bool:
        return isinstance(video_id, str) and self._catalogue.get(video_id) is not None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the catalogue connection."""
        self._catalogue.close()

    def videos(self) -> list[str]:
        """The ids of every video, sorted."""
        return self._catalogue.ids()

    def info(self, video_id: str) -> VideoRecord:
        """The catalogue row of a video (source, duration, fps, frames, ...)."""
        return self._record(video_id)

    @property
    def space(self) -> str | None:
        """The embedding space of the library's features (None while empty
        and no encoder said)."""
        return self._catalogue.get_meta("space")

    @property
    def encoder_name(self) -> str | None:
        """The registry name or model path the library was built with, if known."""
        return self._catalogue.get_meta("encoder")

    def stats(self) -> dict[str, Any]:
        """What is in the library: videos, hours, frames, encoder, bytes on disk."""
        n, seconds, frames = self._catalogue.totals()
        features = self._store.size_on_disk()
        catalogue = sum(f.stat().st_size for f in self.path.glob("catalogue.sqlite*") if f.is_file())
        coarse = self._catalogue.coarse_bytes()
        return {"path": str(self.path), "videos": n, "hours": seconds / 3600.0, "frames": frames,
                "encoder": self.encoder_name, "space": self.space, "fps": self.fps,
                "segment_frames": self.segment_frames, "feature_bytes": features, "catalogue_bytes": catalogue,
                "coarse_index_bytes": coarse, "bytes": features + catalogue,
                "coarse_ratio": (coarse / features) if features else None}

    def _record(self, video_id: str) -> VideoRecord:
        if not isinstance(video_id, str):
            raise InvalidTypeError(f"a video id is a string, got {type(video_id).__name__}")
        rec = self._catalogue.get(video_id)
        if rec is None:
            raise UnknownVideoError(f"no video {video_id!r} in the library {self.path}; lib.videos() lists the ids")
        return rec

    # -- encoders ---------------------------------------------------------------
    @staticmethod
    def _load_encoder(name: str) -> Any:
        from ..encoders import load_encoder

        return load_encoder(name)

    def _check_space(self, space: str | None, what: str) -> None:
        mine = self.space
        if mine and isinstance(space, str) and space and space != mine:
            raise EncoderMismatchError(
                f"{what} is in embedding space {space!r} but the library {self.path} was built in {mine!r}: "
                "similarities across spaces mean nothing; use the library's encoder "
                f"({self.encoder_name or mine}) or a new library")

    def encoder(self) -> Any:
        """The encoder for queries (and for adding video files): the one given,
        else the one the library was built with (loaded by name)."""
        if self._encoder is None:
            name = self.encoder_name
            if name is None:
                raise LibraryError(
                    f"no encoder is known for the library {self.path} (it was built from features alone): pass one, "
                    "e.g. Library(path, encoder='blip2-coco') or a model directory or an object with encode_text; "
                    "on the command line --encoder NAME_OR_PATH")
            try:
                self._encoder = self._load_encoder(name)
            except InvalidInputError as exc:
                raise LibraryError(
                    f"the library's encoder {name!r} cannot be loaded ({exc}); pass Library(path, encoder=...)") from exc
            self._encoder_name = name
            self._check_space(getattr(self._encoder, "space", None), "the encoder")
        return self._encoder

    def _video_encoder(self) -> Any:
        """The encoder for adding video files: the library's, else (a new
        library given none) the default BLIP-2, as ``tfvtg.ground`` uses."""
        if self._encoder is None and self.encoder_name is None:
            self._encoder = self._load_encoder_default()
            self._check_space(getattr(self._encoder, "space", None), "the default encoder")
        return self.encoder()

    @staticmethod
    def _load_encoder_default() -> Any:
        from ..encoders import load_encoder

        return load_encoder(None)

    # -- adding -------------------------------------------------------------------
    def add_features(self, video_id: str, features: VideoFeatures, source: str | os.PathLike[str] | None = None,
                     *, identity: str | None = None) -> str:
        """Store features already extracted under ``video_id``.

        Idempotent: adding the same id again with the same frame count and
        duration (and identity, when given) does nothing; a different video
        under a taken id is refused. Returns the id.
        """
        self._check_id(video_id)
        prepared = prepare_features(features, self.segment_frames)
        src = os.fspath(source) if source is not None else features.source
        return self._commit([(video_id, prepared, src, identity)], exact_id=True)[0]

    def add_features_many(self, items: Iterable[tuple[str, VideoFeatures] | tuple[str, VideoFeatures, str | None]],
                          ) -> list[str]:
        """Store many (id, features[, source]) at once: files are flushed and
        rows committed in batches of 64 videos (one disk round trip per batch).
        A killed process keeps the batches committed before it."""
        from concurrent.futures import Future, ThreadPoolExecutor

        done: list[str] = []

        def prepare(entry: tuple[str, VideoFeatures, str | None]) -> tuple[str, Prepared, str | None, str | None]:
            video_id, features, source = entry
            return video_id, prepare_features(features, self.segment_frames), source, None

        # a pipeline: the workers convert and pool batch k + 1 (numpy releases the GIL) while
        # this thread writes, flushes and commits batch k
        with ThreadPoolExecutor(max(1, self.workers)) as pool:
            batch: list[Future] = []
            previous: list[Future] = []
            for item in items:
                video_id, features = item[0], item[1]
                source = item[2] if len(item) > 2 else None  # type: ignore[misc]
                self._check_id(video_id)
                entry = (video_id, features, os.fspath(source) if source else features.source)
                batch.append(pool.submit(prepare, entry))
                if len(batch) >= COMMIT_BATCH:
                    if previous:
                        done.extend(self._commit([f.result() for f in previous], exact_id=True))
                    previous, batch = batch, []
            for pending in (previous, batch):
                if pending:
                    done.extend(self._commit([f.result() for f in pending], exact_id=True))
        return done

    def add(self, video: str | os.PathLike[str], video_id: str | None = None) -> str:
        """Decode, encode and store one video file; returns its id.

        Idempotent by content identity (size, modification time, a hash of
        the first and last MiB) and fps: a video already in the library is
        not encoded again, and its existing id is returned. The default id is
        the file's stem, with ``-<8 hex digits>`` of its identity appended
        when another video holds the stem.
        """
        path = Path(video)
        identity = _content_identity(path)
        existing = self._catalogue.by_identity(identity, self.fps)
        if existing is not None:
            return existing.id
        encoder = self._video_encoder()
        if not callable(getattr(encoder, "encode_video", None)):
            raise InvalidTypeError(
                f"{type(encoder).__name__} cannot encode videos (no encode_video method); add extracted features "
                "with lib.add_features(id, features) or pass an encoder such as tfvtg.Blip2Encoder")
        features = encoder.encode_video(path, fps=self.fps)
        prepared = prepare_features(features, self.segment_frames)
        return self._commit([(video_id or path.stem, prepared, str(path.resolve()), identity)],
                            exact_id=video_id is not None)[0]

    def add_feature_file(self, path: str | os.PathLike[str], video_id: str | None = None) -> str:
        """Store a feature file written by ``tfvtg extract`` or
        :meth:`VideoFeatures.save` (TFVTG's ``.npy`` layout; its sidecar gives
        the duration and source). Idempotent by the file's content identity."""
        path = Path(path)
        identity = _content_identity(path)
        existing = self._catalogue.by_identity(identity, self._fps_of_file(path))
        if existing is not None:
            return existing.id
        features = VideoFeatures.load(path)
        if features.encoder is None and self._encoder is not None:
            features.encoder = self._encoder_space()
        source = features.source if features.source and features.source != str(path) else None
        prepared = prepare_features(features, self.segment_frames)
        return self._commit([(video_id or path.stem, prepared, source, identity)], exact_id=video_id is not None)[0]

    @staticmethod
    def _fps_of_file(path: Path) -> float:
        from ..io import read_sidecar

        fps = read_sidecar(path).get("fps")
        return float(fps) if isinstance(fps, (int, float)) and fps > 0 else 3.0

    def add_many(self, videos: Iterable[str | os.PathLike[str]], engine: str = "local", progress: bool = True, *,
                 address: str | None = None, num_actors: int | None = None) -> AddReport:
        """Add many video files; a file that fails is reported and skipped.

        Args:
            videos: video files.
            engine: "local" (decode and encode here, one at a time) or "ray"
                (on a Ray cluster: one encoder per actor, one actor per GPU,
                or per CPU without GPUs; this process alone writes the
                catalogue).
            progress: show a progress bar.
            address: the Ray cluster (default: RAY_ADDRESS, else a Ray
                already initialised in this process, else a local one).
            num_actors: encoder actors on Ray (default: GPUs, else CPUs).

        Returns:
            An :class:`AddReport` (done, skipped, failed).
        """
        from .engines import encode_for_library, make_engine

        report = AddReport()
        todo: list[tuple[str, str]] = []  # (path, identity)
        seen: set[str] = set()
        for video in videos:
            path = Path(video)
            try:
                identity = _content_identity(path)
            except (OSError, ValueError) as exc:
                report.failed.append((str(video), f"{type(exc).__name__}: {exc}"))
                continue
            if identity in seen or self._catalogue.by_identity(identity, self.fps) is not None:
                report.skipped.append(str(video))
                continue
            seen.add(identity)
            todo.append((str(video), identity))
        if not todo:
            return report
        encoder = self._video_encoder()
        identity_of = dict(todo)
        runner = make_engine(engine, address=address, num_actors=num_actors)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="video", desc="index")
        try:
            for path, outcome in runner.run(encoder, [p for p, _ in todo], encode_for_library,
                                            fps=self.fps, segment_frames=self.segment_frames):
                if isinstance(outcome, Prepared):
                    try:
                        vid = self._commit([(Path(path).stem, outcome, str(Path(path).resolve()),
                                             identity_of[path])], exact_id=False)[0]
                        report.done.append(vid)
                    except (InvalidInputError, LibraryError) as exc:
                        report.failed.append((path, f"{type(exc).__name__}: {exc}"))
                else:
                    report.failed.append((path, str(outcome)))
                    if bar is not None:
                        bar.write(f"failed: {path}: {outcome}", file=sys.stderr)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            runner.close()
        return report

    def _check_id(self, video_id: Any) -> None:
        if not isinstance(video_id, str) or not _ID_RE.match(video_id) or video_id.strip() != video_id:
            raise InvalidInputError(
                f"a video id must be 1-255 characters without slashes, control characters or surrounding spaces, "
                f"got {video_id!r}")

    def _check_prepared(self, prepared: Prepared) -> None:
        self._check_space(prepared.encoder, "the features")
        tokens = self._catalogue.get_meta("tokens")
        dim = self._catalogue.get_meta("dim")
        t, q, d = prepared.tokens.shape
        if tokens is not None and (int(tokens), int(dim or 0)) != (q, d):
            raise InvalidInputError(
                f"features of shape (T, {q}, {d}) do not match the library's (T, {tokens}, {dim}): "
                "use the encoder the library was built with")

    def _free_id(self, stem: str, identity: str | None) -> str:
        base = stem.strip() or "video"
        base = re.sub(r"[\x00-\x1f/\\]", "_", base)[:200]
        if self._catalogue.get(base) is None:
            return base
        tag = (identity or new_key())[:8]
        candidate = f"{base}-{tag}"
        n = 2
        while self._catalogue.get(candidate) is not None:
            candidate = f"{base}-{tag}-{n}"
            n += 1
        return candidate

    def _same_video(self, rec: VideoRecord, prepared: Prepared, identity: str | None) -> bool:
        if identity is not None and rec.identity is not None:
            return identity == rec.identity
        return rec.frames == prepared.tokens.shape[0] and abs(rec.duration - prepared.duration) < 1e-6

    def _commit(self, items: Sequence[tuple[str, Prepared, str | None, str | None]], exact_id: bool) -> list[str]:
        """Write the feature files, flush them, then insert their rows in one
        transaction (under SQLite's write lock, so orphan cleanup by another
        writer cannot take a file that is about to be committed)."""
        for _, prepared, _, _ in items:
            self._check_prepared(prepared)
        ids: list[str] = []
        written: list[str] = []
        try:
            with self._catalogue.write() as conn:
                if not self._orphans_checked:
                    self._store.remove_orphans(self._catalogue.files())
                    self._orphans_checked = True
                # each file's fsync starts as soon as it is written; all are
                # awaited (leaving the with) before any row is committed
                with self._store.flushing() as flush:
                    rows = self._write_files(items, exact_id, ids, written, flush)
                for record, prepared in rows:
                    self._catalogue.insert(conn, record, prepared.bounds.tobytes(), prepared.coarse.tobytes())
                if rows:
                    first = rows[0][0]
                    meta = self._catalogue
                    if meta.get_meta("space") is None and first.encoder:
                        meta.set_meta(conn, "space", first.encoder)
                    if meta.get_meta("tokens") is None:
                        meta.set_meta(conn, "tokens", str(first.tokens))
                        meta.set_meta(conn, "dim", str(first.dim))
                    if meta.get_meta("fps") is None:
                        meta.set_meta(conn, "fps", repr(self.fps))
                    if meta.get_meta("encoder") is None and self._loadable_name():
                        meta.set_meta(conn, "encoder", self._loadable_name())
        except BaseException:
            for rel in written:  # never committed: do not leave them for the orphan sweep
                self._store.delete(rel)
            raise
        return ids

    def _write_files(self, items: Sequence[tuple[str, Prepared, str | None, str | None]], exact_id: bool,
                     ids: list[str], written: list[str], flush: Flush) -> list[tuple[VideoRecord, Prepared]]:
        """Write the feature files of the items not yet in the library (under
        the catalogue's write lock); append every item's id to ``ids`` and
        each new file to ``written``. Returns the rows to insert."""
        rows: list[tuple[VideoRecord, Prepared]] = []
        taken: set[str] = set()
        for video_id, prepared, source, identity in items:
            existing = self._catalogue.get(video_id)
            if exact_id and existing is not None:
                if self._same_video(existing, prepared, identity):
                    ids.append(video_id)
                    continue
                raise LibraryError(
                    f"a different video already has the id {video_id!r} in the library; remove it first "
                    "(lib.remove(id)) or choose another id")
            if not exact_id:
                if identity is not None:
                    same = self._catalogue.by_identity(identity, prepared.fps)
                    if same is not None:
                        ids.append(same.id)
                        continue
                video_id = self._free_id(video_id, identity)
            if video_id in taken:
                raise LibraryError(f"the id {video_id!r} is given twice in one batch")
            taken.add(video_id)
            rel, fd = self._store.write(new_key(), prepared.tokens, sync=self.durable)
            written.append(rel)
            flush.add(fd)
            t, q, d = prepared.tokens.shape
            rows.append((VideoRecord(video_id, source, identity, prepared.duration, prepared.fps,
                                     prepared.encoder or self._encoder_space(), t, q, d, rel, time.time()),
                         prepared))
            ids.append(video_id)
        return rows

    def _loadable_name(self) -> str | None:
        """The name ``load_encoder`` can rebuild the encoder from: the one the
        caller gave, a registry name, or a BLIP-2 checkpoint; else None."""
        if self._encoder_name:
            return self._encoder_name
        from ..encoders import encoder_entry
        from ..encoders.blip2 import Blip2Encoder

        if isinstance(self._encoder, Blip2Encoder):
            return self._encoder.model_name
        name = getattr(self._encoder, "name", None)
        return name if isinstance(name, str) and encoder_entry(name) is not None else None

    def _encoder_space(self) -> str | None:
        space = getattr(self._encoder, "space", None) if self._encoder is not None else None
        return space if isinstance(space, str) else self.space

    # -- removing -------------------------------------------------------------------
    def remove(self, video_id: str) -> None:
        """Remove a video (its row, coarse vectors and feature file)."""
        self._record(video_id)
        with self._catalogue.write() as conn:
            rec = self._catalogue.get(video_id)
            if rec is None:
                raise UnknownVideoError(f"no video {video_id!r} in the library {self.path}")
            self._catalogue.delete(conn, video_id)
        # after the commit: a reader that still maps the file keeps its pages (POSIX)
        self._store.delete(rec.file)

    # -- reading ----------------------------------------------------------------------
    def features(self, video_id: str) -> VideoFeatures:
        """The video's :class:`VideoFeatures`, read from its memory-mapped file."""
        rec = self._record(video_id)
        tokens = self._open_tokens(rec)
        # stored unit-length float16 (prepare_features): kept memory-mapped, no float32 copy
        return VideoFeatures(tokens, duration=rec.duration, fps=rec.fps, source=rec.source, encoder=rec.encoder,
                             normalized=True)

    def _open_tokens(self, rec: VideoRecord) -> np.ndarray:
        try:
            tokens = self._store.open(rec.file)
        except FileNotFoundError:
            raise LibraryError(f"the feature file of {rec.id!r} is missing ({self.path / rec.file}); "
                               f"remove the video (lib.remove({rec.id!r})) and add it again") from None
        if tokens.shape != (rec.frames, rec.tokens, rec.dim):
            raise LibraryError(f"the feature file of {rec.id!r} has shape {tokens.shape}, the catalogue says "
                               f"{(rec.frames, rec.tokens, rec.dim)}; remove the video and add it again")
        return tokens

    def _refresh(self) -> None:
        """Bring the in-memory coarse index up to the catalogue's generation."""
        generation = self._catalogue.generation()
        if generation == self._generation:
            return
        live = set(self._catalogue.coarse_seqs())
        if set(self._index.rowids) - live:  # something was removed: rebuild
            self._index.clear()
        last = self._index.rowids[-1] if self._index.rowids else 0
        for seq, video_id, bounds, vectors, tokens in self._catalogue.coarse_rows(last):
            b = np.frombuffer(bounds, np.int32)
            v = np.frombuffer(vectors, np.float16)
            dim = v.size // ((len(b) - 1) * tokens)
            self._index.append(seq, video_id, b, v.reshape(-1, dim), tokens)
        self._records = {r.id: r for r in self._catalogue.records()}
        self._generation = generation

    # -- searching ----------------------------------------------------------------------
    def search(self, query: str, top_k: int = 10, *, candidates: int | None = None, per_video: int = 3,
               decomposition: Decomposition | Mapping[str, Any] | None = None, exhaustive: bool = False) -> Hits:
        """The moments across the library that ``query`` describes, best first.

        Two stages: the coarse index picks ``candidates`` videos (default
        ``max(2 * top_k, 20)``), then TFVTG grounds the query in each
        (``Grounder`` with the library's config and decomposition) and the
        moments are merged by :attr:`Hit.score` (mean query-frame cosine
        similarity over the moment, comparable across videos).

        Args:
            query: the sentence.
            top_k: hits to return.
            candidates: videos the fine stage grounds.
            per_video: at most this many hits from one video.
            decomposition: a :class:`tfvtg.Decomposition` or TFVTG-format dict.
            exhaustive: ground every video (the reference the coarse stage is
                measured against).

        Returns:
            :class:`Hits` (a list of :class:`Hit`); empty, with ``.note``
            saying why, when the library is empty.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"the query must be a non-empty sentence, got {query!r}")
        for name, value in (("top_k", top_k), ("per_video", per_video)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a whole number >= 1, got {value!r}")
        if candidates is not None and (isinstance(candidates, bool) or not isinstance(candidates, int)
                                       or candidates < 1):
            raise InvalidInputError(f"candidates must be a whole number >= 1, got {candidates!r}")
        self._refresh()
        if not self._records:
            empty = Hits()
            empty.note = f"the library {self.path} is empty: add videos with lib.add(path) or `tfvtg index`"
            return empty
        text = CachedTextEncoder(self.encoder())
        grounder = Grounder(text, self.config, decomposer=self.decomposer)
        if decomposition is None:
            decomposition = decompose_once(grounder, query)
        n = len(self._records) if exhaustive else (candidates or max(2 * top_k, 20))
        t0 = time.perf_counter()
        unit = text.unit(query)
        t1 = time.perf_counter()
        picked = self._index.search(unit, n)
        t2 = time.perf_counter()
        hits: list[Hit] = []
        grounded = 0

        def ground(cand: Candidate) -> list[Hit] | None:
            rec = self._records.get(cand.video)
            if rec is None:
                return None
            try:
                return self._ground_candidate(grounder, rec, cand, query, decomposition, per_video)
            except LibraryError:
                return None  # removed since the index was read: its file is gone

        # the first candidate alone (it embeds every text the grounder needs), then the rest on
        # `workers` threads: reading and converting each video's tokens releases the GIL
        results = [ground(c) for c in picked[:1]]
        if self.workers > 1 and len(picked) > 2:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.workers) as pool:
                results += list(pool.map(ground, picked[1:]))
        else:
            results += [ground(c) for c in picked[1:]]
        for found in results:
            if found is not None:
                grounded += 1
                hits.extend(found)
        hits.sort(key=lambda h: (-h.score, h.video, h.start))
        out = Hits(hits[:top_k])
        out.candidates = grounded
        out.timings = {"text_ms": (t1 - t0) * 1e3, "coarse_ms": (t2 - t1) * 1e3,
                       "fine_ms": (time.perf_counter() - t2) * 1e3}
        return out

    def _ground_candidate(self, grounder: Grounder, rec: VideoRecord, cand: Candidate, query: str,
                          decomposition: Decomposition | Mapping[str, Any] | None, per_video: int) -> list[Hit]:
        tokens = self._open_tokens(rec)
        first, last = 0, rec.frames
        if rec.frames > self.max_region_frames:
            centre = (cand.first_frame + cand.last_frame) // 2
            first = min(max(0, centre - self.max_region_frames // 2), rec.frames - self.max_region_frames)
            last = first + self.max_region_frames
        seconds_per_frame = rec.duration / rec.frames
        features = VideoFeatures(tokens[first:last], duration=(last - first) * seconds_per_frame,
                                 source=rec.source, encoder=rec.encoder, normalized=True)
        result = grounder.ground(features, query, decomposition)
        return hits_from_result(rec.id, result, features, rec.source, per_video,
                                offset_seconds=first * seconds_per_frame)

    # -- export ---------------------------------------------------------------------------
    def cut(self, hit: Hit | str, out: str | os.PathLike[str], pad: float = 1.0, *, start: float | None = None,
            end: float | None = None, mode: str = "auto") -> Any:
        """Write a hit's moment (``pad`` seconds either side, clipped to the
        video) as an MP4. ``hit`` may be a :class:`Hit` or a video id with
        ``start`` and ``end`` in seconds. Returns a :class:`tfvtg.library.export.Clip`
        saying how it was written ("stream-copy" or "re-encode")."""
        from .export import cut_clip

        if isinstance(hit, Hit):
            video_id, s, e = hit.video, hit.start, hit.end
        elif isinstance(hit, str):
            if start is None or end is None:
                raise InvalidInputError("cut(video_id, ...) needs start= and end= in seconds")
            video_id, s, e = hit, float(start), float(end)
        else:
            raise InvalidTypeError(f"cut takes a Hit or a video id, got {type(hit).__name__}")
        rec = self._record(video_id)
        if not rec.source:
            raise LibraryError(f"the library has no source file for {video_id!r} (it was added as features); "
                               "cut the clip from the video file with tfvtg.library.export.cut_clip")
        if not Path(rec.source).is_file():
            raise MissingFileError(f"the source of {video_id!r} is gone: {rec.source}")
        return cut_clip(rec.source, s, e, out, pad=pad, duration=rec.duration, mode=mode)

    def iter_records(self) -> Iterator[VideoRecord]:
        """Every catalogue row, sorted by id."""
        yield from self._catalogue.records()

