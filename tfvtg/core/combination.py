"""Stage 4: combine candidates of several descriptions and sub-events.

Candidates are (n, 3) float64 arrays of ``[start, end, confidence]`` rows in
seconds. Two operations, both from the published method:

* :func:`vote` re-ranks candidates by IoU-weighted agreement: candidate j
  scores ``sum_i IoU(i, j) ** gamma * max(conf_i, 0)``.
* :func:`combine_sub_events` enumerates one candidate per sub-event
  (k**m combinations), drops those that break the relation, and integrates
  each survivor into one span: scored by the product of its confidences and
  re-ranked by the vote (the published code), or scored by the sum of its
  confidences, best first (the paper).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["vote", "combine_sub_events", "interleave"]


def _pairwise_iou(spans: np.ndarray) -> np.ndarray:
    start, end = spans[:, 0], spans[:, 1]
    inter = np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :])
    union = np.maximum(end[:, None], end[None, :]) - np.minimum(start[:, None], start[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        # a zero-length span against itself gives 0/0 = NaN, as in the reference
        return inter.clip(min=0) / union


def vote(candidates: np.ndarray, gamma: float = 0.6, return_scores: bool = False) -> Any:
    """Candidates re-ordered by IoU-weighted voting, best first.

    Args:
        candidates: (n, 3) rows ``[start, end, confidence]`` (seconds).
        gamma: exponent applied to the IoU.

    Returns:
        The same rows, reordered (rows whose vote is NaN go last; ties keep
        their input order); with ``return_scores``, also the (n,) vote sums
        in that order.
    """
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 3)
    if len(candidates) == 0:
        return (candidates, np.zeros(0)) if return_scores else candidates
    weights = candidates[:, 2].clip(min=0)  # NaN confidences stay NaN
    iou = _pairwise_iou(candidates[:, :2])
    with np.errstate(invalid="ignore"):
        scores = (iou ** gamma * weights[:, None]).sum(axis=0)
    order = np.argsort(-scores, kind="stable")
    return (candidates[order], scores[order]) if return_scores else candidates[order]


def interleave(rankings: Sequence[np.ndarray], depth: int) -> np.ndarray:
    """Rank-major merge of several rankings: every ranking's first row, then
    every second row, ..., down to ``depth`` rows each. Returns (n, 3)."""
    rows = [r[t] for t in range(depth) for r in rankings if len(r) > t]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def combine_sub_events(candidates: Sequence[np.ndarray], relationship: str, *,
                       integration: str = "reference", gamma: float = 0.6, keep: int = 2) -> np.ndarray:
    """Integrate one candidate per sub-event into spans, best ``keep`` first.

    Args:
        candidates: per sub-event, its (k, 3) candidate rows in time order
            of the sub-events.
        relationship: "sequentially" keeps combinations whose every sub-event
            starts at or after the previous one ends; "simultaneously" keeps
            those whose spans all overlap; anything else keeps all.
        integration: "reference" (the published code): each combination
            spans the union of its sub-events and scores the product of their
            confidences (negatives as 0); the spans are then re-ranked by the
            IoU-weighted vote. "paper" (the paper's rule): each combination
            scores the *sum* of its sub-events' confidences and spans their
            intersection for simultaneous sub-events, their union otherwise;
            the best sum ranks first (no vote; equal sums keep enumeration
            order, NaN sums go last).
        gamma: vote exponent (reference rule).
        keep: how many integrated spans to return.

    Returns:
        (<= keep, 3) rows ``[start, end, score]``: score is the product
        ("reference") or the sum ("paper") of the confidences.
    """
    if not candidates:
        return np.zeros((0, 3))
    paper = integration == "paper"
    found = []
    for combo in itertools.product(*candidates):
        rows = np.array(combo, dtype=np.float64)
        if relationship == "sequentially" and np.any(rows[1:, 0] < rows[:-1, 1]):
            continue
        if relationship == "simultaneously" and rows[:, 0].max() > rows[:, 1].min():
            continue
        if paper and relationship == "simultaneously":
            start, end = rows[:, 0].max(), rows[:, 1].min()
        else:
            start, end = rows[:, 0].min(), rows[:, 1].max()
        score = rows[:, 2].sum() if paper else rows[:, 2].clip(min=0).prod()
        found.append((start, end, score))
    if not found:
        return np.zeros((0, 3))
    spans = np.array(found)
    if paper:
        return spans[np.argsort(-spans[:, 2], kind="stable")][:keep]
    return vote(spans, gamma)[:keep]
