"""Stage 2: frame-text similarity curves.

A curve holds, for every frame, the best cosine similarity between the text
and any of the frame's Q query tokens. Frame tokens are normalised once per
:class:`~tfvtg.features.VideoFeatures` (or arrive normalised, e.g. float16
from a feature file); texts are normalised here.

On numpy tokens the curves come from one fused compiled kernel: each frame's
Q x D tokens are read once (float16 widened to float32 in registers, never
copied as a whole), dotted with every text and reduced to their max, so the
cost is one pass over the token storage whatever the number of texts,
split over numba's threads.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from . import hooks
from ._intrinsics import prefetch as _prefetch
from ._intrinsics import widen as _widen
from .errors import InvalidInputError
from .features import VideoFeatures

__all__ = ["similarity_curves", "normalise_text_embeddings", "max_token_similarity", "segment_token_means"]

# How the kernel runs (measured on this project's 2-core VM, float16
# (32, 256) tokens read from memory):
# - numba's threads (frames handed out in small slices, one at a time) on
#   long videos, from _PARALLEL_ALWAYS_VALUES token values (1,024 frames):
#   two threads halve an hour-long video's time when the other core is
#   free and lose nothing when it is busy;
# - on shorter ones (from _PARALLEL_MIN_VALUES, 16 frames) whichever of one
#   thread or numba's threads has been faster lately (_ThreadChoice); on an
#   idle machine two threads take a Charades clip from 82 to 56 us, but
#   with the other core busy they took 0.2 to several ms (OpenMP waits for
#   every thread at the end of the parallel region), so only measurement
#   tells;
# - software prefetch below _PREFETCH_MAX_VALUES (512 frames): 10-20% on
#   short videos, whose 4 KB pages each stall the hardware prefetcher; on a
#   long stream the extra instructions cost more than they save.
# NUMBA_NUM_THREADS=1 (or numba.set_num_threads(1)) keeps all on one thread.
_PARALLEL_MIN_VALUES = 1 << 17
_PARALLEL_ALWAYS_VALUES = 1 << 23
_PREFETCH_MAX_VALUES = 1 << 22
_PREFETCH_FRAMES_AHEAD = 2
_TASKS_PER_THREAD = 8
# short videos: one call in this many is timed for _ThreadChoice (and every probe)
_TIMED_EVERY = 4
_MIN_FRAMES_PER_TASK = 8
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


# Reassociation lets LLVM split the D-long dot products over vector lanes
# (the summation order differs from BLAS's by float32 rounding only: about
# 1e-7 on unit vectors). No "no-NaN/no-inf" flags: the running max starts at
# -inf, which those flags would make undefined.
_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST, nogil=True)
def _curves_frames(tokens, text, out, first, stop, prefetch_ahead):  # pragma: no cover - compiled
    # tokens (T, Q, D) uint16 (float16 bits), float32 or float64;
    # text (n, D) float32 unit rows; out (n, T) float32, frames [first, stop).
    # Blocks of 4 tokens x 2 texts: eight independent dot products share
    # each load (the frame's tokens, 16 KB in float16, stay in L1 across
    # the text pairs), so the loop is bound by reading the tokens, not by
    # the latency of one accumulator.
    # prefetch_ahead > 0: while scoring frame i, ask for every cache line of
    # frame i + prefetch_ahead. The hardware prefetcher stops at each 4 KB
    # page, so a short video read from memory stalls at every page without
    # this; a long streamed one (or one already in cache) gains nothing.
    q = tokens.shape[1]
    d = tokens.shape[2]
    n = text.shape[0]
    q4 = q - q % 4
    flat = tokens.reshape(-1)
    per_frame = q * d
    per_line = max(1, 64 // tokens.itemsize)
    for i in range(first, stop):
        if prefetch_ahead > 0 and i + prefetch_ahead < stop:
            ahead = (i + prefetch_ahead) * per_frame
            for p in range(ahead, ahead + per_frame, per_line):
                _prefetch(flat, p)
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


_KERNEL_DTYPES = tuple(np.dtype(f"{order}f{width}") for width in (2, 4, 8) for order in "<>")


def max_token_similarity(tokens: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The fused kernel on plain arrays: ``out[m, t] = max_q tokens[t, q] . text[m]``.

    Args:
        tokens: (T, Q, D) float16, float32 or float64 (e.g. a memory map);
            read once, never copied when C-contiguous in native byte order.
        text: (n, D) float32 C-contiguous rows (normalised by the caller).

    Returns:
        (n, T) float32. Equal to ``max over q`` of the float32 product of the
        tokens widened to float32, up to float32 rounding of the sums.
    """
    if tokens.dtype not in _KERNEL_DTYPES or tokens.ndim != 3:
        raise InvalidInputError(f"tokens must be a (T, Q, D) float16/32/64 array, got {tokens.dtype} {tokens.shape}")
    if not tokens.flags.c_contiguous or not tokens.dtype.isnative:
        tokens = np.ascontiguousarray(tokens, dtype=tokens.dtype.newbyteorder("="))
    t = tokens.shape[0]
    out = np.empty((text.shape[0], t), np.float32)
    bits = tokens.view(np.uint16) if tokens.dtype == np.float16 else tokens
    prefetch = _PREFETCH_FRAMES_AHEAD if tokens.size < _PREFETCH_MAX_VALUES else 0
    measured = _PARALLEL_MIN_VALUES <= tokens.size < _PARALLEL_ALWAYS_VALUES
    if tokens.size < _PARALLEL_MIN_VALUES:
        threads, probe = 1, False
    elif measured:
        wanted, probe = _THREAD_CHOICE.choose()
        threads = _parallel_threads() if wanted else 1
    else:
        threads, probe = _parallel_threads(), False
    # every probe is timed, and every _TIMED_EVERY-th call of the way in use
    timed = measured and (probe or _THREAD_CHOICE.calls % _TIMED_EVERY == 0)
    start = time.perf_counter()
    if threads < 2:
        _curves_frames(bits, text, out, 0, t, prefetch)
    else:
        try:
            if measured:
                # a short video: one contiguous part per thread, split up
                # front (each part streams its pages without restarting the
                # prefetch; a busy core shows in the timing, and _ThreadChoice
                # then keeps to one thread)
                _curves_parallel(bits, text, out, threads, prefetch)
            else:
                tasks = min(threads * _TASKS_PER_THREAD, max(threads, t // _MIN_FRAMES_PER_TASK))
                # slices handed out one at a time, not split in equal parts up
                # front: a thread whose core is busy elsewhere holds up one slice
                previous = numba.set_parallel_chunksize(1)
                try:
                    _curves_parallel(bits, text, out, tasks, prefetch)
                finally:
                    numba.set_parallel_chunksize(previous)
        finally:
            _PARALLEL_LOCK.release()
    if timed:
        _THREAD_CHOICE.record(threads > 1, probe, (time.perf_counter() - start) / (tokens.size * text.shape[0]))
    return out


@njit(cache=True, nogil=True)
def _segment_means(tokens, bounds, out):  # pragma: no cover - compiled
    # tokens (T, Q, D) uint16 (float16 bits), float32 or float64; out (S, Q, D)
    # float32: frames summed in order in float32 (the inner loop over D
    # vectorises), then divided by the segment's frame count
    q = tokens.shape[1]
    d = tokens.shape[2]
    for s in range(bounds.shape[0] - 1):
        first = bounds[s]
        stop = bounds[s + 1]
        for j in range(q):
            for k in range(d):
                out[s, j, k] = 0.0
        for i in range(first, stop):
            for j in range(q):
                for k in range(d):
                    out[s, j, k] += _widen(tokens[i, j, k])
        count = np.float32(max(1, stop - first))
        for j in range(q):
            for k in range(d):
                out[s, j, k] /= count


def segment_token_means(tokens: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per-segment means of each token slot.

    Args:
        tokens: (T, Q, D) float16, float32 or float64 (a memory map is read
            once, in place, when C-contiguous in native byte order).
        bounds: (S + 1,) increasing frame bounds; segment s is frames
            [bounds[s], bounds[s + 1]).

    Returns:
        (S, Q, D) float32: ``out[s, q] = mean of tokens[bounds[s]:bounds[s+1], q]``
        (float32 sums in frame order; an empty segment gives zeros).
    """
    if tokens.dtype not in _KERNEL_DTYPES or tokens.ndim != 3:
        raise InvalidInputError(f"tokens must be a (T, Q, D) float16/32/64 array, got {tokens.dtype} {tokens.shape}")
    if not tokens.flags.c_contiguous or not tokens.dtype.isnative:
        tokens = np.ascontiguousarray(tokens, dtype=tokens.dtype.newbyteorder("="))
    edges = np.asarray(bounds, dtype=np.int64)
    if edges.ndim != 1 or len(edges) < 2 or edges[0] < 0 or edges[-1] > tokens.shape[0] or np.any(np.diff(edges) < 0):
        raise InvalidInputError(f"bounds must be increasing frame indices within 0..{tokens.shape[0]}, got {bounds!r}")
    out = np.empty((len(edges) - 1, tokens.shape[1], tokens.shape[2]), np.float32)
    _segment_means(tokens.view(np.uint16) if tokens.dtype == np.float16 else tokens, edges, out)
    return out


class _ThreadChoice:
    """One thread or numba's threads for short videos, by measured speed.

    Keeps the last ``KEPT`` costs (seconds per token value and text) of each
    way, uses threads unless their median is ``THREADS_BIAS`` times one
    thread's or more, and tries the other every
    ``probe_every`` calls: every 8th after a probe that won, backing off to
    every 1,024th while probes lose (with the other core busy, the threads
    took a short clip 50x longer here), so a machine that gets busy or idle
    again is noticed within about a thousand calls. A probe faster than the
    other way's median replaces its way's older samples, so one slow start
    (numba's threads starting, the first pages of a file) cannot keep the
    faster way out for thousands of calls. The first ``WARMUP`` calls of each
    way are not counted. Results never depend on the choice.
    """

    KEPT = 8
    WARMUP = 3
    #: threads stay in use until their median cost exceeds one thread's by
    #: this factor. Costs swing about 2x with the cache (a clip read twice in
    #: a row is in cache the second time), so equal medians of a mixed
    #: stream say little; a busy other core makes threads 2-50x slower.
    THREADS_BIAS = 1.5
    FIRST_PROBE = 8
    LAST_PROBE = 1024

    def __init__(self) -> None:
        self.samples: dict[bool, deque[float]] = {False: deque(maxlen=self.KEPT), True: deque(maxlen=self.KEPT)}
        self.typical: dict[bool, float | None] = {False: None, True: None}
        self.warmup_calls = {False: 0, True: 0}  # calls of each way not counted yet, up to WARMUP
        self.calls = 0
        self.probe_every = self.FIRST_PROBE

    def choose(self) -> tuple[bool, bool]:
        """(use threads, this call measures a way not known to be faster)."""
        self.calls += 1
        one, many = self.typical[False], self.typical[True]
        if one is None:
            return False, True
        if many is None:
            return True, True
        faster = many < self.THREADS_BIAS * one
        if self.calls % self.probe_every == 0:
            return not faster, True
        return faster, False

    def record(self, threads: bool, probe: bool, cost: float) -> None:
        if self.warmup_calls[threads] < self.WARMUP:
            self.warmup_calls[threads] += 1
            return
        kept = self.samples[threads]
        other = self.typical[not threads]
        # costs on one scale: threads count as THREADS_BIAS times cheaper
        if other is not None:
            other = other * self.THREADS_BIAS if threads else other / self.THREADS_BIAS
        if probe and other is not None and cost < other:
            # the way just probed beats the other one: its older samples are
            # out of date (taken while the machine was busier, or while
            # numba's threads were starting), so this one decides
            kept.clear()
        kept.append(cost)
        self.typical[threads] = sorted(kept)[len(kept) // 2]
        if probe and other is not None:
            # a probe that beats the other way brings the next ones closer
            self.probe_every = min(self.LAST_PROBE, 2 * self.probe_every) if cost > other else self.FIRST_PROBE


_THREAD_CHOICE = _ThreadChoice()


@njit(cache=True, fastmath=_FAST, nogil=True, parallel=True)
def _curves_parallel(tokens, text, out, tasks, prefetch_ahead):  # pragma: no cover - compiled
    t = tokens.shape[0]
    step = (t + tasks - 1) // tasks
    for task in prange(tasks):
        _curves_frames(tokens, text, out, min(t, task * step), min(t, (task + 1) * step), prefetch_ahead)


# numba's thread pool, used with three precautions:
# - it is started from a helper thread: starting it sets OpenMP's thread
#   count in the starting thread, and torch, when it shares numba's
#   libgomp, reads its count from there (once seen here: a caller's
#   torch.set_num_threads(1) became 2); a helper thread keeps the caller's;
# - never in a process forked after it started: GNU OpenMP's pool does not
#   survive fork(), and numba terminates a child that uses it;
# - one call at a time (another thread meanwhile runs one thread): numba's
#   fallback "workqueue" layer is not thread-safe.
_PARALLEL_LOCK = threading.Lock()
_PARALLEL_STATE = {"started": False, "forked": False}


def _parallel_threads() -> int:
    """numba's thread count when this call may use numba's threads (then
    with _PARALLEL_LOCK held), else 1."""
    if _PARALLEL_STATE["forked"] or numba.config.NUMBA_NUM_THREADS < 2:  # type: ignore[attr-defined]
        return 1
    if not _PARALLEL_STATE["started"]:
        starter = threading.Thread(target=numba.get_num_threads, name="tfvtg-start-numba-threads")
        starter.start()
        starter.join()
        _PARALLEL_STATE["started"] = True
    if not _PARALLEL_LOCK.acquire(blocking=False):
        return 1
    threads = _numba_thread_count()  # numba.set_num_threads() in this thread caps it
    if threads < 2:
        _PARALLEL_LOCK.release()
    return threads


def _numba_thread_count() -> int:
    """numba.get_num_threads() once numba's pool is running. The public call
    takes numba's start-up locks (one of them a process-wide lock) every
    time, half a microsecond per short clip; the thread-local count behind
    it is read directly when numba still exposes it."""
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    read = getattr(parallel, "_get_num_threads", None) if getattr(parallel, "_is_initialized", False) else None
    if read is not None:
        try:
            count = int(read())
        except Exception:  # noqa: BLE001 - a changed numba internal: use the public call
            count = 0
        if count > 0:
            return count
    return int(numba.get_num_threads())


def _after_fork_in_child() -> None:
    launcher = sys.modules.get("numba.np.ufunc.parallel")  # someone else may have started the pool
    pool_started = launcher is not None and getattr(launcher, "_is_initialized", True)
    if _PARALLEL_STATE["started"] or pool_started:
        _PARALLEL_STATE["forked"] = True
    global _PARALLEL_LOCK
    _PARALLEL_LOCK = threading.Lock()  # a lock held by a parent's thread would stay held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
    # on the tensor's device (e.g. a GPU): tfvtg.torch_ops, provided through core.hooks
    return hooks.call("torch_curves", tokens, text, _TORCH_CHUNK_VALUES)
