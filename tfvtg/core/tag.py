"""TAG scoring: scene proposals from temporal-coherence clustering.

TAG (Lee et al., "TAG: A Simple Yet Effective Temporal-Aware Approach for
Zero-Shot Video Temporal Grounding", BMVC 2025; github Nuetee/TAG) scores
the same frame features as TFVTG in another way. For one sentence:

1. **Similarity.** Frame score = best cosine similarity between the text and
   the frame's tokens (one vector per frame for CLIP-style features); the
   best token is remembered.
2. **Majority-vote mask.** A frame above the mask threshold stays foreground
   only when a neighbour is above it too (frame 0 keeps its own test).
   With no foreground frame left, every frame is foreground.
3. **Alignment.** The foreground scores go through a Box-Cox transform whose
   lambda in [-2, 2] minimises TAG's criterion, then are rescaled to their
   original range (or to ``alignment_gamma`` above their minimum when that
   range is narrower than ``alignment_gamma``).
4. **Time-aware smoothing.** Each foreground frame's vector (its best token,
   *as stored*, i.e. not normalised, plus its relative time t / T) is
   averaged over ``temporal_window_size`` foreground frames, edges repeated.
5. **Scenes.** k-means (k = ``kmeans_k``, at most the number of foreground
   frames, at least 2) clusters the smoothed vectors, by default with TAG's
   temporal-coherence rule (:mod:`tfvtg.core.kmeans`); every change of
   cluster along time starts a scene.
6. **Proposals.** Every pair of scene boundaries no more than
   ``prior * T`` foreground frames apart is a proposal, scored by its static
   score on the aligned scores (mean inside minus mean of the other
   foreground frames), rounded to 4 decimals as TAG does, ranked best first
   by the same (unstable) sort as TAG's torch, so that tied scores, common
   after rounding, come out in TAG's order (:func:`torch_sort_order`).
7. **Dynamic start.** A proposal's start moves back to where TFVTG's rising
   run containing it begins (the same dynamic analysis as TFVTG, on the raw
   masked curve). TAG reports this moved start together with the static end.
8. **Vote.** The ``cand_num`` best proposals of the sentence (and of each LLM
   paraphrase, when given) are re-ranked by TFVTG's IoU-weighted vote
   (stable here; TAG's numpy argsort orders equal vote sums arbitrarily).

Reproducing TAG. Given the same features, the k-means++ draws are TAG's
(:func:`tfvtg.core.kmeans.torch_cpu_words`), lambda is TAG's to the bit,
and ties sort as in TAG. Two things differ by construction: (a) TAG
clusters the features *as stored*; :class:`VideoFeatures` keep only unit
tokens, so keep the lengths with :class:`TagFeatures`; (b) TAG's float32
torch distances round differently from machine to machine, and this module
computes in float64: a clustering decided by less than one float32
rounding (``TagProposals.margin < 1``, e.g. exact ties between frames the
smoothing puts on a line) may come out otherwise in TAG.

Units: frames of the feature sequence until :func:`tag_rows`, which gives
seconds. Everything here is plain numpy/numba/scipy: one Charades query
costs a few milliseconds (``benchmarks/bench_tag.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from .config import GroundingConfig
from .errors import InvalidInputError
from .features import VideoFeatures
from .kmeans import kmeans_scenes, torch_cpu_words
from .proposals import rising_runs
from .similarity import normalise_text_embeddings

__all__ = ["TagFeatures", "TagProposals", "tag_propose", "tag_rows", "majority_vote_mask", "align_scores",
           "smooth_frames", "scene_starts", "best_token_curves", "frame_vectors", "torch_sort_order"]

_BOXCOX_BOUNDS = (-2, 2)   # TAG's lambda range (ints, as TAG passes them to scipy)
_BOXCOX_SHIFT = 1e-6       # added after shifting non-positive scores to 0


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class TagFeatures(VideoFeatures):
    """:class:`VideoFeatures` that also keep every token's length before
    normalisation, ``token_norms`` ((T, Q) float32).

    TAG clusters the frame vectors *as stored* (its smoothing and k-means see
    the raw token values, not unit vectors), so reproducing TAG needs those
    lengths; plain :class:`VideoFeatures` keep only the unit tokens, and TAG
    scoring on them clusters unit vectors instead (a different, equally
    valid clustering). Same arguments as :class:`VideoFeatures`.
    """

    __slots__ = ("token_norms",)

    def __init__(self, array: Any, duration: float, fps: float | None = None, **kwargs: Any):
        norms = _token_norms(array)  # before normalising: that may happen in place
        super().__init__(array, duration, fps, **kwargs)
        t, q, _ = self.shape
        self.token_norms = norms.reshape(t, q) if norms is not None else np.ones((t, q), np.float32)


def _host_tokens(features: VideoFeatures) -> np.ndarray:
    """The tokens as a numpy array: TAG's steps are cheap next to a copy of a
    torch tensor to the host (done with the tensor's own methods: core does
    not import torch)."""
    tokens = features.tokens
    if _is_torch(tokens):
        return tokens.detach().float().cpu().numpy()
    return np.asarray(tokens)


def _token_norms(array: Any) -> np.ndarray | None:
    # None when the array is malformed: VideoFeatures then says what is wrong
    try:
        if _is_torch(array):  # the tensor's own methods: core does not import torch
            if array.ndim not in (2, 3) or array.is_complex():
                return None
            return array.detach().float().norm(dim=-1).cpu().numpy().astype(np.float32)
        arr = np.asarray(array)
        if arr.ndim not in (2, 3) or arr.dtype.kind not in "fiu":
            return None
        flat = arr.reshape(-1, arr.shape[-1]).astype(np.float32)
        return np.sqrt(np.einsum("nd,nd->n", flat, flat)).reshape(arr.shape[:-1])
    except (TypeError, ValueError, RuntimeError):
        return None


# -- stage 1: similarity with the best token ---------------------------------
def best_token_curves(features: VideoFeatures, text_embeddings: Any) -> tuple[np.ndarray, np.ndarray]:
    """Similarity curves and the token that gives each frame's score.

    Args:
        features: (T, Q, D) unit tokens (Q = 1 for one vector per frame).
        text_embeddings: (n, D) raw text embeddings (normalised here).

    Returns:
        curves: (n, T) float32, max over tokens of the cosine similarity.
        best: (n, T) int64, the token index that gives it.
    """
    t, q, d = features.shape
    text = normalise_text_embeddings(text_embeddings, d)
    flat = _host_tokens(features).reshape(t * q, d)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    curves = np.empty((text.shape[0], t), np.float32)
    best = np.empty((text.shape[0], t), np.int64)
    for i, vec in enumerate(text):
        # one matrix-vector product per text (BLAS gemv; a (D, n) right-hand
        # side would take numpy's slow path), then max and argmax over tokens
        sims = (flat @ vec).reshape(t, q)
        best[i] = sims.argmax(axis=1)
        curves[i] = sims[np.arange(t), best[i]]
    return curves, best


def frame_vectors(features: VideoFeatures, best: np.ndarray) -> np.ndarray:
    """(T, D) float64: each frame's chosen token, at its stored length when
    the features keep ``token_norms`` (:class:`TagFeatures`), else the unit token."""
    t = features.num_frames
    frames = np.arange(t)
    vectors = np.asarray(_host_tokens(features)[frames, best], dtype=np.float64)
    norms = getattr(features, "token_norms", None)
    if norms is not None:
        # float32 like TAG's features: stored value = unit token * length
        vectors = (vectors.astype(np.float32) * norms[frames, best][:, None]).astype(np.float64)
    return vectors


# -- stage 2: the mask ----------------------------------------------------------
def majority_vote_mask(above: np.ndarray) -> np.ndarray:
    """TAG's foreground mask from the frames above the threshold ((T,) bool).

    Frame i >= 1 stays foreground when it and at least one neighbour are
    above the threshold (frames past the end count as below); frame 0 keeps
    its own test, as TAG's loop never revisits it. Videos shorter than 3
    frames keep the test as it is. Returns (T,) bool, all True when nothing
    survives (TAG then uses every frame).
    """
    above = np.asarray(above, dtype=bool)
    mask = above.copy()
    if len(above) >= 3:
        left = np.zeros_like(above)
        left[1:] = above[:-1]
        right = np.zeros_like(above)
        right[:-1] = above[1:]
        mask[1:] = (above & (left | right))[1:]
    if not mask.any():
        mask[:] = True
    return mask


# -- stage 3: Box-Cox alignment ---------------------------------------------
def _boxcox(x: np.ndarray, lam: Any) -> np.ndarray:
    return np.log(x) if lam == 0 else (x ** lam - 1) / lam


class _Criterion:
    """TAG's objective for lambda (not the textbook Box-Cox likelihood):
    ``-sum(log|y|) + n/2 * log(var(y, ddof=1))`` for ``y = boxcox(x, lambda)``.

    scipy's bounded search is run on exactly the numbers TAG's numpy code
    produces (the same ufuncs in the same order, float64), so it takes the
    same steps and lands on the same lambda; the buffers only save the
    allocations and Python layers of ``np.var`` on every evaluation.
    """

    def __init__(self, data: np.ndarray):
        self.data = data                  # float32, as TAG holds the scores
        self.x = data.astype(np.float64)  # TAG's float32 ** float64 lambda computes on this
        self.n = len(data)
        self.y = np.empty_like(self.x)
        self.work = np.empty_like(self.x)

    def __call__(self, lam: Any) -> Any:
        x, y, work, n = self.x, self.y, self.work, self.n
        if lam == 0:  # TAG's log branch stays float32
            y = np.log(self.data)
            work = np.empty_like(y)
        else:
            np.power(x, lam, out=y)
            np.subtract(y, 1, out=y)
            np.true_divide(y, lam, out=y)
        np.absolute(y, out=work)
        np.log(work, out=work)
        log_sum = np.add.reduce(work)
        # np.var(y, ddof=1): mean by numpy's pairwise sum over n, squared
        # deviations summed the same way, over n - 1
        mean = np.add.reduce(y, keepdims=True) / n
        np.subtract(y, mean, out=work)
        np.multiply(work, work, out=work)
        var = np.add.reduce(work) / (n - 1)
        return -log_sum + 0.5 * n * np.log(var)


def align_scores(scores: np.ndarray, gamma: float) -> np.ndarray:
    """TAG's alignment of the foreground scores.

    Args:
        scores: (n,) float32 similarity of the foreground frames.
        gamma: the smallest range of the result (TAG's ``gamma``).

    Returns:
        (n,) float64 aligned scores: the Box-Cox transform with TAG's
        lambda, mapped linearly onto [min, max] of the input, or onto
        [min, min + gamma] when the input spans less than gamma. With fewer
        than two distinct values (where TAG divides by zero) the scores are
        returned unchanged.
    """
    data = np.asarray(scores, dtype=np.float32)
    if data.size < 2 or data.min() == data.max():
        return data.astype(np.float64)
    if np.any(data <= 0):
        data = data + abs(data.min()) + _BOXCOX_SHIFT  # float32, as TAG
    from scipy.optimize import minimize_scalar  # here: scipy.optimize takes 0.2 s to import
    lam = minimize_scalar(_Criterion(data), bounds=_BOXCOX_BOUNDS, method="bounded").x
    y = _boxcox(data, lam)
    low, high = data.min(), data.max()  # float32 scalars
    y = (y - y.min()) / (y.max() - y.min())
    if high - low > np.float32(gamma):
        return y * (high - low) + low
    return y * gamma + low


# -- stage 4: time-aware smoothing ----------------------------------------------
@njit(cache=True)
def smooth_frames(x: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` (odd) consecutive rows of (n, D) ``x``,
    the first and last rows repeated past the ends. Returns (n, D) float64."""
    n, d = x.shape
    half = window // 2
    prefix = np.zeros((n + 1, d), np.float64)
    for i in range(n):
        for j in range(d):
            prefix[i + 1, j] = prefix[i, j] + x[i, j]
    out = np.empty((n, d), np.float64)
    for i in range(n):
        lo = max(0, i - half)
        hi = min(n, i + half + 1)
        before = lo - (i - half)       # window rows left of the first: copies of row 0
        after = (i + half + 1) - hi    # right of the last: copies of row n - 1
        for j in range(d):
            out[i, j] = (prefix[hi, j] - prefix[lo, j] + before * x[0, j] + after * x[n - 1, j]) / window
    return out


# -- stages 5-6: scenes and proposals ---------------------------------------------
def scene_starts(labels: np.ndarray) -> np.ndarray:
    """Scene boundaries from per-frame cluster labels: 0, every index where
    the label changes, and n (one past the last frame). (m + 1,) int64."""
    labels = np.asarray(labels)
    changes = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    return np.concatenate(([0], changes, [len(labels)])).astype(np.int64)


@njit(cache=True)
def _scene_pairs(starts: np.ndarray, cum: np.ndarray, longest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # every [starts[i], starts[j]) with i < j, in TAG's order (i, then j),
    # whose length in foreground frames is at most `longest`, and its static
    # score with TAG's formula on the prefix sums of the aligned scores
    m = starts.shape[0]
    n = cum.shape[0]
    count = 0
    for i in range(m):
        for j in range(i + 1, m):
            if starts[j] - starts[i] <= longest:
                count += 1
    first = np.empty(count, np.int64)
    last = np.empty(count, np.int64)
    score = np.empty(count, np.float64)
    p = 0
    for i in range(m):
        for j in range(i + 1, m):
            a = starts[i]
            b = starts[j]
            if b - a > longest:
                continue
            size = b - a
            inner = cum[b - 1] if a == 0 else cum[b - 1] - cum[a - 1]
            if size != n:
                outer = cum[n - 1] - inner
                score[p] = inner / size - outer / (n - size)
            else:
                score[p] = inner / size
            first[p] = a
            last[p] = b
            p += 1
    return first, last, score


# -- TAG's sort --------------------------------------------------------------------
# TAG ranks the rounded scores with torch's CPU sort (descending, not stable),
# which is libstdc++'s std::sort: introsort (median-of-three quicksort down to
# 16 elements, heapsort past a depth limit) and a final insertion sort. Tied
# scores are common after rounding to 4 decimals and the cut at cand_num falls
# among them, so the kernels below run the same algorithm to put ties in
# TAG's order. Comparison: a before b when a > b (NaN first), as torch's.
_INSERTION_LIMIT = 16


@njit(cache=True)
def _before(x: float, y: float) -> bool:
    return (np.isnan(x) and not np.isnan(y)) or x > y


@njit(cache=True)
def _swap(key: np.ndarray, idx: np.ndarray, i: int, j: int) -> None:
    key[i], key[j] = key[j], key[i]
    idx[i], idx[j] = idx[j], idx[i]


@njit(cache=True)
def _sift(key: np.ndarray, idx: np.ndarray, first: int, hole: int, length: int, v_key: float, v_idx: int) -> None:
    # libstdc++'s __adjust_heap followed by __push_heap, on [first, first + length)
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if _before(key[first + child], key[first + child - 1]):
            child -= 1
        key[first + hole] = key[first + child]
        idx[first + hole] = idx[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        key[first + hole] = key[first + child - 1]
        idx[first + hole] = idx[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and _before(key[first + parent], v_key):
        key[first + hole] = key[first + parent]
        idx[first + hole] = idx[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    key[first + hole] = v_key
    idx[first + hole] = v_idx


@njit(cache=True)
def _heap_sort(key: np.ndarray, idx: np.ndarray, first: int, last: int) -> None:
    length = last - first
    if length < 2:
        return
    parent = (length - 2) // 2
    while True:
        _sift(key, idx, first, parent, length, key[first + parent], idx[first + parent])
        if parent == 0:
            break
        parent -= 1
    while last - first > 1:
        last -= 1
        v_key, v_idx = key[last], idx[last]
        key[last], idx[last] = key[first], idx[first]
        _sift(key, idx, first, 0, last - first, v_key, v_idx)


@njit(cache=True)
def _linear_insert(key: np.ndarray, idx: np.ndarray, last: int) -> None:
    v_key, v_idx = key[last], idx[last]
    prev = last - 1
    while _before(v_key, key[prev]):
        key[last], idx[last] = key[prev], idx[prev]
        last = prev
        prev -= 1
    key[last], idx[last] = v_key, v_idx


@njit(cache=True)
def _insertion_sort(key: np.ndarray, idx: np.ndarray, first: int, last: int) -> None:
    for i in range(first + 1, last):
        if _before(key[i], key[first]):
            v_key, v_idx = key[i], idx[i]
            for j in range(i, first, -1):
                key[j], idx[j] = key[j - 1], idx[j - 1]
            key[first], idx[first] = v_key, v_idx
        else:
            _linear_insert(key, idx, i)


@njit(cache=True)
def _introsort(key: np.ndarray, idx: np.ndarray, depth_limit: int) -> None:
    # libstdc++ recurses into the right part and loops on the left one; the
    # parts are disjoint, so a stack of pending ranges gives the same result
    # (and numba cannot cache recursive functions)
    stack = [(0, int(key.shape[0]), depth_limit)]
    while stack:
        first, last, depth = stack.pop()
        while last - first > _INSERTION_LIMIT:
            if depth == 0:
                _heap_sort(key, idx, first, last)
                break
            depth -= 1
            # median of (first + 1, middle, last - 1) moved to first, then an
            # unguarded Hoare partition of [first + 1, last) around it
            a, b, c = first + 1, first + (last - first) // 2, last - 1
            if _before(key[a], key[b]):
                if _before(key[b], key[c]):
                    _swap(key, idx, first, b)
                elif _before(key[a], key[c]):
                    _swap(key, idx, first, c)
                else:
                    _swap(key, idx, first, a)
            elif _before(key[a], key[c]):
                _swap(key, idx, first, a)
            elif _before(key[b], key[c]):
                _swap(key, idx, first, c)
            else:
                _swap(key, idx, first, b)
            lo, hi = first + 1, last
            while True:
                while _before(key[lo], key[first]):
                    lo += 1
                hi -= 1
                while _before(key[first], key[hi]):
                    hi -= 1
                if not lo < hi:
                    break
                _swap(key, idx, lo, hi)
                lo += 1
            stack.append((lo, last, depth))
            last = lo


@njit(cache=True)
def torch_sort_order(values: np.ndarray) -> np.ndarray:
    """The permutation torch's CPU ``sort(descending=True)`` gives (1-D
    float32 ``values``): libstdc++'s introsort, so equal values come out in
    torch's (not stable) order. (n,) int64."""
    n = values.shape[0]
    key = values.copy()
    idx = np.arange(n)
    if n > 1:
        depth = 0
        m = n
        while m > 1:
            m >>= 1
            depth += 1
        _introsort(key, idx, 2 * depth)
        if n > _INSERTION_LIMIT:
            _insertion_sort(key, idx, 0, _INSERTION_LIMIT)
            for i in range(_INSERTION_LIMIT, n):
                _linear_insert(key, idx, i)
        else:
            _insertion_sort(key, idx, 0, n)
    return idx


@dataclass(frozen=True)
class TagProposals:
    """One sentence's TAG proposals, best static score first (frames).

    Attributes:
        start: (k,) int64, first frame after the dynamic move (reported start).
        end: (k,) int64, one past the last frame (a scene boundary, or T).
        scene_start: (k,) int64, the scene boundary the proposal began at.
        score: (k,) float32, static score on the aligned curve, rounded to 4
            decimals, in TAG's order (equal values as torch's sort leaves
            them: :func:`torch_sort_order`).
        confidence: (k,) float32, score / best score (TAG's confidence).
        num_frames: T.
        foreground: (T,) bool, the majority-vote mask.
        scenes: (m + 1,) int64 scene boundaries in frames (the last is T).
        margin: how close the clustering came to another outcome (see
            :func:`tfvtg.core.kmeans.kmeans_scenes`); inf without clustering.
    """

    start: np.ndarray
    end: np.ndarray
    scene_start: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    num_frames: int
    foreground: np.ndarray
    scenes: np.ndarray
    margin: float

    def __len__(self) -> int:
        return int(self.start.shape[0])


def tag_propose(curve: np.ndarray, vectors: np.ndarray, config: GroundingConfig, *, mask_threshold: float,
                words: np.ndarray | None = None) -> TagProposals:
    """TAG's proposals for one similarity curve.

    Args:
        curve: (T,) float32 similarity of each frame (best token).
        vectors: (T, D) the frame vectors to cluster (each frame's best token,
            as stored: see :func:`frame_vectors`).
        config: ``stride``, ``gaussian_sigma``, ``dynamic_threshold`` (the
            dynamic start) and the TAG fields (``alignment_gamma``,
            ``kmeans_k``, ``tc_kmeans``, ``window_radius``, ``prior``,
            ``temporal_window_size``, ``kmeans_seed``).
        mask_threshold: similarity a frame must exceed to be foreground.
        words: random words for k-means++ (default: torch's CPU generator
            after ``manual_seed(config.kmeans_seed)``, as TAG).

    Returns:
        Every proposal, best static score first.
    """
    curve = np.ascontiguousarray(curve, dtype=np.float32)
    t = curve.shape[0]
    if curve.ndim != 1 or t < 2:
        raise InvalidInputError(f"a similarity curve must be 1-D with at least 2 frames, got shape {curve.shape}")
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != t:
        raise InvalidInputError(f"vectors must be (T, D) with T={t} frames, got shape {vectors.shape}")
    above = curve > np.float32(mask_threshold)
    mask = majority_vote_mask(above)
    if t < 3 and not above.any():
        above = mask  # TAG's short-video mask is the same tensor: it becomes all True too
    kept = np.flatnonzero(mask)
    n = kept.shape[0]
    aligned = align_scores(curve[kept], config.alignment_gamma)

    points = np.empty((n, vectors.shape[1] + 1), np.float64)
    points[:, :-1] = vectors[kept]
    points[:, -1] = kept.astype(np.float32) / np.float32(t)  # TAG's time feature, float32
    points = smooth_frames(points, config.temporal_window_size)
    k = min(config.kmeans_k, max(2, n))
    if n < 2:
        labels, margin = np.zeros(n, np.int64), np.inf  # one frame: one scene (TAG fails here)
    else:
        draws = torch_cpu_words(config.kmeans_seed, k) if words is None else words
        labels, margin = kmeans_scenes(points, k, draws,
                                       temporal_window=config.window_radius if config.tc_kmeans else None)
    starts = scene_starts(labels)
    first, last, static = _scene_pairs(starts, np.cumsum(aligned), float(t) * config.prior)
    if len(first):
        # TAG rounds each Python float to 4 decimals (round-half-even on the
        # exact binary value), then holds them as float32
        score = np.array([round(v, 4) for v in static.tolist()], dtype=np.float32)
        begin = kept[first]
        end = np.where(last < n, kept[np.minimum(last, n - 1)], t)
    else:  # no pair short enough: the whole video, score 1 (TAG's fallback)
        score = np.ones(1, np.float32)
        begin = np.zeros(1, np.int64)
        end = np.full(1, t, np.int64)
    order = torch_sort_order(score)
    score, begin, end = score[order], begin[order], end[order]

    masked = np.where(above, curve, np.float32(0.0)).astype(np.float32)
    run_start, _ = rising_runs(masked, above, max(min(config.stride, t // 2), 1), config.gaussian_sigma,
                               config.dynamic_threshold)
    best = score.max()
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = (score / best).astype(np.float32)
    return TagProposals(start=run_start[begin], end=end.astype(np.int64), scene_start=begin.astype(np.int64),
                        score=score, confidence=confidence, num_frames=t, foreground=mask,
                        scenes=np.append(kept[starts[:-1]], t).astype(np.int64), margin=float(margin))


def tag_rows(proposals: TagProposals, features: VideoFeatures, count: int) -> np.ndarray:
    """(min(count, k), 3) ``[start, end, confidence]`` rows in seconds: the
    ``count`` best proposals (TAG's ``cand_num``), ready for the vote."""
    top = slice(0, count)
    rows = np.empty((len(proposals.start[top]), 3))
    rows[:, 0] = features.frames_to_seconds(proposals.start[top])
    rows[:, 1] = features.frames_to_seconds(proposals.end[top])
    rows[:, 2] = proposals.confidence[top]
    return rows
