"""The reference's float32 numerics, modelled where they decide an outcome.

TFVTG computes a window's outside sum as ``sum(all) - sum(window)`` in
float32. For a window that holds every foreground frame the result is
mathematically 0 but lands 0 or a few ulps either side, depending on the
summation order of the machine that ran it: negative gives NaN (ranked
first), otherwise the window is dropped. These kernels reproduce the two
orders (numpy's pairwise sum and a running sum) so the bit-compatible
presets can follow the same branch; nothing else in the library uses them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# the outcomes for such a window (plain ints, so numba takes them)
NAN_FIRST = 0       # the cancellation went negative: NaN, ranked first
NAN_DROP = 2        # the cancellation is exact: 0/0, which the reference's filter drops


@njit(cache=True)
def _float32_static_score(masked_curve: np.ndarray, fg_count: np.ndarray, total_f32: np.float32,
                          k: int, length: int) -> np.float32:
    # The reference's float32 formula with a running window sum. Used only to
    # order windows whose exact scores tie but whose float32 scores in the
    # reference differ by rounding, so that the reference's choice among
    # them is reproduced.
    t = masked_curve.shape[0]
    acc = np.float32(0.0)
    for j in range(length):
        acc = np.float32(acc + masked_curve[k + j])
    inner_num = np.float32(fg_count[k + length] - fg_count[k])
    outer_num = np.float32(np.float32(fg_count[t]) - inner_num)
    outer_sum = np.float32(total_f32 - acc)
    return np.float32(np.float32(acc / np.float32(length)) - np.float32(outer_sum / outer_num))



def cancellation_rule(masked_curve: np.ndarray) -> int:
    """How the reference treats windows that hold every foreground frame.

    For such a window the reference computes the outside sum as
    ``sum(all) - sum(window)`` in float32: mathematically 0, but the two sums
    run in different orders, so the difference is 0, or a few ulps either
    side. Slightly negative gives ``-x/0 = +inf``, which its NMS turns into
    NaN and its sort ranks first; zero or positive gives NaN or -inf, which
    its ``> -1e3`` filter drops. Which happens depends on the machine's
    summation order; we model the whole-curve sum as numpy's pairwise
    float32 sum and the window sum as a running float32 sum, which
    reproduces the published outputs far more often than either fixed rule.
    """
    masked_curve = np.ascontiguousarray(masked_curve, dtype=np.float32)
    return NAN_FIRST if _pairwise_sum_f32(masked_curve) < _running_sum_f32(masked_curve) else NAN_DROP


@njit(cache=True)
def _pairwise_sum_f32(a: np.ndarray) -> np.float32:
    # numpy's float32 pairwise summation (8 interleaved accumulators over
    # blocks of at most 128, halves recursively), written out so the
    # compiled kernel reproduces np.sum(a, dtype=np.float32) bit for bit
    n = a.shape[0]
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res = np.float32(res + a[i])
        return res
    if n <= 128:
        r0 = a[0]
        r1 = a[1]
        r2 = a[2]
        r3 = a[3]
        r4 = a[4]
        r5 = a[5]
        r6 = a[6]
        r7 = a[7]
        i = 8
        while i < n - (n % 8):
            r0 = np.float32(r0 + a[i])
            r1 = np.float32(r1 + a[i + 1])
            r2 = np.float32(r2 + a[i + 2])
            r3 = np.float32(r3 + a[i + 3])
            r4 = np.float32(r4 + a[i + 4])
            r5 = np.float32(r5 + a[i + 5])
            r6 = np.float32(r6 + a[i + 6])
            r7 = np.float32(r7 + a[i + 7])
            i += 8
        res = np.float32(np.float32(np.float32(r0 + r1) + np.float32(r2 + r3)) +
                         np.float32(np.float32(r4 + r5) + np.float32(r6 + r7)))
        while i < n:
            res = np.float32(res + a[i])
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return np.float32(_pairwise_sum_f32(a[:half]) + _pairwise_sum_f32(a[half:]))


@njit(cache=True)
def _running_sum_f32(values: np.ndarray) -> np.float32:
    acc = np.float32(0.0)
    for v in values:
        acc = np.float32(acc + v)
    return acc
