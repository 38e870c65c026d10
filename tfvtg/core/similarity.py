"""Stage 2: frame-text similarity curves.

A curve holds, for every frame, the best cosine similarity between the text
and any of the frame's Q query tokens. Frame tokens are normalised once per
:class:`~tfvtg.features.VideoFeatures` (or arrive normalised, e.g. float16
from a feature file); texts are normalised here.

On numpy tokens the curves come from one fused compiled kernel: each frame's
Q x D tokens are read once (float16 widened to float32 in registers, never
copied as a whole), dotted with every text and reduced to their max, so the
cost is one pass over the token storage whatever the number of texts. Long
videos are split over numba's threads.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .errors import InvalidInputError
from .features import VideoFeatures

__all__ = ["similarity_curves", "normalise_text_embeddings", "max_token_similarity"]

# Below this many token values (about 2 MB of float16: a 2-minute video at
# 3 fps with (32, 256) tokens) one thread does the whole video: waking the
# thread pool costs more than it saves.
_PARALLEL_MIN_VALUES = 1 << 20
# Frames per parallel task: small enough to balance two busy cores, large
# enough that a task is far longer than handing it out.
_FRAMES_PER_TASK = 256
# token values per slice of the torch path (16 MB of float32 on the device)
_TORCH_CHUNK_VALUES = 1 << 22


def normalise_text_embeddings(embeddings: Any, dim: int) -> np.ndarray:
    """Validate (n, D) text embeddings and L2-normalise them.

    Returns (n, D) float32, C-contiguous. Raises InvalidInputError when the
    shape does not match the features' D or values are not finite.
    """
    if _is_torch(embeddings):
        embeddings = embeddings.detach().float().cpu().numpy()
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2:
        raise InvalidInputError(f"the text encoder must return an (n, D) array, got shape {emb.shape}")
    if emb.shape[1] != dim:
        raise InvalidInputError(
            f"text embedding dimension {emb.shape[1]} does not match the frame features' D={dim}: "
            "use the text encoder of the model that produced the features"
        )
    out = _normalise_rows(np.ascontiguousarray(emb))
    if out is None:
        raise InvalidInputError("the text encoder returned NaN or inf embeddings")
    return out


@njit(cache=True)
def _normalise_rows(emb):  # pragma: no cover - compiled
    # (n, D) float32 -> unit rows (a zero row stays zero, as F.normalize's
    # eps does), or None when a value is not finite. Compiled: for the one
    # or few texts of a query numpy's separate passes cost more than this.
    n, d = emb.shape
    out = np.empty((n, d), np.float32)
    for m in range(n):
        sq = np.float32(0.0)
        for k in range(d):
            v = emb[m, k]
            if not np.isfinite(v):
                return None
            sq += v * v
        norm = max(np.sqrt(sq), np.float32(1e-12))
        for k in range(d):
            out[m, k] = emb[m, k] / norm
    return out


@intrinsic
def _widen(typingctx, value):
    """A token value as float32: float16 bits (uint16) are widened exactly
    (LLVM's half -> float extension: one vcvtph2ps per 8 or 16 values with
    F16C), float32 passes through, float64 is rounded."""
    if isinstance(value, types.Integer) and value.bitwidth == 16:
        def codegen(context, builder, sig, args):
            return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    elif value == types.float32:
        def codegen(context, builder, sig, args):
            return args[0]
    elif value == types.float64:
        def codegen(context, builder, sig, args):
            return builder.fptrunc(args[0], ir.FloatType())
    else:
        return None
    return types.float32(value), codegen


# Reassociation lets LLVM split the D-long dot products over vector lanes
# (the summation order differs from BLAS's by float32 rounding only: about
# 1e-7 on unit vectors). No "no-NaN/no-inf" flags: the running max starts at
# -inf, which those flags would make undefined.
_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST)
def _curves_frames(tokens, text, out, first, stop):  # pragma: no cover - compiled
    # tokens (T, Q, D) uint16 (float16 bits), float32 or float64;
    # text (n, D) float32 unit rows; out (n, T) float32, frames [first, stop).
    # Blocks of 4 tokens x 2 texts: eight independent dot products share
    # each load (the frame's tokens, 16 KB in float16, stay in L1 across
    # the text pairs), so the loop is bound by reading the tokens, not by
    # the latency of one accumulator.
    q = tokens.shape[1]
    d = tokens.shape[2]
    n = text.shape[0]
    q4 = q - q % 4
    for i in range(first, stop):
        m = 0
        while m + 1 < n:
            best0 = np.float32(-np.inf)
            best1 = np.float32(-np.inf)
            for j in range(0, q4, 4):
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                a3 = np.float32(0.0)
                b0 = np.float32(0.0)
                b1 = np.float32(0.0)
                b2 = np.float32(0.0)
                b3 = np.float32(0.0)
                for k in range(d):
                    x = text[m, k]
                    y = text[m + 1, k]
                    t0 = _widen(tokens[i, j, k])
                    t1 = _widen(tokens[i, j + 1, k])
                    t2 = _widen(tokens[i, j + 2, k])
                    t3 = _widen(tokens[i, j + 3, k])
                    a0 += t0 * x
                    a1 += t1 * x
                    a2 += t2 * x
                    a3 += t3 * x
                    b0 += t0 * y
                    b1 += t1 * y
                    b2 += t2 * y
                    b3 += t3 * y
                best0 = max(best0, max(max(a0, a1), max(a2, a3)))
                best1 = max(best1, max(max(b0, b1), max(b2, b3)))
            for j in range(q4, q):
                a0 = np.float32(0.0)
                b0 = np.float32(0.0)
                for k in range(d):
                    t0 = _widen(tokens[i, j, k])
                    a0 += t0 * text[m, k]
                    b0 += t0 * text[m + 1, k]
                best0 = max(best0, a0)
                best1 = max(best1, b0)
            out[m, i] = best0
            out[m + 1, i] = best1
            m += 2
        if m < n:  # an odd text out
            best0 = np.float32(-np.inf)
            for j in range(0, q4, 4):
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                a3 = np.float32(0.0)
                for k in range(d):
                    x = text[m, k]
                    a0 += _widen(tokens[i, j, k]) * x
                    a1 += _widen(tokens[i, j + 1, k]) * x
                    a2 += _widen(tokens[i, j + 2, k]) * x
                    a3 += _widen(tokens[i, j + 3, k]) * x
                best0 = max(best0, max(max(a0, a1), max(a2, a3)))
            for j in range(q4, q):
                a0 = np.float32(0.0)
                for k in range(d):
                    a0 += _widen(tokens[i, j, k]) * text[m, k]
                best0 = max(best0, a0)
            out[m, i] = best0


@njit(cache=True, fastmath=_FAST, parallel=True)
def _curves_parallel(tokens, text, out, frames_per_task):  # pragma: no cover - compiled
    t = tokens.shape[0]
    tasks = (t + frames_per_task - 1) // frames_per_task
    for task in prange(tasks):
        first = task * frames_per_task
        _curves_frames(tokens, text, out, first, min(t, first + frames_per_task))


def max_token_similarity(tokens: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The fused kernel on plain arrays: ``out[m, t] = max_q tokens[t, q] . text[m]``.

    Args:
        tokens: (T, Q, D) float16, float32 or float64, C-contiguous, native
            byte order (e.g. a memory map); read once, never copied.
        text: (n, D) float32 C-contiguous rows (normalised by the caller).

    Returns:
        (n, T) float32. Equal to ``max over q`` of the float32 product of the
        tokens widened to float32, up to float32 rounding of the sums.
    """
    t = tokens.shape[0]
    out = np.empty((text.shape[0], t), np.float32)
    bits = tokens.view(np.uint16) if tokens.dtype == np.float16 else tokens
    if tokens.size >= _PARALLEL_MIN_VALUES and _parallel_allowed():
        # tasks handed out one at a time (not split in halves up front), so
        # a core busy with something else slows the call down, not stalls it
        previous = numba.set_parallel_chunksize(1)
        try:
            _curves_parallel(bits, text, out, _FRAMES_PER_TASK)
        finally:
            numba.set_parallel_chunksize(previous)
            _PARALLEL_LOCK.release()
    else:
        _curves_frames(bits, text, out, 0, t)
    return out


# numba's thread pool is used by one call at a time (its "workqueue" layer
# is not thread-safe; another thread meanwhile runs the serial kernel), and
# never in a process forked after the pool started (GNU OpenMP's pool does
# not survive fork(): numba would abort the child).
_PARALLEL_LOCK = threading.Lock()
_POOL_PID: list[int] = []


def _parallel_allowed() -> bool:
    """True with the lock held when this call may use the thread pool."""
    if numba.get_num_threads() < 2:
        return False
    pid = os.getpid()
    if _POOL_PID and _POOL_PID[0] != pid:
        return False
    if not _PARALLEL_LOCK.acquire(blocking=False):
        return False
    if not _POOL_PID:
        _POOL_PID.append(pid)
    return True


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def similarity_curves(features: VideoFeatures, text_embeddings: Any) -> np.ndarray:
    """Per-text similarity curves over the video.

    Args:
        features: the video's normalised frame tokens, (T, Q, D).
        text_embeddings: (n, D) raw text embeddings (normalised here).

    Returns:
        (n, T) float32: for text i and frame t, the max over the Q tokens of
        the cosine similarity. When the features are a torch tensor (e.g. on
        a GPU) the product runs there and only the curves come back.
    """
    tokens = features.tokens
    text = normalise_text_embeddings(text_embeddings, tokens.shape[2])
    if features.on_torch:
        return _torch_curves(tokens, text)
    return max_token_similarity(tokens, text)


def _torch_curves(tokens: Any, text: np.ndarray) -> np.ndarray:
    # the product runs where the tokens are (e.g. a GPU), in float32 whatever
    # their dtype, a slice of frames at a time: a float16 video never gets a
    # whole float32 copy there either
    import torch

    t, q, d = tokens.shape
    text_t = torch.from_numpy(text).to(device=tokens.device)
    step = max(1, _TORCH_CHUNK_VALUES // (q * d))
    curves = torch.empty((text.shape[0], t), dtype=torch.float32, device=tokens.device)
    for first in range(0, t, step):
        chunk = tokens[first:first + step]
        sims = chunk.reshape(-1, d).to(torch.float32) @ text_t.T  # (frames*Q, n)
        curves[:, first:first + chunk.shape[0]] = sims.reshape(chunk.shape[0], q, -1).amax(dim=1).T
    return curves.cpu().numpy()
