"""Where frames come from: a video file (decoded with tfvtg.video) or frames
already in memory, sampled at any rate, whole or within a window.

Sampling is TFVTG's rule (:func:`tfvtg.video.sample_frame_indices`): a
video of N frames at r frames per second sampled at ``fps`` gives
n = round(N / r * fps) frames at indices i_k spread evenly over 0 .. N - 1.
Sample k is the frame shown at second i_k / r, the time its number is
mapped back to. (NumPro's code maps it to k / fps instead; since the
samples span the whole video, the two drift apart by up to one sample
interval towards its end.)
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfvtg.errors import InvalidInputError, InvalidTypeError

__all__ = ["InMemoryVideo", "VideoFile", "Sampled", "as_video"]

_EPS = 1e-6


@dataclass(frozen=True)
class Sampled:
    """Sampled frames.

    Attributes:
        frames: (n, H, W, 3) uint8.
        times: (n,) seconds of each frame in the video (decoded index / rate).
        fps: the sampling rate.
        owned: the caller may paint on ``frames`` in place (nobody else holds them).
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float
    owned: bool


def _check_fps(fps: float) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"fps must be a number, got {fps!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise InvalidInputError(f"fps must be a positive number of frames per second, got {fps!r}")
    return value


def _window(times: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    keep = np.ones(len(times), bool)
    if start is not None:
        keep &= times >= start - _EPS
    if end is not None:
        keep &= times <= end + _EPS
    return np.flatnonzero(keep)


class InMemoryVideo:
    """Frames in memory, recorded at ``fps`` frames per second.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        fps: their rate (frames per second).
        duration: seconds (default T / fps).
    """

    def __init__(self, frames: np.ndarray, fps: float, duration: float | None = None):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise InvalidInputError(f"frames must be (T, H, W, 3) with T >= 1, got shape {frames.shape}")
        self.frames = frames if frames.dtype == np.uint8 else np.clip(frames, 0, 255).astype(np.uint8)
        self.fps = _check_fps(fps)
        self.duration = float(duration) if duration is not None else len(frames) / self.fps
        self.name = "<frames in memory>"

    def __repr__(self) -> str:
        return f"InMemoryVideo({len(self.frames)} frames at {self.fps:g} fps)"

    def sample(self, fps: float, start: float | None = None, end: float | None = None) -> Sampled:
        """Frames sampled at ``fps`` whose times lie in [start, end] seconds."""
        from tfvtg.video import sample_frame_indices

        fps = _check_fps(fps)
        indices = sample_frame_indices(len(self.frames), self.fps, fps)
        times = indices / self.fps
        keep = _window(times, start, end)
        # fancy indexing copies: the caller may paint on them
        return Sampled(self.frames[indices[keep]], times[keep], fps, owned=True)


class VideoFile:
    """A video file, decoded on demand with :mod:`tfvtg.video` (decord or
    PyAV). With ``cache``, whole-video samples are kept (the last two rates)
    so several questions about one video decode it once."""

    def __init__(self, path: str | os.PathLike[str], cache: bool = False, backend: str = "auto"):
        self.path = os.fspath(path)
        self.name = self.path
        self.backend = backend
        self._cache: OrderedDict[float, Sampled] | None = OrderedDict() if cache else None
        self._info: Any = None

    def __repr__(self) -> str:
        return f"VideoFile({self.path!r})"

    @property
    def info(self) -> Any:
        if self._info is None:
            from tfvtg.video import probe

            self._info = probe(self.path, self.backend)  # type: ignore[arg-type]
        return self._info

    @property
    def duration(self) -> float:
        """Seconds (frames / average rate, TFVTG's definition)."""
        return float(self.info.duration)

    def sample(self, fps: float, start: float | None = None, end: float | None = None) -> Sampled:
        """Frames sampled at ``fps`` whose times lie in [start, end] seconds;
        decoding stops after ``end``."""
        from tfvtg.video import iter_frame_batches

        fps = _check_fps(fps)
        if self._cache is not None and fps in self._cache:
            whole = self._cache[fps]
            if start is None and end is None:
                return whole
            keep = _window(whole.times, start, end)
            return Sampled(whole.frames[keep], whole.times[keep], fps, owned=True)
        info, indices, batches = iter_frame_batches(self.path, fps=fps, batch_size=64,
                                                    backend=self.backend)  # type: ignore[arg-type]
        self._info = info
        times = indices / info.avg_fps
        windowed = start is not None or end is not None
        keep = _window(times, start, end) if windowed else np.arange(len(times))
        wanted = set(keep.tolist())
        parts = []
        seen = 0
        last = int(keep[-1]) if len(keep) else -1
        for batch in batches:
            ks = range(seen, seen + len(batch))
            rows = [k - seen for k in ks if k in wanted]
            if rows:
                parts.append(batch[rows] if len(rows) < len(batch) else batch)
            seen += len(batch)
            if seen > last:
                break  # later frames are not wanted: stop decoding
        frames = np.concatenate(parts) if parts else np.zeros((0, 1, 1, 3), np.uint8)
        if self._cache is not None and not windowed:
            shared = Sampled(frames, times[keep], fps, owned=False)  # kept: nobody may paint on it
            self._cache[fps] = shared
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
            return shared
        return Sampled(frames, times[keep], fps, owned=True)


def as_video(video: Any, fps: float | None = None, cache: bool = False) -> InMemoryVideo | VideoFile:
    """A frame source: a path becomes a :class:`VideoFile`; a (T, H, W, 3)
    array is frames already sampled at ``fps``; sources pass through."""
    if isinstance(video, (InMemoryVideo, VideoFile)):
        return video
    if isinstance(video, (str, os.PathLike)):
        return VideoFile(video, cache=cache)
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3:
            raise InvalidInputError(f"frames must be (T, H, W, 3), got shape {video.shape}")
        return InMemoryVideo(video, fps if fps is not None else 1.0)
    raise InvalidTypeError(
        f"video must be a file path, a (T, H, W, 3) array or a numpro.InMemoryVideo, got {type(video).__name__}")
