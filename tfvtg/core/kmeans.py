"""k-means over a video's frames, as TAG clusters them into scenes.

TAG (Lee et al., BMVC 2025) seeds k-means++ from torch's CPU generator right
after ``torch.manual_seed(60)`` and then runs either plain Lloyd iterations
or its *temporal-coherence* variant, where a frame joins the cluster whose
distances, averaged over the frames around it, are smallest.

Random draws. TAG makes exactly ``k`` draws per clustering: one
``torch.randint(0, n, (1,))`` for the first centre and one ``torch.rand(1)``
for each further centre. On the CPU, torch's generator is a 32-bit Mersenne
Twister seeded with the standard ``init_genrand`` recurrence; ``randint``
with a range below 2**32 takes one 32-bit word modulo the range, and a
float32 ``rand`` takes one word and keeps its low 24 bits over 2**24. numpy's
legacy ``RandomState(seed)`` seeds the same Twister the same way for an
integer seed (and numpy keeps that stream fixed), so :func:`torch_cpu_words`
reproduces torch's words without importing torch; ``tests/test_tag.py``
checks this against torch itself. The words are an argument of
:func:`kmeans_scenes`, so a caller can supply other draws (another seed,
another generator) without touching the clustering.

Numerics: distances are computed in float64 (TAG: float32 ``torch.cdist``,
whose rounding depends on the machine). Where two clusters are within
rounding of each other for some frame, float32 implementations may assign it
differently; :func:`kmeans_scenes` reports the smallest such margin so that
callers can tell a clustering decided by the data from one decided by
rounding.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

from .errors import InvalidInputError

__all__ = ["torch_cpu_words", "kmeans_scenes", "KMEANS_ITERATIONS", "KMEANS_TOLERANCE"]

# TAG's Lloyd loop: at most 100 iterations, stop when no centre coordinate
# moved by more than 1e-4 (+ 1e-5 relative: torch.allclose's defaults)
KMEANS_ITERATIONS = 100
KMEANS_TOLERANCE = 1e-4
_RELATIVE_TOLERANCE = 1e-5
_UNIT_24 = 1.0 / 16777216.0  # 2**-24: a float32 uniform is (word & 0xFFFFFF) * 2**-24
# the unit of the margins: one float32 rounding (half an ulp, 2**-24 relative)
# of |x|^2 + |c|^2, the terms float32 cdist (|x|^2 + |c|^2 - 2 x.c) cancels
_ROUNDING = 2.0 ** -24


def torch_cpu_words(seed: int, count: int) -> np.ndarray:
    """The first ``count`` 32-bit words torch's CPU generator gives after
    ``torch.manual_seed(seed)``, as a read-only (count,) uint32 array.

    Args:
        seed: 0 <= seed < 2**32 (TAG: 60).
        count: how many words (TAG's k-means++ uses k).
    """
    return _words(int(seed), int(count))


@functools.lru_cache(maxsize=64)
def _words(seed: int, count: int) -> np.ndarray:
    # the same every time: seeding a Twister costs more than a whole query's clustering
    words = np.random.RandomState(seed).randint(0, 2 ** 32, size=count, dtype=np.uint32)
    words.flags.writeable = False
    return words


@njit(cache=True)
def _distance_error(x_sq: float, c_sq: float, dist: float) -> float:
    # float32 cdist (TAG's) takes |x|^2 + |c|^2 - 2 x.c: the squared distance
    # carries an absolute error of a few ulps of |x|^2 + |c|^2, which moves
    # the distance by that over 2 d (or by its square root near d = 0)
    sq_error = _ROUNDING * (x_sq + c_sq)
    return min(sq_error / (2.0 * dist), np.sqrt(sq_error)) if dist > 0 else np.sqrt(sq_error)


@njit(cache=True)
def _plus_plus(x: np.ndarray, k: int, words: np.ndarray) -> tuple[np.ndarray, float]:
    # k-means++ centre indices with TAG's draws; also the smallest distance
    # between a draw and a cumulative-probability boundary (a draw that close
    # may land in the neighbouring frame under other rounding)
    n, d = x.shape
    chosen = np.empty(k, np.int64)
    chosen[0] = np.int64(words[0] % np.uint32(n))
    nearest = np.empty(n, np.float64)
    for i in range(n):
        acc = 0.0
        for j in range(d):
            diff = x[i, j] - x[chosen[0], j]
            acc += diff * diff
        nearest[i] = acc
    x_sq = np.empty(n, np.float64)
    for i in range(n):
        x_sq[i] = np.dot(x[i], x[i])
    margin = np.inf
    centre_sq = x_sq[chosen[0]]  # the largest |centre|^2 so far
    for c in range(1, k):
        centre_sq = max(centre_sq, x_sq[chosen[c - 1]])
        total = 0.0
        error = 0.0  # float32 rounding the squared distances could carry, summed
        for i in range(n):
            total += nearest[i]
            error += _ROUNDING * (x_sq[i] + centre_sq)
        r = np.float64(words[c] & np.uint32(0xFFFFFF)) * _UNIT_24
        pick = n - 1  # TAG indexes past the end here (all points equal): keep the last
        cum = 0.0
        if total > 0:
            for i in range(n):
                before = cum
                cum += nearest[i] / total
                if cum >= r:
                    pick = i
                    # the draw's distance to the nearer boundary of its frame,
                    # in units of the rounding of the cumulative probabilities
                    gap = min(cum - r, r - before) if i > 0 else cum - r
                    margin = min(margin, gap * total / error if error > 0 else np.inf)
                    break
        chosen[c] = pick
        for i in range(n):
            acc = 0.0
            for j in range(d):
                diff = x[i, j] - x[pick, j]
                acc += diff * diff
            if acc < nearest[i]:
                nearest[i] = acc
    return chosen, margin


@njit(cache=True)
def _lloyd(x: np.ndarray, centres: np.ndarray, half_window: int, temporal: bool, n_iter: int, atol: float,
           rtol: float) -> tuple[np.ndarray, float]:
    n, d = x.shape
    k = centres.shape[0]
    x_sq = np.empty(n, np.float64)
    for i in range(n):
        x_sq[i] = np.dot(x[i], x[i])
    labels = np.zeros(n, np.int64)
    new_labels = np.empty(n, np.int64)
    dist = np.empty((n, k), np.float64)
    window = np.zeros((n + 1, k), np.float64)
    counts = np.empty(k, np.int64)
    c_sq = np.empty(k, np.float64)
    margin = np.inf
    for _ in range(n_iter):
        cross = np.dot(x, centres.T)  # (n, k)
        for j in range(k):
            c_sq[j] = np.dot(centres[j], centres[j])
            for i in range(n):
                dist[i, j] = np.sqrt(max(x_sq[i] + c_sq[j] - 2.0 * cross[i, j], 0.0))
        if temporal:
            # each frame's cost: its distances summed over the frames within
            # half_window of it (TAG averages them; the count is the same for
            # every cluster, so the choice is the same)
            for i in range(n):
                for j in range(k):
                    window[i + 1, j] = window[i, j] + dist[i, j]
        for i in range(n):
            lo = max(0, i - half_window)
            hi = min(n, i + half_window + 1)
            best = 0
            best_cost = np.inf
            second = np.inf
            for j in range(k):
                cost = window[hi, j] - window[lo, j] if temporal else dist[i, j]
                if cost < best_cost:  # the first of equal costs, as argmin
                    second = best_cost
                    best_cost = cost
                    best = j
                elif cost < second:
                    second = cost
            new_labels[i] = best
            if k > 1:
                # the runner-up, and how much float32 rounding could move the
                # two costs: the gap in units of that error
                runner = -1
                for j in range(k):
                    if j != best:
                        cost = window[hi, j] - window[lo, j] if temporal else dist[i, j]
                        if cost == second:
                            runner = j
                            break
                error = 0.0
                first, stop = (lo, hi) if temporal else (i, i + 1)
                for m in range(first, stop):
                    error += _distance_error(x_sq[m], c_sq[best], dist[m, best])
                    error += _distance_error(x_sq[m], c_sq[runner], dist[m, runner])
                gap = (second - best_cost) / error if error > 0 else np.inf
                if gap < margin:
                    margin = gap
        updated = np.zeros((k, d), np.float64)
        counts[:] = 0
        for i in range(n):
            counts[new_labels[i]] += 1
            updated[new_labels[i]] += x[i]
        converged = True
        for j in range(k):
            if counts[j] == 0:
                updated[j] = centres[j]  # an empty cluster keeps its centre
            else:
                updated[j] /= counts[j]
            for c in range(d):
                if abs(centres[j, c] - updated[j, c]) > atol + rtol * abs(updated[j, c]):
                    converged = False
        if not temporal:
            labels[:] = new_labels  # plain k-means returns this iteration's assignment
        if converged:
            # the temporal variant returns the assignment made *before* this
            # iteration (all zeros if it converges on the first), as TAG does
            break
        centres = updated
        labels[:] = new_labels
    return labels, margin


def kmeans_scenes(features: np.ndarray, k: int, words: np.ndarray, *, temporal_window: int | None = 7,
                  n_iter: int = KMEANS_ITERATIONS, tol: float = KMEANS_TOLERANCE) -> tuple[np.ndarray, float]:
    """Cluster frames with TAG's k-means.

    Args:
        features: (n, D) float64, one row per frame in time order.
        k: clusters (1 <= k; with k > n some clusters stay empty).
        words: (>= k,) uint32 random words: the first picks the first
            centre (``word % n``), the next ``k - 1`` are uniforms
            (``(word & 0xFFFFFF) / 2**24``) for the k-means++ draws.
            :func:`torch_cpu_words` gives TAG's.
        temporal_window: TAG's temporal-coherence window in frames (TAG's
            ``window_radius``): a frame's cost for a cluster is its distance
            summed over the frames within ``temporal_window // 2`` of it.
            None: plain k-means.
        n_iter: most Lloyd iterations.
        tol: convergence: every centre coordinate moved by at most
            ``tol + 1e-5 * |coordinate|``.

    Returns:
        labels: (n,) int64 cluster of each frame.
        margin: the smallest relative gap, over every assignment made,
            between the chosen cluster's cost and the runner-up's, and over
            the k-means++ draws, the smallest distance from a draw to a
            cumulative-probability boundary. Below about 1e-5, a float32
            implementation may reach another clustering.
    """
    x = np.ascontiguousarray(features, dtype=np.float64)
    words = np.ascontiguousarray(words, dtype=np.uint32)
    if len(words) < k:
        raise InvalidInputError(f"k-means++ needs {k} random words (one per centre), got {len(words)}")
    chosen, draw_margin = _plus_plus(x, int(k), words)
    centres = np.ascontiguousarray(x[chosen])
    temporal = temporal_window is not None
    half = int(temporal_window) // 2 if temporal_window is not None else 0
    labels, margin = _lloyd(x, centres, half, temporal, int(n_iter), float(tol), _RELATIVE_TOLERANCE)
    return labels, float(min(margin, draw_margin))
