"""Stage 0: decoding the frames a grounding model looks at.

The sampling rule is TFVTG's feature extraction: a video of N decoded frames
at an average rate of r frames per second lasts ``N / r`` seconds and is
sampled at ``n = round(N / r * fps)`` frame indices spread evenly over
``0 .. N - 1`` (``linspace``, rounded). decord decodes where it is installed
(it seeks straight to the sampled frames); PyAV decodes everywhere else
(decord has no wheels for ARM or macOS) and gives the same frames.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tfvtg._extras import require
from tfvtg.errors import InvalidInputError, MissingFileError, VideoDecodeError

__all__ = ["VIDEO_SUFFIXES", "sample_frame_indices", "read_frames", "iter_frame_batches", "probe", "VideoInfo",
           "DecodedVideo", "VideoDecodeError"]

Backend = Literal["auto", "decord", "pyav"]

#: file suffixes treated as videos when a folder is expanded (lower case)
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                                   ".ts", ".3gp")




@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video.

    Attributes:
        path: the file.
        num_frames: N, decoded frames.
        avg_fps: r, average frame rate (frames per second).
        backend: "decord" or "pyav".
    """

    path: str
    num_frames: int
    avg_fps: float
    backend: str

    @property
    def duration(self) -> float:
        """N / r, in seconds (the reference's definition)."""
        return self.num_frames / self.avg_fps


@dataclass(frozen=True)
class DecodedVideo:
    """Sampled frames of a video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        indices: (T,) int, the decoded-frame index of each sample.
        timestamps: (T,) float, seconds of each sample (index / avg_fps).
        info: the video's :class:`VideoInfo`.
    """

    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    info: VideoInfo

    @property
    def duration(self) -> float:
        return self.info.duration


def sample_frame_indices(num_frames: int, avg_fps: float, fps: float = 3.0) -> np.ndarray:
    """Indices of the frames to sample (TFVTG's rule).

    Args:
        num_frames: N, frames in the video.
        avg_fps: r, the video's average frame rate.
        fps: samples per second wanted.

    Returns:
        (n,) int64 indices into 0..N-1, n = round(N / r * fps) (at least 1
        for a non-empty video, so a clip shorter than one sample interval
        still yields a frame).
    """
    if num_frames <= 0:
        return np.zeros(0, np.int64)
    if not avg_fps or avg_fps <= 0 or not np.isfinite(avg_fps):
        raise InvalidInputError(f"the video reports no usable frame rate ({avg_fps!r})")
    if fps <= 0:
        raise InvalidInputError(f"fps must be positive, got {fps!r}")
    n = max(1, round(num_frames / avg_fps * fps))
    return np.linspace(0, num_frames - 1, num=n).round().astype(np.int64)


def _check_file(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"video not found: {p}")
    if not p.is_file():
        raise VideoDecodeError(f"not a video file: {p}")
    if p.stat().st_size == 0:
        raise VideoDecodeError(f"video file is empty: {p}")
    return str(p)


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native decoders (decord's FFmpeg) print straight to file
    descriptor 2, e.g. "moov atom not found" for a broken file: the caller
    gets a VideoDecodeError with the reason instead."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebooks): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_decord(path: str):
    import decord

    try:
        with _quiet_native_stderr():
            reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own DECORDError
        raise VideoDecodeError(f"decord cannot open {path}: {exc}") from exc
    return reader


def _pyav_info(path: str) -> VideoInfo:
    av = require("av")

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"no video stream in {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            num = stream.frames
            if not num:  # the container does not say: count by demuxing
                num = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoDecodeError:
        raise
    except Exception as exc:
        raise VideoDecodeError(f"PyAV cannot open {path}: {exc}") from exc
    return VideoInfo(path, int(num), float(rate) if rate else 0.0, "pyav")


def probe(path: str | os.PathLike[str], backend: Backend = "auto") -> VideoInfo:
    """Frame count and average rate of a video, from decord or PyAV."""
    path = _check_file(path)
    if backend not in ("auto", "decord", "pyav"):
        raise InvalidInputError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    if backend == "decord" or (backend == "auto" and _has_decord()):
        try:
            reader = _open_decord(path)
            return VideoInfo(path, len(reader), float(reader.get_avg_fps()), "decord")
        except VideoDecodeError:
            if backend == "decord":
                raise
    return _pyav_info(path)


def iter_frame_batches(path: str | os.PathLike[str], fps: float = 3.0, batch_size: int = 64,
                       backend: Backend = "auto") -> tuple[VideoInfo, np.ndarray, Iterator[np.ndarray]]:
    """Stream the sampled frames in batches, so long videos never sit in
    memory whole.

    Returns:
        (info, indices, batches): the video's info, the (T,) sampled indices,
        and an iterator of (b, H, W, 3) uint8 RGB batches in order.
    """
    info = probe(path, backend)
    if info.num_frames == 0:
        raise VideoDecodeError(f"video has no frames: {info.path}")
    indices = sample_frame_indices(info.num_frames, info.avg_fps, fps)
    if info.backend == "decord":
        batches = _decord_batches(info.path, indices, batch_size)
    else:
        batches = _pyav_batches(info.path, indices, batch_size)
    return info, indices, batches


def _decord_batches(path: str, indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    reader = _open_decord(path)
    for i in range(0, len(indices), batch_size):
        try:
            yield reader.get_batch(indices[i:i + batch_size].tolist()).asnumpy()
        except Exception as exc:
            raise VideoDecodeError(f"decord failed to decode {path}: {exc}") from exc


def _pyav_batches(path: str, indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    av = require("av")

    wanted = np.bincount(indices)  # how often each decoded frame is sampled
    batch: list[np.ndarray] = []
    emitted = 0
    last = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if n >= len(wanted):
                    break
                if wanted[n]:
                    rgb = last = frame.to_ndarray(format="rgb24")
                    for _ in range(wanted[n]):
                        batch.append(rgb)
                        emitted += 1
                    if len(batch) >= batch_size:
                        yield np.stack(batch)
                        batch = []
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"PyAV failed to decode {path}: {exc}") from exc
    if emitted < len(indices):
        # the container announced more frames than it holds: repeat the last
        # decoded frame rather than failing a nearly whole video
        if last is None:
            raise VideoDecodeError(f"no frame could be decoded from {path}")
        batch.extend([last] * (len(indices) - emitted))
    if batch:
        yield np.stack(batch)


def read_frames(path: str | os.PathLike[str], fps: float = 3.0, backend: Backend = "auto") -> DecodedVideo:
    """Decode the sampled frames of a video into memory.

    Args:
        path: video file.
        fps: samples per second (3 for TFVTG's features, 1 for NumPro).
        backend: "auto" (decord when it can open the file, else PyAV),
            "decord" or "pyav".

    Raises:
        FileNotFoundError: no such file.
        VideoDecodeError: empty, corrupt or frameless video.
    """
    info, indices, batches = iter_frame_batches(path, fps=fps, batch_size=256, backend=backend)
    frames = np.concatenate(list(batches), axis=0)
    return DecodedVideo(frames=frames, indices=indices, timestamps=indices / info.avg_fps, info=info)
