"""Per-frame visual features of one video (the input of the scoring core)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoFeatures"]


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


class VideoFeatures:
    """Frame features of one video, validated and L2-normalised once.

    Args:
        array: (T, Q, D) per-frame query-token features (BLIP-2's Q-Former
            gives Q=32, D=256), or (T, D) for one vector per frame. A numpy
            array of any float dtype, or a torch tensor (kept on its device,
            so similarity runs there when it is a GPU).
        duration: video length in seconds covered by the T frames.
        fps: sampling rate of the features; defaults to ``T / duration``.

    Building one is a single pass over the array: validation, float32
    conversion and normalisation of every token happen here, not per query.
    """

    __slots__ = ("tokens", "duration", "fps", "source")

    def __init__(self, array: Any, duration: float, fps: float | None = None, *, source: str | None = None):
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise ValueError(f"duration must be a number of seconds, got {duration!r}") from None
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"duration must be a positive, finite number of seconds, got {duration!r}")
        if _is_torch_tensor(array):
            tokens = self._normalise_torch(array)
        else:
            tokens = self._normalise_numpy(array)
        t = int(tokens.shape[0])
        self.tokens = tokens
        self.duration = duration
        self.fps = float(fps) if fps is not None else t / duration
        self.source = source

    @staticmethod
    def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(shape) == 2:
            shape = (shape[0], 1, shape[1])
        if len(shape) != 3:
            raise ValueError(
                f"features must have shape (T, Q, D) or (T, D), got an array of rank {len(shape)} {tuple(shape)}"
            )
        t, q, d = shape
        if t < 2:
            raise ValueError(f"features need at least 2 frames to ground anything, got T={t}")
        if q < 1 or d < 1:
            raise ValueError(f"features have an empty token or feature axis: shape {tuple(shape)}")
        return t, q, d

    @classmethod
    def _normalise_numpy(cls, array: Any) -> np.ndarray:
        arr = np.asarray(array)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"features must be numeric, got dtype {arr.dtype}")
        t, q, d = cls._check_shape(arr.shape)
        tokens = np.ascontiguousarray(arr.reshape(t, q, d), dtype=np.float32)
        if not np.isfinite(tokens).all():
            bad = int(np.argwhere(~np.isfinite(tokens).all(axis=(1, 2)))[0, 0])
            raise ValueError(f"features contain NaN or inf (first at frame {bad}); re-extract that video")
        # float32 L2 normalisation; a zero token stays zero (as F.normalize's eps does).
        norms = np.sqrt(np.einsum("tqd,tqd->tq", tokens, tokens))[..., None]
        np.maximum(norms, np.float32(1e-12), out=norms)
        tokens /= norms
        return tokens

    @classmethod
    def _normalise_torch(cls, tensor: Any) -> Any:
        import torch

        t, q, d = cls._check_shape(tuple(tensor.shape))
        tokens = tensor.detach().reshape(t, q, d).to(torch.float32)
        if not bool(torch.isfinite(tokens).all()):
            raise ValueError("features contain NaN or inf; re-extract that video")
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
        """Convert a frame position (0..T) to seconds."""
        return float(frame) * self.duration / self.num_frames

    def __len__(self) -> int:
        return self.num_frames

    # -- files --------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write TFVTG's layout: a (T, Q, D) float16 ``.npy`` (the normalised
        tokens; cosine scores are unchanged) plus a ``.json`` sidecar with
        duration and fps. Both writes are atomic."""
        from .io import save_npy, write_json

        path = Path(path)
        if path.suffix != ".npy":
            path = path.with_suffix(".npy")
        tokens = self.tokens if not self.on_torch else self.tokens.detach().cpu().numpy()
        write_json(path.with_suffix(".json"), {"duration": self.duration, "fps": self.fps, "source": self.source})
        return save_npy(path, np.asarray(tokens, dtype=np.float16))

    @classmethod
    def load(cls, path: str | os.PathLike[str], duration: float | None = None) -> "VideoFeatures":
        """Read a ``.npy`` feature file (TFVTG's released files load as they are).

        Args:
            path: the ``.npy`` file.
            duration: video length in seconds. Default: the sidecar ``.json``
                written by :meth:`save` or the extractor; without one, the
                features are assumed to be sampled at 3 fps (duration = T / 3).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"feature file not found: {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read features from {path}: {exc}") from exc
        meta: dict[str, Any] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            try:
                meta = json.loads(sidecar.read_text())
            except (ValueError, OSError):
                meta = {}
        fps = meta.get("fps")
        if duration is None:
            duration = meta.get("duration")
        if duration is None:
            fps = 3.0
            duration = array.shape[0] / fps if array.ndim else 0.0
        return cls(array, duration=duration, fps=fps, source=meta.get("source") or str(path))

    def __repr__(self) -> str:
        t, q, d = self.shape
        where = "" if not self.on_torch else f", device={self.tokens.device}"
        return f"VideoFeatures(T={t}, Q={q}, D={d}, duration={self.duration:.2f}s, fps={self.fps:.3g}{where})"
