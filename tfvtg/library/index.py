"""The coarse index: which videos (and which part of them) to ground.

Each video is cut into segments of about ``segment_frames`` feature frames
(evenly: ``S = ceil(T / segment_frames)`` segments with bounds
``round(linspace(0, T, S + 1))``). For every segment and every query-token
slot q the index keeps the mean of that slot's normalised tokens over the
segment's frames: (S, Q, D) vectors per video, stored float16.

Why this vector: for a unit text vector u, ``<u, mean_t tok[t, q]>`` is the
mean over the segment of slot q's cosine similarity, so the best slot's value
is a lower bound of the segment's mean similarity curve
(``mean_t max_q <u, tok[t, q]>``), exact when one token slot is the best over
the whole segment. The fine stage ranks moments by the mean of that curve
over the moment, so the coarse score estimates the fine score from below.

A video's coarse score is the best of its S*Q dot products; the candidates
are the videos with the highest coarse scores, each with its best segment
(the region the fine stage grounds when the video is long).

Stored float16 in the catalogue: 1/segment_frames of the float16 token
storage (1/32 by default). In memory (float32) the index has two levels:
the stored vectors, and the same pooled two segments at a time, scanned
first to keep the few hundred most promising videos (see
:class:`CoarseIndex`): 3/segment_frames of the token storage (3/32).

Search backends (chosen by measurement, see benchmarks/README.md):

* ``"flat"`` (default): float32 matrix-vector products (BLAS) and a
  per-video maximum; every stored vector up to ``FULL_SCAN_MAX_VECTORS``,
  beyond that exact on level 2 for the videos level 1 keeps.
* ``"ivf"``: a faiss inverted-file index (inner product) over the level-2
  vectors, probing ``nprobe`` of ``nlist`` clusters. On BLIP-2-shaped
  features it loses much recall: every token shares large slot and scene
  components, so the clusters follow those and not what a sentence matches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._extras import require
from ..core.features import float16_copy
from ..core.similarity import segment_token_means
from ..errors import InvalidInputError

__all__ = ["segment_bounds", "pool_segments", "CoarseIndex", "Candidate", "DEFAULT_SEGMENT_FRAMES"]

#: frames per coarse segment (at 3 fps, about 11 s); chosen by the benchmark's recall
DEFAULT_SEGMENT_FRAMES = 32
#: up to this many stored coarse vectors (about 2,600 minute-long videos) a
#: search scans them all: on 2,000 videos (384,000 vectors, 40 queries) that
#: took recall@10 from 0.953 (level 1 first) to 0.982 for 10 ms more (coarse
#: 24 ms against 16). Past it level 1 prunes first: the full scan costs about
#: 55 ms per million vectors on two cores
FULL_SCAN_MAX_VECTORS = 1_000_000


def segment_bounds(num_frames: int, segment_frames: int) -> np.ndarray:
    """(S + 1,) int32 frame bounds of the S = ceil(T / segment_frames)
    segments of a T-frame video (as even as whole frames allow)."""
    s = max(1, math.ceil(num_frames / segment_frames))
    return np.linspace(0, num_frames, s + 1).round().astype(np.int32)


def pool_segments(tokens: np.ndarray, segment_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Coarse vectors of one video.

    Args:
        tokens: (T, Q, D) normalised tokens (any float dtype; a memory-mapped
            float16 array is read once, segment by segment).
        segment_frames: frames per segment.

    Returns:
        (bounds, vectors): (S + 1,) int32 frame bounds and (S * Q, D) float16
        vectors, segment-major (row ``s * Q + q`` is slot q of segment s).
    """
    t, q, d = tokens.shape
    bounds = segment_bounds(t, segment_frames)
    # one compiled pass over the tokens (float16 widened in registers): numpy's
    # float32 mean of float16 slices took 1.6 ms of a 3.6 ms budget per minute of video
    means = segment_token_means(np.asarray(tokens), bounds)
    return bounds, float16_copy(means.reshape(-1, d))


@dataclass(frozen=True)
class Candidate:
    """A video the coarse stage picked.

    Attributes:
        video: its id.
        score: its coarse score (best slot-segment dot product, cosine scale).
        first_frame, last_frame: the best segment's frames [first, last).
    """

    video: str
    score: float
    first_frame: int
    last_frame: int


class _Rows:
    """A growable float32 matrix of rows grouped by video (contiguous)."""

    def __init__(self) -> None:
        self.matrix = np.zeros((0, 0), np.float32)
        self.n = 0
        self.starts: list[int] = [0]  # row offset of each video, plus the total
        self._starts_array: np.ndarray | None = None

    def append(self, rows: np.ndarray) -> None:
        n, d = rows.shape
        if self.matrix.shape[1] != d:
            self.matrix = np.zeros((max(1024, n), d), np.float32)
        if self.n + n > self.matrix.shape[0]:  # grow geometrically: appends stay amortised O(rows)
            grown = np.zeros((max(2 * self.matrix.shape[0], self.n + n), d), np.float32)
            grown[: self.n] = self.matrix[: self.n]
            self.matrix = grown
        self.matrix[self.n: self.n + n] = rows
        self.n += n
        self.starts.append(self.n)
        self._starts_array = None

    @property
    def starts_array(self) -> np.ndarray:
        if self._starts_array is None:
            self._starts_array = np.asarray(self.starts, np.int64)
        return self._starts_array

    def best_per_video(self, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per video, the best dot product with ``text`` and the row holding it."""
        scores = self.matrix[: self.n] @ text  # (N,) one BLAS pass, memory-bound
        starts = self.starts_array
        best = np.maximum.reduceat(scores, starts[:-1])
        # the row of each video's maximum: the first row equal to it
        rows = np.flatnonzero(scores == np.repeat(best, np.diff(starts)))
        owner = np.searchsorted(starts, rows, side="right") - 1
        first = np.full(len(starts) - 1, -1, np.int64)
        first[owner[::-1]] = rows[::-1]  # the last write wins: the first row per video
        return best, first


def _pairs(bounds: np.ndarray, vectors: np.ndarray, q: int) -> np.ndarray:
    """Level-1 vectors: consecutive segments pooled two by two (weighted by
    their frame counts), (ceil(S / 2) * Q, D) float32."""
    s = len(bounds) - 1
    seg = vectors.astype(np.float32).reshape(s, q, -1)
    counts = np.diff(bounds).astype(np.float32)
    out = np.empty(((s + 1) // 2, q, seg.shape[-1]), np.float32)
    for j in range(0, s, 2):
        k = min(j + 2, s)
        w = counts[j:k] / counts[j:k].sum()
        out[j // 2] = np.tensordot(w, seg[j:k], axes=1)
    return out.reshape(-1, seg.shape[-1])


class CoarseIndex:
    """The in-memory search structure over every video's coarse vectors.

    Two levels, both float32 in memory: level 2 holds every stored vector
    (segments of ``segment_frames``); level 1 pools them two segments at a
    time (half the rows). Up to ``FULL_SCAN_MAX_VECTORS`` stored vectors a
    search scans level 2 whole; past that it scans level 1 to keep the
    ``prefilter`` best videos (default ``max(8 * n_videos, 200)``) and
    scores only those on level 2. ``prefilter=0`` always scans level 2
    whole; a number always takes level 1 first.
    Rows are grouped by video (contiguous), in the order the videos were
    added; a removal rebuilds the arrays.
    """

    def __init__(self, backend: str = "flat", nprobe: int = 16, prefilter: int | None = None):
        if backend not in ("flat", "ivf"):
            raise InvalidInputError(f"coarse backend must be 'flat' or 'ivf', got {backend!r}")
        self.backend = backend
        self.nprobe = int(nprobe)
        self.prefilter = prefilter
        self.dim = 0
        self.ids: list[str] = []
        self.rowids: list[int] = []
        self.bounds: list[np.ndarray] = []
        self.tokens_per_segment: list[int] = []
        self._fine = _Rows()
        self._coarse = _Rows()
        self._ivf: tuple[Any, Any] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_vectors(self) -> int:
        """Level-2 vectors (the stored ones)."""
        return self._fine.n

    @property
    def memory_bytes(self) -> int:
        """Bytes of the two float32 levels (rows in use)."""
        return 4 * self.dim * (self._fine.n + self._coarse.n)

    def clear(self) -> None:
        self.__init__(self.backend, self.nprobe, self.prefilter)  # type: ignore[misc]

    def append(self, rowid: int, video: str, bounds: np.ndarray, vectors: np.ndarray, tokens: int) -> None:
        """Add one video's (S * Q, D) vectors (float16) at the end."""
        n, d = vectors.shape
        if self.dim == 0:
            self.dim = d
        if d != self.dim:
            raise InvalidInputError(f"coarse vectors of {video!r} have D={d}, the index has D={self.dim}")
        self._fine.append(vectors)
        self._coarse.append(_pairs(bounds, vectors, tokens))
        self.ids.append(video)
        self.rowids.append(rowid)
        self.bounds.append(bounds)
        self.tokens_per_segment.append(tokens)
        self._ivf = None

    # -- search ------------------------------------------------------------
    def search(self, text: np.ndarray, n_videos: int) -> list[Candidate]:
        """The ``n_videos`` videos with the best coarse scores for the unit
        text vector ``text`` (D,), best first."""
        if self._fine.n == 0 or n_videos <= 0:
            return []
        text = np.ascontiguousarray(text, dtype=np.float32).reshape(-1)
        if text.shape[0] != self.dim:
            raise InvalidInputError(
                f"the query embedding has D={text.shape[0]} but the library's features have D={self.dim}: "
                "use the encoder the library was built with")
        n_videos = min(n_videos, len(self.ids))
        if self.backend == "ivf" and n_videos < len(self.ids):
            best_row = self._search_ivf(text, n_videos)
        else:
            best_row = self._search_flat(text, n_videos)
        return self._top(best_row, n_videos)

    def _search_flat(self, text: np.ndarray, n_videos: int) -> tuple[np.ndarray, np.ndarray]:
        if self.prefilter is not None:
            keep = self.prefilter
        elif self._fine.n <= FULL_SCAN_MAX_VECTORS:
            keep = 0  # every stored vector: the best recall, at tens of ms
        else:
            keep = max(8 * n_videos, 200)
        if keep <= 0 or keep >= len(self.ids):
            return self._fine.best_per_video(text)
        level1, _ = self._coarse.best_per_video(text)
        chosen = np.argpartition(-level1, keep - 1)[:keep]
        best = np.full(len(self.ids), -np.inf, np.float32)
        first = np.full(len(self.ids), -1, np.int64)
        starts = self._fine.starts
        matrix = self._fine.matrix
        for v in chosen.tolist():
            scores = matrix[starts[v]: starts[v + 1]] @ text
            i = int(np.argmax(scores))
            best[v] = scores[i]
            first[v] = starts[v] + i
        return best, first

    def _ensure_ivf(self) -> None:
        if self._ivf is not None:
            return
        faiss = require("faiss")
        x = self._fine.matrix[: self._fine.n]
        # about 4 sqrt(N) lists (faiss' usual range), capped so that training stays seconds
        n = self._fine.n
        nlist = int(max(1, min(4 * math.sqrt(n), n // 39, 1024)))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(np.ascontiguousarray(sample))
        index.add(x)
        self._ivf = (index, quantizer)

    def _search_ivf(self, text: np.ndarray, n_videos: int) -> tuple[np.ndarray, np.ndarray]:
        self._ensure_ivf()
        assert self._ivf is not None
        index = self._ivf[0]
        index.nprobe = self.nprobe
        # enough nearest vectors that n_videos distinct videos are almost surely among them
        per_video = max(1, self._fine.n // len(self.ids))
        k = min(self._fine.n, max(64, 4 * n_videos * min(per_video, 32)))
        scores, rows = index.search(text[None, :], k)
        scores, rows = scores[0], rows[0]
        keep = rows >= 0
        scores, rows = scores[keep], rows[keep]
        owner = np.searchsorted(self._fine.starts_array, rows, side="right") - 1
        best = np.full(len(self.ids), -np.inf, np.float32)
        first = np.full(len(self.ids), -1, np.int64)
        order = np.argsort(-scores, kind="stable")[::-1]  # ascending, so the best write wins
        best[owner[order]] = scores[order]
        first[owner[order]] = rows[order]
        return best, first

    def _top(self, best_row: tuple[np.ndarray, np.ndarray], n_videos: int) -> list[Candidate]:
        best, first = best_row
        n_videos = min(n_videos, int(np.isfinite(best).sum()))
        if n_videos <= 0:
            return []
        if n_videos < len(best):
            top = np.argpartition(-best, n_videos - 1)[:n_videos]
        else:
            top = np.arange(len(best))
        top = top[np.lexsort((top, -best[top]))]  # best first, ties by insertion order
        out = []
        for v in top.tolist():
            local = int(first[v] - self._fine.starts[v])
            segment = local // self.tokens_per_segment[v]
            b = self.bounds[v]
            out.append(Candidate(self.ids[v], float(best[v]), int(b[segment]), int(b[segment + 1])))
        return out
