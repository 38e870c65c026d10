"""Per-frame visual features of one video (the input of the scoring core)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import hooks
from .errors import InvalidInputError

__all__ = ["VideoFeatures"]


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


# torch dtypes accepted besides floating point (numpy's rule: numbers, not bool/complex)
_TORCH_INTEGERS = frozenset({"torch.uint8", "torch.int8", "torch.int16", "torch.int32", "torch.int64"})


def _check_fps(fps: Any, t: int, duration: float) -> float:
    if fps is None:
        return t / duration
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InvalidInputError(f"fps must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"fps must be a positive, finite number of frames per second, got {fps!r}")
    implied = value * duration
    if abs(implied - t) > max(1.0, 0.1 * t):
        raise InvalidInputError(
            f"fps={value:g} contradicts the features: {t} frames over {duration:g} s is {t / duration:.3g} fps; "
            "give the duration the frames cover, or leave fps out")
    return value


class VideoFeatures:
    """Frame features of one video, validated and L2-normalised once.

    Args:
        array: (T, Q, D) per-frame query-token features (BLIP-2's Q-Former
            gives Q=32, D=256), or (T, D) for one vector per frame. A numpy
            array of any float dtype, or a torch tensor (kept on its device,
            so similarity runs there when it is a GPU).
        duration: video length in seconds covered by the T frames.
        fps: sampling rate of the features in frames per second; defaults
            to ``T / duration``. One that contradicts ``T / duration`` (by
            more than a frame and 10%) is refused.
        source: the video file the features came from, if any.
        encoder: the embedding space of the features (an encoder's
            ``space``, e.g. "blip2-coco"); grounding refuses text embeddings
            from another space. None when unknown.

    Building one is a single pass over the array: validation, float32
    conversion and normalisation of every token happen here, not per query.
    """

    __slots__ = ("tokens", "duration", "fps", "source", "encoder")

    def __init__(self, array: Any, duration: float, fps: float | None = None, *, source: str | None = None,
                 encoder: str | None = None):
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise InvalidInputError(f"duration must be a number of seconds, got {duration!r}") from None
        if not math.isfinite(duration) or duration <= 0:
            raise InvalidInputError(f"duration must be a positive, finite number of seconds, got {duration!r}")
        if _is_torch_tensor(array):
            tokens = self._normalise_torch(array)
        else:
            tokens = self._normalise_numpy(array)
        t = int(tokens.shape[0])
        self.tokens = tokens
        self.duration = duration
        self.fps = _check_fps(fps, t, duration)
        self.source = source
        self.encoder = encoder

    @staticmethod
    def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(shape) == 2:
            shape = (shape[0], 1, shape[1])
        if len(shape) != 3:
            raise InvalidInputError(
                f"features must have shape (T, Q, D) or (T, D), got an array of rank {len(shape)} {tuple(shape)}"
            )
        t, q, d = shape
        if t < 2:
            raise InvalidInputError(f"features need at least 2 frames to ground anything, got T={t}")
        if q < 1 or d < 1:
            raise InvalidInputError(f"features have an empty token or feature axis: shape {tuple(shape)}")
        return t, q, d

    @classmethod
    def _normalise_numpy(cls, array: Any) -> np.ndarray:
        arr = np.asarray(array)
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"features must be numeric, got dtype {arr.dtype}")
        t, q, d = cls._check_shape(arr.shape)
        tokens = np.ascontiguousarray(arr.reshape(t, q, d), dtype=np.float32)
        if not np.isfinite(tokens).all():
            bad = int(np.argwhere(~np.isfinite(tokens).all(axis=(1, 2)))[0, 0])
            raise InvalidInputError(f"features contain NaN or inf (first at frame {bad}); re-extract that video")
        # float32 L2 normalisation; a zero token stays zero (as F.normalize's eps does).
        norms = np.sqrt(np.einsum("tqd,tqd->tq", tokens, tokens))[..., None]
        np.maximum(norms, np.float32(1e-12), out=norms)
        tokens /= norms
        return tokens

    @classmethod
    def _normalise_torch(cls, tensor: Any) -> Any:
        import torch

        if tensor.is_complex() or not (tensor.is_floating_point() or str(tensor.dtype) in _TORCH_INTEGERS):
            raise InvalidInputError(f"features must be real numbers, got a torch tensor of dtype {tensor.dtype}")
        t, q, d = cls._check_shape(tuple(tensor.shape))
        tokens = tensor.detach().reshape(t, q, d).to(torch.float32)
        if not bool(torch.isfinite(tokens).all()):
            raise InvalidInputError("features contain NaN or inf; re-extract that video")
        return torch.nn.functional.normalize(tokens, dim=-1).contiguous()

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.tokens.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, Q, D)."""
        return tuple(int(s) for s in self.tokens.shape)  # type: ignore[return-value]

    @property
    def on_torch(self) -> bool:
        """True when the tokens are a torch tensor (possibly on a GPU)."""
        return not isinstance(self.tokens, np.ndarray)

    def frame_to_seconds(self, frame: float) -> float:
        """A frame position (0..T, frames) in seconds (0..duration)."""
        return float(self.frames_to_seconds(np.asarray([frame]))[0])

    def frames_to_seconds(self, frames: np.ndarray) -> np.ndarray:
        """Frame positions (0..T, any shape) in seconds, clamped to
        [0, duration]: frame f is ``f * duration / T`` seconds. The one place
        frames become seconds."""
        seconds = np.asarray(frames, dtype=np.float64) * (self.duration / self.num_frames)
        return np.clip(seconds, 0.0, self.duration)

    def __len__(self) -> int:
        return self.num_frames

    # -- files (implemented in tfvtg.io: core does not touch the disk) --------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write TFVTG's layout: a (T, Q, D) float16 ``.npy`` (the normalised
        tokens; cosine scores are unchanged) plus a ``.json`` sidecar with
        duration, fps, source and encoder. Both writes are atomic. Returns
        the ``.npy`` path."""
        return hooks.call("save_features", self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], duration: float | None = None) -> VideoFeatures:
        """Read a ``.npy`` feature file (TFVTG's released files load as they are).

        Args:
            path: the ``.npy`` file.
            duration: video length in seconds. Default: the sidecar ``.json``
                written by :meth:`save` or the extractor; without one, the
                features are assumed to be sampled at 3 fps (duration = T / 3).
        """
        return hooks.call("load_features", cls, path, duration)

    def __repr__(self) -> str:
        t, q, d = self.shape
        where = "" if not self.on_torch else f", device={self.tokens.device}"
        return f"VideoFeatures(T={t}, Q={q}, D={d}, duration={self.duration:.2f}s, fps={self.fps:.3g}{where})"
