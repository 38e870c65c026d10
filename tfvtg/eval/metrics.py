"""Grounding metrics, as the standard evaluations compute them.

* Charades-STA / ActivityNet Captions (TFVTG's evaluate.py): R1 and R5 at
  IoU 0.3/0.5/0.7 (a query counts when a top-k moment has IoU >= the
  threshold) and mIoU (mean top-1 IoU, negative IoU of disjoint spans counted
  as 0). Percent.
* QVHighlights (moment_detr's standalone evaluation): moment-retrieval mAP
  (interpolated AP at IoU 0.5:0.05:0.95, averaged over queries; keys
  "MR-mAP@0.5", "MR-mAP@0.75", "MR-mAP" for the 0.5:0.95 average), "MR-R1@0.5",
  "MR-R1@0.7", and highlight detection "HL-mAP" / "HL-HIT@1" at the
  "VeryGood" saliency level (clip score >= 4; "-Fair" >= 2 and "-Good" >= 3
  are given too). Percent, rounded to 2 decimals as that evaluation does.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tfvtg.errors import InvalidInputError

__all__ = ["temporal_iou", "grounding_metrics", "qvhighlights_metrics", "average_precision_detection",
           "saliency_ap"]

THRESHOLDS = (0.3, 0.5, 0.7)


def temporal_iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """IoU of two spans as TFVTG computes it: (min end - max start) over
    (max end - min start); negative for disjoint spans."""
    s, e = float(pred[0]), float(pred[1])
    gs, ge = float(gt[0]), float(gt[1])
    union = max(e, ge) - min(s, gs)
    if union <= 0:
        return 0.0
    return (min(e, ge) - max(s, gs)) / union


def grounding_metrics(records: Iterable[tuple[Sequence[Sequence[float]], Sequence[float]]]) -> dict[str, float]:
    """R1/R5 at IoU 0.3/0.5/0.7 and mIoU, in percent.

    Args:
        records: (ranked predicted spans, ground-truth span) per query.
    """
    r1 = np.zeros(len(THRESHOLDS))
    r5 = np.zeros(len(THRESHOLDS))
    ious: list[float] = []
    for preds, gt in records:
        preds = list(preds)
        top = [temporal_iou(p, gt) for p in preds[:5]] or [0.0]
        ious.append(max(top[0], 0.0))
        for i, th in enumerate(THRESHOLDS):
            r1[i] += th <= top[0]
            r5[i] += any(th <= x for x in top)
    n = len(ious)
    out: dict[str, float] = {"n": float(n)}
    for i, th in enumerate(THRESHOLDS):
        out[f"R1@{th}"] = 100.0 * r1[i] / n if n else 0.0
    for i, th in enumerate(THRESHOLDS):
        out[f"R5@{th}"] = 100.0 * r5[i] / n if n else 0.0
    out["mIoU"] = 100.0 * float(np.mean(ious)) if n else 0.0
    return out


# ------------------------------------------------------------ QVHighlights

def _cross_iou(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    areas1 = spans1[:, 1] - spans1[:, 0]
    areas2 = spans2[:, 1] - spans2[:, 0]
    left = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
    right = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = areas1[:, None] + areas2[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    mprec = np.hstack([[0], precision, [0]])
    mrec = np.hstack([[0], recall, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision_detection(gt_windows: Sequence[Sequence[float]], pred_windows: Sequence[Sequence[float]],
                                thresholds: Sequence[float]) -> np.ndarray:
    """Per-threshold AP of one query's scored predictions ([start, end, score])
    against its ground-truth windows (each matched at most once)."""
    ap = np.zeros(len(thresholds))
    if not pred_windows:
        return ap
    preds = sorted(pred_windows, key=lambda w: -w[2])
    gts = np.array([[g[0], g[1]] for g in gt_windows], dtype=float).reshape(-1, 2)
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    locked = -np.ones((len(thresholds), len(gts)))
    for j, p in enumerate(preds):
        if len(gts) == 0:
            fp[:, j] = 1
            continue
        ious = _cross_iou(np.array([[p[0], p[1]]], dtype=float), gts)[0]
        order = ious.argsort()[::-1]
        for t, th in enumerate(thresholds):
            for g in order:
                if ious[g] < th:
                    fp[t, j] = 1
                    break
                if locked[t, g] >= 0:
                    continue
                tp[t, j] = 1
                locked[t, g] = j
                break
            if fp[t, j] == 0 and tp[t, j] == 0:
                fp[t, j] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(fp, axis=1)
    recall = tp_c / max(len(gts), 1) if len(gts) else np.zeros_like(tp_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp_c / (tp_c + fp_c)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(precision[t], recall[t])
    return ap


def saliency_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Interpolated AP of clip scores against binary labels, as the
    QVHighlights evaluation computes it (precision at every new recall level,
    after a running max from the full-recall end)."""
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    if len(set(y_true.tolist())) == 1:
        return 0.0 if y_true[0] == 0 else 1.0
    order = np.argsort(-y_score, kind="mergesort")
    s, t = y_score[order], y_true[order]
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, len(t) - 1]
    tps = np.cumsum(t)[idx]
    fps = 1 + idx - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision = np.hstack((precision[::-1], 1.0))
    recall = np.hstack((recall[::-1], 0.0)).astype(np.float32)
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    changes = np.where(np.diff(recall))
    return float(np.mean(precision[changes]))


def _r2(x: float) -> float:
    return float(f"{x:.2f}")


def qvhighlights_metrics(submission: Sequence[Mapping[str, Any]], ground_truth: Sequence[Mapping[str, Any]],
                         max_pred_windows: int = 10, clip_length: float = 2.0) -> dict[str, float]:
    """moment_detr's QVHighlights numbers for a submission.

    Args:
        submission: per query ``{"qid", "pred_relevant_windows": [[s, e, score], ...]}``
            and optionally ``"pred_saliency_scores"`` (one per 2 s clip).
        ground_truth: QVHighlights annotation dicts (``qid``, ``duration``,
            ``relevant_windows``, ``relevant_clip_ids``, ``saliency_scores``).

    Returns:
        Percentages: "MR-mAP@0.5", "MR-mAP@0.75", "MR-mAP", "MR-R1@0.5",
        "MR-R1@0.7", and with saliency "HL-mAP", "HL-HIT@1" (VeryGood) plus
        their "-Fair"/"-Good" variants.
    """
    gt_by_qid = {d["qid"]: d for d in ground_truth}
    sub = [d for d in submission if d["qid"] in gt_by_qid]
    if not sub:
        raise InvalidInputError("no submitted query has ground truth")
    thresholds = [float(f"{x:.2f}") for x in np.linspace(0.5, 0.95, 10)]
    aps = np.array([average_precision_detection(gt_by_qid[d["qid"]]["relevant_windows"],
                                                list(d["pred_relevant_windows"][:max_pred_windows]), thresholds)
                    for d in sub])
    per_th = aps.mean(axis=0)
    out = {"MR-mAP@0.5": _r2(100 * per_th[0]), "MR-mAP@0.75": _r2(100 * per_th[5]),
           "MR-mAP": _r2(100 * float(np.mean(per_th)))}
    r1_iou = []
    for d in sub:
        pred = np.array([d["pred_relevant_windows"][0][:2]], dtype=float)
        gts = np.array(gt_by_qid[d["qid"]]["relevant_windows"], dtype=float).reshape(-1, 2)
        best = gts[int(np.argmax(_cross_iou(pred, gts)[0]))] if len(gts) else np.array([0.0, 0.0])
        inter = max(0.0, min(pred[0, 1], best[1]) - max(pred[0, 0], best[0]))
        hull = max(pred[0, 1], best[1]) - min(pred[0, 0], best[0])
        r1_iou.append(inter / hull if hull != 0 else 0.0)
    r1_iou = np.array(r1_iou)
    for th in (0.5, 0.7):
        out[f"MR-R1@{th}"] = _r2(100 * float(np.mean(r1_iou >= th)))
    if all("pred_saliency_scores" in d for d in sub):
        for level, name in ((4, ""), (2, "-Fair"), (3, "-Good")):
            hits, aps_hl = [], []
            for d in sub:
                g = gt_by_qid[d["qid"]]
                n_clips = int(g["duration"] / clip_length)
                full = np.zeros((n_clips, 3))
                full[np.array(g["relevant_clip_ids"], dtype=int)] = np.array(g["saliency_scores"])
                binary = (full >= level).astype(float)
                pred = np.asarray(d["pred_saliency_scores"], dtype=float)
                top = int(np.argmax(pred))
                hits.append(binary[top].max() if top < len(binary) else 0.0)
                if len(pred) < n_clips:
                    pred = np.concatenate([pred, np.zeros(n_clips - len(pred))])
                pred = pred[:n_clips]
                aps_hl.append(np.mean([saliency_ap(binary[:, w], pred) for w in range(3)]))
            out[f"HL-mAP{name}"] = _r2(100 * float(np.mean(aps_hl)))
            out[f"HL-HIT@1{name}"] = _r2(100 * float(np.mean(hits)))
    return out
