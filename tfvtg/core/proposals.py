"""Stage 3: proposals from one similarity curve.

Every position in this module is a frame index of the feature sequence
(0..T); seconds appear only in :mod:`tfvtg.grounder`.

The published method scores a window [k, k + L) by

* its **static score**: mean similarity inside minus mean similarity of the
  foreground frames (those above the mask threshold) outside, and
* its **dynamic score**: how steadily the Gaussian-smoothed curve rises just
  before k. The proposal starts where that rising run begins
  (``rising_run_start[k]``) and ends at the window's end.

Proposals are ranked, suppressed by temporal IoU (greedy NMS) and the best
``top_k`` kept. The hot loops are numba kernels over plain arrays. No list
of windows is ever built, even for hour-long videos where the reference
enumerates millions of them: a short curve keeps one score and one flag per
window (at most 4,096 windows), a long one a bound per block of 256 window
starts of each length (about 10 MB for six hours).

Numerics: the foreground scores are float32 values in (0.2, 1], so float64
prefix sums of them are exact. Windows that hold the same foreground frames
therefore get bit-identical static scores, and the ranking of mathematically
tied windows is decided by enumeration order alone (shorter windows first,
then earlier starts) rather than by rounding noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ._reference_numerics import (
    NAN_DROP,
    NAN_FIRST,
    _float32_static_score,
    _pairwise_sum_f32,
    _running_sum_f32,
    cancellation_rule,
)
from .config import DEFAULT_MASK_THRESHOLD, GroundingConfig
from .errors import InvalidInputError
from .features import seconds_of_frames

__all__ = ["Proposals", "propose", "proposal_table", "rising_runs", "static_score", "window_lengths", "cancellation_rule",
           "NAN_FIRST", "NAN_SAFE", "NAN_DROP"]

# What to do with a window that holds every foreground frame (nothing outside
# to average). Plain ints because numba takes them.
# NAN_FIRST (0) and NAN_DROP (2): the reference's two outcomes, see _reference_numerics
NAN_SAFE = 1        # outside mean taken as 0: a finite score (config.nan_safe)


@dataclass(frozen=True)
class Proposals:
    """Ranked proposals of one curve, best first (frame units).

    Attributes:
        start: (k,) int, first frame of each proposal (the rising run start).
        end: (k,) int, one past the last frame (the window end).
        window_start: (k,) int, first frame of the static window.
        score: (k,) float64, ranking score (NaN for the reference's
            no-foreground-outside windows, which rank first).
        tied: (k,) bool, True where another window not suppressed by the
            better ones had exactly the same score: from that rank on, the
            reference's order is arbitrary (its sort is unstable).
        num_frames: T.
    """

    start: np.ndarray
    end: np.ndarray
    window_start: np.ndarray
    score: np.ndarray
    tied: np.ndarray
    num_frames: int

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def confidence(self) -> np.ndarray:
        """Scores divided by the best (first) one: the reference's confidence.
        NaN everywhere when the best is NaN, as in the published code."""
        if len(self) == 0:
            return np.zeros(0)
        best = self.score[0]
        if best != 0:  # NaN included: NaN / NaN is quietly NaN
            return self.score / best
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.score / best

    def normalised_scores(self) -> np.ndarray:
        """Finite scores in (-inf, 1], 1 for the best and non-increasing with
        rank: ``1 + (score - best) / |best|``, which is the reference's
        ``score / best`` whenever the best score is positive. A zero best
        divides by the spread of the scores instead; non-finite scores
        (only in the reference's NaN rule) become the lowest."""
        if len(self) == 0:
            return np.zeros(0)
        score = np.where(np.isfinite(self.score), self.score, np.nan)
        finite = score[np.isfinite(score)]
        if finite.size == 0:
            return np.zeros(len(self))
        best = finite.max()
        scale = abs(best) if abs(best) > 1e-12 else max(float(best - finite.min()), 1.0)
        out = 1.0 + (score - best) / scale
        out[~np.isfinite(out)] = out[np.isfinite(out)].min() if np.isfinite(out).any() else 0.0
        # ranks come from the NMS order; keep the scores from rising along it
        return np.minimum.accumulate(out)


def window_lengths(num_frames: int, config: GroundingConfig) -> tuple[int, int]:
    """(stride, longest window) in frames after the reference's adjustments:
    the stride shrinks to T // 2 on short videos; the longest window is
    int(T * max_stride_factor)."""
    stride = min(config.stride, num_frames // 2)
    longest = min(num_frames, int(num_frames * config.max_stride_factor))
    return max(stride, 1), longest


@njit(cache=True)
def _gaussian_taps(stride: int, sigma: float) -> np.ndarray:
    # The reference picks the kernel from the stride: one unit tap below a
    # stride of 3, otherwise the normal pdf sampled at -(g//2)..g//2 with
    # g = min(stride - 2, 3) (not renormalised), computed in float64 and
    # rounded to float32.
    if stride < 3:
        return np.ones(1, np.float32)
    g = min(stride - 2, 3)
    half = g // 2
    taps = np.empty(2 * half + 1, np.float32)
    norm = 1.0 / (np.sqrt(2.0 * np.pi) * sigma)
    for i in range(-half, half + 1):
        taps[i + half] = np.float32(np.exp(-(i * i) / (2.0 * sigma * sigma)) * norm)
    return taps


@njit(cache=True)
def rising_runs(masked_curve: np.ndarray, foreground: np.ndarray, stride: int, sigma: float,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rising-transition analysis of a masked curve.

    Args:
        masked_curve: (T,) float32, similarity with background frames set to 0.
        foreground: (T,) bool, frames above the mask threshold.
        stride: window stride in frames (chooses the smoothing kernel).
        sigma: Gaussian sigma in frames.
        threshold: the 3-tap rising test's threshold.

    Returns:
        rising_run_start: (T,) int64, for each frame k the frame where the
            rising run that contains k began (k itself when k is not rising).
        dynamic_score: (T,) float32, the accumulated rise of that run up to k.
    """
    t = masked_curve.shape[0]
    taps = _gaussian_taps(stride, sigma)
    ntaps = taps.shape[0]
    pad_left = ntaps // 2
    n_smooth = t - ntaps + 1
    # first differences of the smoothed curve, placed as the reference pads
    # them (ntaps // 2 zeros on the left), zero on background frames
    rises = np.zeros(t, np.float32)
    prev = np.float32(0.0)
    for i in range(n_smooth):
        acc = np.float32(0.0)
        for j in range(ntaps):
            acc = np.float32(acc + taps[j] * masked_curve[i + j])
        if i > 0 and foreground[pad_left + i - 1]:
            rises[pad_left + i - 1] = np.float32(acc - prev)
        prev = acc
    run_start = np.empty(t, np.int64)
    dynamic = np.empty(t, np.float32)
    th = np.float32(threshold)
    three = np.float32(3.0)
    two = np.float32(2.0)
    f1 = np.float32(0.0)
    f2 = np.float32(0.0)
    f3 = np.float32(0.0)
    start = 0
    score = np.float32(0.0)
    for i in range(t):
        f3 = f2
        f2 = f1
        f1 = rises[i]
        a = three * f1
        b = np.float32(two * f1 + f2)
        c = np.float32(np.float32(f1 + f2) + f3)
        if a > th or b > th or c > th:
            score = np.float32(score + max(a, b, c))
        else:
            start = i
            score = np.float32(0.0)
        run_start[i] = start
        dynamic[i] = score
    return run_start, dynamic


@njit(cache=True)
def static_score(fg_sum: np.ndarray, fg_count: np.ndarray, k: int, length: int, nan_rule: int) -> float:
    """Static score of the window [k, k + length) (frames).

    ``fg_sum``/``fg_count`` are (T + 1,) prefix sums of the masked curve and of
    the foreground indicator. Returns inside mean minus the mean of the
    foreground frames outside; with no foreground outside, NaN (reference
    rule) or the inside mean (nan-safe rule). Returns -inf for a window that
    cannot be scored at all (no foreground anywhere), which callers drop.
    """
    t = fg_sum.shape[0] - 1
    inner_sum = fg_sum[k + length] - fg_sum[k]
    outer_num = fg_count[t] - (fg_count[k + length] - fg_count[k])
    if outer_num == 0:
        if fg_count[t] == 0:
            return -np.inf
        if nan_rule == NAN_FIRST:
            return np.nan
        if nan_rule == NAN_DROP:
            return -np.inf
        return inner_sum / length
    outer_sum = fg_sum[t] - inner_sum
    return inner_sum / length - outer_sum / outer_num


@njit(cache=True)
def _iou_above(a0, a1, s, e, tf, th):
    # IoU of [a0, a1) (already divided by T in float32) and [s, e) above th,
    # in float32 on positions divided by T, as the reference computes it, so
    # borderline overlaps are decided the same way
    b0 = np.float32(s) / tf
    b1 = np.float32(e) / tf
    inter = np.float32(min(a1, b1) - max(a0, b0))
    union = np.float32(max(a1, b1) - min(a0, b0))
    if inter < 0:
        inter = np.float32(0.0)
    return union > 0 and np.float32(inter / union) > th


@njit(cache=True)
def _overlaps(s: int, e: int, sel_s: np.ndarray, sel_e: np.ndarray, n_sel: int, t: int,
              iou_threshold: float) -> bool:
    # does [s, e) overlap any kept window beyond the NMS threshold
    tf = np.float32(t)
    a0 = np.float32(s) / tf
    a1 = np.float32(e) / tf
    th = np.float32(iou_threshold)
    for i in range(n_sel):
        if _iou_above(a0, a1, sel_s[i], sel_e[i], tf, th):
            return True
    return False


# window starts per block of the later NMS rounds' bounds (see _select)
_BLOCK = 256


# how far above the NMS threshold a block's end windows must overlap a kept
# one before the block is skipped unread: far more than float32 rounding of
# the IoU (about 1e-7), so no borderline window is decided differently
_SUPPRESSION_MARGIN = 1e-4


@njit(cache=True)
def _block_suppressed(k_first, k_last, length, sel_s, sel_e, n_sel, iou_threshold):
    """True when one kept window suppresses every window [k, k + length) for
    k in [k_first, k_last]. The IoU of a sliding window with a fixed one
    rises, stays and falls with k, so its minimum over the block is at an
    end: both ends above the threshold (by a margin) means all are."""
    for i in range(n_sel):
        a, e = sel_s[i], sel_e[i]
        worst = 1.0
        for k in (k_first, k_last):
            inter = min(k + length, e) - max(k, a)
            union = max(k + length, e) - min(k, a)
            iou = inter / union if inter > 0 and union > 0 else 0.0
            worst = min(worst, iou)
        if worst > iou_threshold + _SUPPRESSION_MARGIN:
            return True
    return False


@njit(cache=True)
def _raise_floor(order, first_bound, block_best, block_nan, length_best, length_nan, block, stride, step, t, fg_sum,
                 fg_count, nan_rule, sel_s, sel_e, n_sel, iou_threshold):
    """The best finite score of an unsuppressed window in this round (-inf
    when none): the round's answer scores exactly this much, or is NaN.

    Best-first over the blocks of window starts, in the order of their
    first-round bounds (``order``, ``first_bound`` sorted with it, highest
    first). Each block read here gets its bound replaced by its best
    unsuppressed score (``block_best``, ``block_nan``): suppression only
    grows, so that stays an upper bound in every later round, and a block
    next to a kept window is not read again for a stale first-round bound.
    The length of a block read gets its bound (``length_best``,
    ``length_nan``) taken again from its blocks.
    The walk stops at the first block whose first-round bound cannot beat
    the floor.
    """
    n_blocks = block_best.shape[1]
    floor = -np.inf
    for i in range(order.shape[0]):
        if first_bound[i] <= floor:
            break
        li = order[i] // n_blocks
        b = order[i] % n_blocks
        if block_best[li, b] <= floor:
            continue
        length = stride + li * step
        k_end = t - length + 1
        first = b * block
        last = min(first + block, k_end) - 1
        free_best = -np.inf
        free_nan = False
        if not _block_suppressed(first, last, length, sel_s, sel_e, n_sel, iou_threshold):
            for k in range(first, last + 1):
                sc = static_score(fg_sum, fg_count, k, length, nan_rule)
                if np.isnan(sc):
                    if not free_nan and not _overlaps(k, k + length, sel_s, sel_e, n_sel, t, iou_threshold):
                        free_nan = True
                elif sc > free_best and not _overlaps(k, k + length, sel_s, sel_e, n_sel, t, iou_threshold):
                    free_best = sc
        block_best[li, b] = free_best
        block_nan[li, b] = free_nan
        # the length's bound, from its refined blocks (only lengths read here change)
        length_best[li] = block_best[li].max()
        length_nan[li] = block_nan[li].any()
        if free_best > floor:
            floor = free_best
    return floor


# Up to this many windows a curve's NMS keeps every window's score and a
# suppressed flag (updated against each newly kept window), so a round reads
# two arrays instead of scoring every window and testing it against every
# kept one: a Charades clip's ten rounds cost 5 us instead of 17. Above it
# (a long video's millions of windows) the flags would cost a pass per
# round; block bounds prune the rounds instead.
_DENSE_MAX_WINDOWS = 4096


@njit(cache=True)
def _window_scores(fg_sum, fg_count, length, k_end, nan_rule, out):
    # static_score of the windows [k, k + length), k < k_end, into out[:k_end]:
    # the same float64 operations, branch-free so the loop vectorises. Not one
    # function with static_score: the scans call that one per window, and
    # there its early returns are faster (the hour's proposals: 4.0 ms
    # against 4.9 with this select form). The property test holds them equal.
    t = fg_sum.shape[0] - 1
    total_sum = fg_sum[t]
    total_num = fg_count[t]
    if total_num == 0:
        out[:k_end] = -np.inf
        return
    special = np.nan if nan_rule == NAN_FIRST else -np.inf
    for k in range(k_end):
        inner_sum = fg_sum[k + length] - fg_sum[k]
        outer_num = total_num - (fg_count[k + length] - fg_count[k])
        inner_mean = inner_sum / length
        sc = inner_mean - (total_sum - inner_sum) / max(outer_num, 1)
        if outer_num == 0:
            sc = inner_mean if nan_rule == NAN_SAFE else special
        out[k] = sc


@njit(cache=True)
def _max_of_numbers(values, first, stop):
    # (max of values[first:stop] ignoring NaN (-inf when none), whether a NaN
    # is among them): eight independent running maxima, so the loop is not
    # bound by one chain of compares (LLVM does not vectorise a float max
    # reduction without fast-math)
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = -np.inf
    nan = False
    k = first
    while k + 8 <= stop:
        v0 = values[k]
        v1 = values[k + 1]
        v2 = values[k + 2]
        v3 = values[k + 3]
        v4 = values[k + 4]
        v5 = values[k + 5]
        v6 = values[k + 6]
        v7 = values[k + 7]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        m4 = v4 if v4 > m4 else m4
        m5 = v5 if v5 > m5 else m5
        m6 = v6 if v6 > m6 else m6
        m7 = v7 if v7 > m7 else m7
        nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3) | (v4 != v4) | (v5 != v5) | (v6 != v6) | (v7 != v7)
        k += 8
    while k < stop:
        v0 = values[k]
        m0 = v0 if v0 > m0 else m0
        nan |= v0 != v0
        k += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return (m4 if m4 > m0 else m0), nan


@njit(cache=True)
def _block_bounds(fg_sum, fg_count, stride, step, n_lengths, block, nan_rule, block_best, block_nan):
    # every (length, block of window starts): the best finite score and
    # whether a NaN score is in it (the reference's rule for windows that
    # hold every foreground frame, or sums that overflowed on a curve with
    # infinite values); the scores of a length come from one vectorised pass
    t = fg_sum.shape[0] - 1
    if fg_count[t] == 0:  # nothing can be scored: every bound stays -inf
        return
    buf = np.empty(t, np.float64)
    n_blocks = block_best.shape[1]
    for li in range(n_lengths):
        length = stride + li * step
        k_end = t - length + 1
        _window_scores(fg_sum, fg_count, length, k_end, nan_rule, buf)
        for b in range(n_blocks):
            first = b * block
            if first >= k_end:
                break
            best, nan = _max_of_numbers(buf, first, min(first + block, k_end))
            block_best[li, b] = best
            block_nan[li, b] = nan


@njit(cache=True)
def _select(masked_curve, foreground, stride, longest, top_k, iou_threshold, nan_rule, paper, sigma,
            dyn_threshold, prune_lengths=True, block=_BLOCK, dense_max=_DENSE_MAX_WINDOWS):
    t = masked_curve.shape[0]
    run_start, dynamic = rising_runs(masked_curve, foreground, stride, sigma, dyn_threshold)
    fg_sum = np.zeros(t + 1, np.float64)
    fg_count = np.zeros(t + 1, np.int64)
    total_f32 = np.float32(0.0)
    for i in range(t):
        fg_sum[i + 1] = fg_sum[i] + np.float64(masked_curve[i])
        fg_count[i + 1] = fg_count[i] + (1 if foreground[i] else 0)
        total_f32 = np.float32(total_f32 + masked_curve[i])
    # exact ties between windows that hold foreground are ordered by the
    # reference's float32 score (reference scoring only)
    break_ties = not paper and nan_rule != NAN_SAFE
    # reference: lengths stride, 2*stride, ... <= longest; paper: every length
    step = 1 if paper else stride
    sel_s = np.empty(top_k, np.int64)     # span used for suppression
    sel_e = np.empty(top_k, np.int64)
    out_start = np.empty(top_k, np.int64)
    out_win = np.empty(top_k, np.int64)
    out_score = np.empty(top_k, np.float64)
    out_tied = np.zeros(top_k, np.bool_)
    n_sel = 0
    n_lengths = (longest - stride) // step + 1 if longest >= stride else 0
    n_windows = 0
    for li in range(n_lengths):
        n_windows += t - (stride + li * step) + 1
    # Short curves (dense): every window's static score computed once, and a
    # flag per window set when a kept window suppresses it. A suppressed
    # window can neither win nor make a tie, so a round skips it unread.
    dense = n_windows <= dense_max
    scores = np.empty(n_windows if dense else 0, np.float64)
    suppressed = np.zeros(n_windows if dense else 0, np.bool_)
    if dense:
        offset = 0
        for li in range(n_lengths):
            length = stride + li * step
            _window_scores(fg_sum, fg_count, length, t - length + 1, nan_rule, scores[offset:])
            offset += t - length + 1
    # Long curves: the best score of each block of `block` window starts of
    # each length (and whether it has NaN windows), from one vectorised
    # pass. A round skips a length, or a block, whose best is below a score
    # that round is known to reach: the best score overall in the first
    # round, in later ones the best unsuppressed score, found best-first
    # (_raise_floor). Skipped windows score strictly below the round's
    # answer, so they can neither win nor tie: the result is exact.
    prune = prune_lengths and not paper and not dense  # the paper adds a dynamic term the bound does not cover
    n_blocks = t // block + 1 if prune else 1
    block_best = np.full((max(n_lengths, 1) if prune else 1, n_blocks), -np.inf)
    block_nan = np.zeros(block_best.shape, np.bool_)
    length_best = np.full(max(n_lengths, 1), -np.inf)
    length_nan = np.zeros(max(n_lengths, 1), np.bool_)
    if prune:
        _block_bounds(fg_sum, fg_count, stride, step, n_lengths, block, nan_rule, block_best, block_nan)
        for li in range(n_lengths):
            length_best[li] = block_best[li].max()
            length_nan[li] = block_nan[li].any()
    # blocks by first-round bound, highest first (those that can hold a window)
    flat_bounds = block_best.ravel()
    order = np.argsort(-flat_bounds)
    order = order[:np.sum(flat_bounds > -np.inf)] if prune else order[:0]
    first_bound = flat_bounds[order].copy()
    # Greedy NMS over the full ranking equals: repeatedly take the best window
    # not suppressed by an already kept one. Each round is one pass over the
    # windows its bounds do not rule out, so no list of millions of windows
    # is ever built or sorted.
    for round_index in range(top_k):
        floor = -np.inf
        if prune and n_lengths > 0:
            if round_index == 0:
                floor = length_best[:n_lengths].max()
            else:
                floor = _raise_floor(order, first_bound, block_best, block_nan, length_best, length_nan, block,
                                     stride, step, t, fg_sum, fg_count, nan_rule, sel_s, sel_e, n_sel,
                                     iou_threshold)
        best_score = -np.inf
        best_nan = False
        best_k = -1
        best_len = 0
        best_f32 = np.float32(0.0)
        best_f32_known = False
        tied = False  # another unsuppressed window has exactly the best score
        length = stride
        length_index = 0
        offset = 0
        while length <= longest:
            k_end = t - length + 1
            if prune and not length_nan[length_index] and length_best[length_index] < floor:
                length += step
                length_index += 1
                continue
            k = -1
            b = -1              # the block of window starts k is in
            next_block = 0      # where the next block begins
            while True:
                k += 1
                if k >= k_end:
                    break
                if dense:
                    if suppressed[offset + k]:
                        continue
                    sc = scores[offset + k]
                else:
                    if k == next_block:
                        b += 1
                        next_block += block
                        if prune and (
                                (not block_nan[length_index, b] and block_best[length_index, b] < floor)
                                or _block_suppressed(k, min(next_block, k_end) - 1, length, sel_s, sel_e, n_sel,
                                                     iou_threshold)):
                            k = next_block - 1
                            continue
                    sc = static_score(fg_sum, fg_count, k, length, nan_rule)
                is_nan = np.isnan(sc)
                if not is_nan and sc == -np.inf:
                    continue
                if paper and not is_nan:
                    sc += dynamic[k]
                # NaN outranks every number; ties keep the earlier window.
                # (Dense: every window reaching here is unsuppressed, so the
                # overlap tests below are skipped as False.)
                cand_f32 = np.float32(0.0)
                cand_f32_known = False
                if best_k >= 0:
                    if best_nan and not is_nan:
                        continue
                    if not is_nan and not (sc > best_score):
                        if not (sc == best_score):
                            continue
                        # an exact tie: the reference orders these by float32
                        # rounding where that separates them, else arbitrarily
                        s = run_start[k] if paper else k
                        # same foreground frames inside: the float32 sums are
                        # identical too, so this is a true tie
                        same_set = fg_count[k] == fg_count[best_k] and \
                            fg_count[k + length] == fg_count[best_k + best_len]
                        if not break_ties or same_set or fg_count[k + length] - fg_count[k] == 0:
                            if not tied and (dense or not _overlaps(s, k + length, sel_s, sel_e, n_sel, t,
                                                                    iou_threshold)):
                                tied = True
                            continue
                        if not best_f32_known:
                            best_f32 = _float32_static_score(masked_curve, fg_count, total_f32, best_k, best_len)
                            best_f32_known = True
                        cand_f32 = _float32_static_score(masked_curve, fg_count, total_f32, k, length)
                        cand_f32_known = True
                        if not (cand_f32 > best_f32):
                            if cand_f32 == best_f32 and not tied and \
                                    (dense or not _overlaps(s, k + length, sel_s, sel_e, n_sel, t, iou_threshold)):
                                tied = True
                            continue
                    elif is_nan and best_nan:
                        s = run_start[k] if paper else k
                        if not tied and (dense or not _overlaps(s, k + length, sel_s, sel_e, n_sel, t,
                                                                iou_threshold)):
                            tied = True
                        continue
                s = run_start[k] if paper else k
                if not dense and _overlaps(s, k + length, sel_s, sel_e, n_sel, t, iou_threshold):
                    continue
                if best_k >= 0 and not best_nan and not is_nan and sc == best_score:
                    pass  # a float32 tie-break win: the exact scores still tie
                else:
                    tied = False
                best_f32 = cand_f32
                best_f32_known = cand_f32_known
                best_score = sc
                best_nan = is_nan
                best_k = k
                best_len = length
            offset += k_end
            length += step
            length_index += 1
        if best_k < 0:
            break
        sel_s[n_sel] = run_start[best_k] if paper else best_k
        sel_e[n_sel] = best_k + best_len
        out_start[n_sel] = run_start[best_k]
        out_win[n_sel] = best_k
        out_score[n_sel] = best_score
        out_tied[n_sel] = tied
        if dense and round_index + 1 < top_k:
            _suppress(suppressed, sel_s[n_sel], sel_e[n_sel], run_start, paper, stride, step, n_lengths, t,
                      iou_threshold)
        n_sel += 1
    return out_start[:n_sel], sel_e[:n_sel], out_win[:n_sel], out_score[:n_sel], out_tied[:n_sel]


@njit(cache=True)
def _suppress(suppressed, kept_s, kept_e, run_start, paper, stride, step, n_lengths, t, iou_threshold):
    # flag every window the newly kept span [kept_s, kept_e) suppresses (the
    # flags of the earlier kept ones are already set: OR over kept windows)
    tf = np.float32(t)
    a0 = np.float32(kept_s) / tf
    a1 = np.float32(kept_e) / tf
    th = np.float32(iou_threshold)
    offset = 0
    for li in range(n_lengths):
        length = stride + li * step
        k_end = t - length + 1
        # only windows that overlap the kept span can be suppressed by it: the
        # window's end must pass kept_s, and (unless its start is the rising
        # run's, which can lie before k) its start must come before kept_e
        first = max(0, kept_s - length + 1)
        stop = k_end if paper else min(k_end, kept_e)
        for k in range(first, stop):
            if not suppressed[offset + k]:
                s = run_start[k] if paper else k
                if _iou_above(a0, a1, s, k + length, tf, th):
                    suppressed[offset + k] = True
        offset += k_end


_RULE_FROM_CANCELLATION = -1


@njit(cache=True)
def _propose(curve, threshold, stride, longest, top_k, iou_threshold, rule, paper, sigma, dyn_threshold):
    # masking and the reference's cancellation rule inside the compiled code:
    # one call per curve keeps Python overhead off short videos
    t = curve.shape[0]
    foreground = np.empty(t, np.bool_)
    masked = np.empty(t, np.float32)
    for i in range(t):
        foreground[i] = curve[i] > threshold
        masked[i] = curve[i] if foreground[i] else np.float32(0.0)
    if rule == _RULE_FROM_CANCELLATION:
        rule = NAN_FIRST if _pairwise_sum_f32(masked) < _running_sum_f32(masked) else NAN_DROP
    return _select(masked, foreground, stride, longest, top_k, iou_threshold, rule, paper, sigma, dyn_threshold)


def _kernel_arguments(curve: np.ndarray, config: GroundingConfig, nan_rule: int | None) -> tuple[Any, ...]:
    # the validated curve and the settings _propose takes, in its order
    curve = np.ascontiguousarray(curve, dtype=np.float32)
    if curve.ndim != 1 or curve.shape[0] < 2:
        raise InvalidInputError(f"a similarity curve must be 1-D with at least 2 frames, got shape {curve.shape}")
    stride, longest = window_lengths(curve.shape[0], config)
    threshold = DEFAULT_MASK_THRESHOLD if config.mask_threshold is None else config.mask_threshold
    if nan_rule is not None:
        rule = int(nan_rule)
    elif config.nan_safe:
        rule = NAN_SAFE
    else:
        rule = _RULE_FROM_CANCELLATION
    return (curve, np.float32(threshold), stride, longest, config.top_k, config.nms_threshold,
            rule, config.scoring == "paper", config.gaussian_sigma, config.dynamic_threshold)


def propose(curve: np.ndarray, config: GroundingConfig, *, nan_rule: int | None = None) -> Proposals:
    """Rank proposals on one similarity curve.

    Args:
        curve: (T,) similarity curve (before masking), float32.
        config: scoring options (stride and lengths in frames).
        nan_rule: override for windows with no foreground outside (testing
            and analysis): 0 NaN ranked first, 1 finite (nan-safe), 2 dropped.
            Default: nan-safe when ``config.nan_safe``, else
            :func:`cancellation_rule`.

    Returns:
        The ``config.top_k`` best proposals after NMS, in frames.
    """
    arguments = _kernel_arguments(curve, config, nan_rule)
    start, end, win, score, tied = _propose(*arguments)
    return Proposals(start=start, end=end, window_start=win, score=score, tied=tied,
                     num_frames=int(arguments[0].shape[0]))


def proposal_table(curve: np.ndarray, config: GroundingConfig, duration: float) -> np.ndarray:
    """``[start, end, score]`` rows (seconds) of :func:`propose`'s proposals.

    The same rows as ``propose`` followed by
    :meth:`Proposals.confidence` or :meth:`Proposals.normalised_scores`
    (``config.scores``) and ``VideoFeatures.frames_to_seconds``, in one
    compiled call: a short clip's query spends less time in Python.

    Args:
        curve: (T,) similarity curve (before masking), float32.
        config: scoring options.
        duration: seconds the T frames cover.

    Returns:
        (k, 3) float64, best first; (0, 3) when no frame passes the mask.
    """
    arguments = (*_kernel_arguments(curve, config, None), float(duration), config.scores == "normalised")
    return _propose_rows(*arguments)


@njit(cache=True, error_model="numpy")
def _propose_rows(curve, threshold, stride, longest, top_k, iou_threshold, rule, paper, sigma, dyn_threshold,
                  duration, normalised):
    start, end, _, score, _ = _propose(curve, threshold, stride, longest, top_k, iou_threshold, rule, paper, sigma,
                                       dyn_threshold)
    k = start.shape[0]
    rows = np.empty((k, 3))
    if k == 0:
        return rows
    spans = np.empty(2 * k)
    for i in range(k):
        spans[2 * i] = start[i]
        spans[2 * i + 1] = end[i]
    seconds_of_frames(spans, duration, curve.shape[0])
    for i in range(k):
        rows[i, 0] = spans[2 * i]
        rows[i, 1] = spans[2 * i + 1]
    if normalised:
        rows[:, 2] = _normalised(score)
    else:
        best = score[0]  # NaN / NaN is NaN, x / 0 is +-inf or NaN: the reference's confidence
        for i in range(k):
            rows[i, 2] = score[i] / best
    return rows


@njit(cache=True)
def _normalised(score):
    # Proposals.normalised_scores, compiled (the same float64 operations)
    k = score.shape[0]
    out = np.zeros(k)
    best = -np.inf
    low = np.inf
    any_finite = False
    for i in range(k):
        if np.isfinite(score[i]):
            any_finite = True
            best = max(best, score[i])
            low = min(low, score[i])
    if not any_finite:
        return out
    scale = abs(best) if abs(best) > 1e-12 else max(best - low, 1.0)
    lowest = np.inf
    for i in range(k):
        out[i] = 1.0 + (score[i] - best) / scale if np.isfinite(score[i]) else np.nan
        if np.isfinite(out[i]) and out[i] < lowest:
            lowest = out[i]
    fill = lowest if lowest < np.inf else 0.0
    for i in range(k):
        if not np.isfinite(out[i]):
            out[i] = fill
        if i > 0 and out[i - 1] < out[i]:
            out[i] = out[i - 1]
    return out
