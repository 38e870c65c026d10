"""Per-frame visual features of one video (the input of the scoring core)."""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from . import hooks
from ._intrinsics import narrow, widen
from .errors import InvalidInputError, InvalidTypeError

if TYPE_CHECKING:  # pragma: no cover - paths only name types here; tfvtg.io reads and writes
    import os
    from pathlib import Path

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


# Tokens whose norm is checked when features arrive normalised, and how far
# from 1 a norm may be: float16 rounding of a unit vector moves its norm by
# up to about 5e-4 (and such tokens may arrive widened to float32).
_NORM_SAMPLE = 256
_NORM_TOLERANCE = 2e-3
# values per chunk of the torch finiteness check (its boolean temporary)
_CHECK_CHUNK_VALUES = 1 << 22
# the exponent bits of IEEE floats by width: all ones means NaN or inf
_EXPONENT_BITS = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF0000000000000)}


def first_nonfinite_frame(tokens: np.ndarray) -> int:
    """The first frame holding a NaN or inf, or -1 when all values are finite.

    Args:
        tokens: (T, ...) float16/32/64 array, C-contiguous, native byte
            order; a memory map is read in place (one pass, no copy, no
            temporary: the test is on the exponent bits).
    """
    uint, mask = _EXPONENT_BITS[tokens.dtype.itemsize]
    bits = tokens.reshape(tokens.shape[0], -1).view(uint)
    return int(_first_frame_with_full_exponent(bits, uint(mask)))


@njit(cache=True)
def _first_frame_with_full_exponent(bits, mask):  # pragma: no cover - compiled
    t, m = bits.shape
    for i in range(t):
        hit = False
        for k in range(m):  # no early exit inside a frame: the loop vectorises
            hit |= (bits[i, k] & mask) == mask
        if hit:
            return i
    return -1


@njit(cache=True, nogil=True)
def _narrow_all(values, out):  # pragma: no cover - compiled
    for i in range(values.shape[0]):
        out[i] = narrow(values[i])


def float16_copy(array: np.ndarray) -> np.ndarray:
    """``array`` as float16 (the stored form of tokens), the same values as
    numpy's ``astype(np.float16)``: round to nearest even, overflow to inf.

    float32 input goes through one compiled pass (F16C's vector
    conversion); numpy's float16 cast is about ten times slower (2.5 ms for a
    minute of (32, 256) tokens here, most of an add to the library). Other
    dtypes use numpy. float16 input comes back as it is, not copied.
    """
    arr = np.asarray(array)
    if arr.dtype == np.float16:
        return arr
    if arr.dtype != np.float32 or not arr.dtype.isnative:
        return arr.astype(np.float16)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty(flat.shape[0], np.uint16)
    _narrow_all(flat, out)
    return out.view(np.float16).reshape(arr.shape)


@njit(cache=True)
def seconds_of_frames(values, duration, num_frames):  # pragma: no cover - compiled
    """Frame positions to seconds, in place on a 1-D float64 array: frame f
    is ``f * (duration / T)`` seconds, clamped to [0, duration]. The one rule
    (VideoFeatures.frames_to_seconds and the compiled proposal rows use it)."""
    per_frame = duration / num_frames
    for i in range(values.shape[0]):
        v = values[i] * per_frame
        if v < 0.0:  # NaN stays NaN, as with np.maximum / np.minimum
            v = 0.0
        elif v > duration:
            v = duration
        values[i] = v
    return values


@functools.lru_cache(maxsize=64)
def _sample_positions(t: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    # (frame, token) pairs spread evenly over the whole video (cached: the
    # same shapes come back, e.g. every clip of a dataset at one length)
    flat = np.unique(np.linspace(0, t * q - 1, min(_NORM_SAMPLE, t * q)).round().astype(np.int64))
    frames, slots = flat // q, flat % q
    frames.flags.writeable = False
    slots.flags.writeable = False
    return frames, slots


def _norm_outlier(norms: np.ndarray) -> int:
    # index of the sampled norm farthest from 1 beyond tolerance (0 is allowed:
    # normalisation keeps a zero token zero), or -1
    off = np.where(norms == 0, 0.0, np.abs(norms - 1.0))
    worst = int(np.argmax(off))
    return worst if off[worst] > _NORM_TOLERANCE else -1


# reassociated sums: one running float64 sum per token is bound by the
# adder's latency (4x slower than the lanes); the norm only needs 1e-3
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sampled_norms(tokens, frames, slots):  # pragma: no cover - compiled
    # tokens (T, Q, D) uint16 (float16 bits), float32 or float64; the norms
    # (float64 sums of the values widened to float32) of the sampled tokens
    d = tokens.shape[2]
    out = np.empty(frames.shape[0], np.float64)
    for n in range(frames.shape[0]):
        i = frames[n]
        j = slots[n]
        sq = 0.0
        for k in range(d):
            v = np.float64(widen(tokens[i, j, k]))
            sq += v * v
        out[n] = np.sqrt(sq)
    return out


def _worst_sampled_norm(tokens: np.ndarray) -> tuple[int, int, float]:
    # (frame, token, norm) of a sampled token that is not unit-length, or
    # norm -1.0 when the sample passes; reads only the sampled tokens
    frames, slots = _sample_positions(tokens.shape[0], tokens.shape[1])
    if tokens.dtype.kind == "f" and tokens.dtype.isnative and tokens.dtype.itemsize in (2, 4, 8):
        norms = _sampled_norms(tokens.view(np.uint16) if tokens.itemsize == 2 else tokens, frames, slots)
    else:  # other widths or byte orders (e.g. looks_normalised on a big-endian file)
        norms = np.linalg.norm(tokens[frames, slots].astype(np.float64), axis=-1)
    bad = _norm_outlier(norms)
    if bad < 0:
        return -1, -1, -1.0
    return int(frames[bad]), int(slots[bad]), float(norms[bad])


def looks_normalised(array: Any) -> bool:
    """True when ``array`` is a float array of shape (T, Q, D) or (T, D)
    whose sampled tokens all have norm 1 (or 0): e.g. a file written by
    :meth:`VideoFeatures.save`. Reads only the sample (a memory map stays
    unread). A True answer is what ``normalized=True`` then checks again,
    with finiteness."""
    arr = np.asarray(array)
    if arr.dtype.kind != "f" or arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.size == 0:
        return False
    tokens = arr.reshape(arr.shape[0], -1, arr.shape[-1])
    with np.errstate(all="ignore"):
        return _worst_sampled_norm(tokens)[2] < 0


class VideoFeatures:
    """Frame features of one video, validated and L2-normalised once.

    Args:
        array: (T, Q, D) per-frame query-token features (BLIP-2's Q-Former
            gives Q=32, D=256), or (T, D) for one vector per frame. A numpy
            array of any float dtype (a memory map included), or a torch
            tensor (kept on its device, so similarity runs there when it is a
            GPU).
        duration: video length in seconds covered by the T frames.
        fps: sampling rate of the features in frames per second; defaults
            to ``T / duration``. One that contradicts ``T / duration`` (by
            more than a frame and 10%) is refused.
        source: the video file the features came from, if any.
        encoder: the embedding space of the features (an encoder's
            ``space``, e.g. "blip2-coco"); grounding refuses text embeddings
            from another space. None when unknown.
        normalized: True when every token is already L2-normalised (a file
            written by :meth:`save` is: float16 unit tokens). The array is
            then kept as it is: same dtype (float16 stays float16), same
            memory (a ``np.load(..., mmap_mode="r")`` map stays a map, a
            tensor stays on its device), no float32 copy. Checked cheaply: a
            sample of tokens must have norm 1 (or 0), and every value must be
            finite (one pass in chunks, no copy). Default False: the tokens
            are copied to float32 and normalised, as for raw encoder output.

    Building one is a single pass over the array: validation (and, unless
    ``normalized``, float32 conversion and normalisation of every token)
    happens here, not per query.
    """

    __slots__ = ("tokens", "duration", "fps", "source", "encoder")

    def __init__(self, array: Any, duration: float, fps: float | None = None, *, source: str | None = None,
                 encoder: str | None = None, normalized: bool = False):
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise InvalidInputError(f"duration must be a number of seconds, got {duration!r}") from None
        if not math.isfinite(duration) or duration <= 0:
            raise InvalidInputError(f"duration must be a positive, finite number of seconds, got {duration!r}")
        if not isinstance(normalized, (bool, np.bool_)):
            raise InvalidTypeError(f"normalized must be True or False, got {normalized!r}")
        if _is_torch_tensor(array):
            tokens = self._keep_torch(array) if normalized else self._normalise_torch(array)
        else:
            tokens = self._keep_numpy(array) if normalized else self._normalise_numpy(array)
        self.tokens = tokens
        self.duration = duration
        self.fps = _check_fps(fps, int(tokens.shape[0]), duration)
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
        if np.may_share_memory(tokens, arr):
            # already contiguous float32: normalising in place would change
            # the caller's array (and every VideoFeatures built on it)
            tokens = tokens.copy()
        if not np.isfinite(tokens).all():
            bad = int(np.argwhere(~np.isfinite(tokens).all(axis=(1, 2)))[0, 0])
            raise InvalidInputError(f"features contain NaN or inf (first at frame {bad}); re-extract that video")
        # float32 L2 normalisation; a zero token stays zero (as F.normalize's eps does).
        norms = np.sqrt(np.einsum("tqd,tqd->tq", tokens, tokens))[..., None]
        np.maximum(norms, np.float32(1e-12), out=norms)
        tokens /= norms
        return tokens

    @classmethod
    def _keep_numpy(cls, array: Any) -> np.ndarray:
        arr = np.asarray(array)  # a memory map stays one: asarray only drops the subclass
        if arr.dtype.kind != "f":
            raise InvalidInputError(
                f"normalized features must be floating point, got dtype {arr.dtype}; "
                "pass normalized=False to have them converted and normalised")
        t, q, d = cls._check_shape(arr.shape)
        tokens = arr.reshape(t, q, d)
        if tokens.dtype.byteorder not in "=|" or not tokens.flags.c_contiguous or tokens.dtype == np.longdouble:
            # the compiled kernels read native, contiguous float16/32/64; a copy
            # in the same width (float32 for anything wider than float64)
            target = tokens.dtype.newbyteorder("=") if tokens.dtype != np.longdouble else np.dtype(np.float32)
            tokens = np.ascontiguousarray(tokens, dtype=target)
        bad = first_nonfinite_frame(tokens)
        if bad >= 0:
            raise InvalidInputError(f"features contain NaN or inf (first at frame {bad}); re-extract that video")
        frame, token, norm = _worst_sampled_norm(tokens)
        if norm >= 0:
            raise InvalidInputError(
                f"features passed as normalized are not unit-length: token {token} of frame {frame} has norm "
                f"{norm:.4g}; pass normalized=False to have them normalised")
        return tokens

    # torch tensors (possibly on a GPU) are handled outside core, in
    # tfvtg.torch_ops, which the package root provides through core.hooks
    @classmethod
    def _normalise_torch(cls, tensor: Any) -> Any:
        return hooks.call("torch_normalise", cls, tensor)

    @classmethod
    def _keep_torch(cls, tensor: Any) -> Any:
        return hooks.call("torch_keep", cls, tensor)

    @staticmethod
    def _check_torch_dtype(tensor: Any) -> None:
        if tensor.is_complex() or not (tensor.is_floating_point() or str(tensor.dtype) in _TORCH_INTEGERS):
            raise InvalidInputError(f"features must be real numbers, got a torch tensor of dtype {tensor.dtype}")

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.tokens.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, Q, D)."""
        return tuple(self.tokens.shape)  # type: ignore[return-value]

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
        seconds = np.array(frames, dtype=np.float64)
        seconds_of_frames(seconds.reshape(-1), self.duration, self.num_frames)
        return seconds

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

        A file written by :meth:`save` (unit-length tokens) is memory-mapped
        and kept float16 (``normalized=True``): loading checks a sample of
        token norms and makes one finiteness pass over the file, without a
        copy. Other files (raw encoder output, e.g. TFVTG's released
        features) are normalised into float32 as before.

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
