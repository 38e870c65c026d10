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

Every metric is a plain Python float; counts ("n" queries scored, "failed",
"skipped") are ints. :class:`Metrics` holds both for one evaluation, and
:func:`metrics_from_results` is the metric step of the runner: result lines
in, :class:`Metrics` out.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from tfvtg.errors import InvalidInputError, InvalidTypeError

if TYPE_CHECKING:  # pragma: no cover
    from .datasets import Query

__all__ = ["temporal_iou", "grounding_metrics", "qvhighlights_metrics", "average_precision_detection",
           "saliency_ap", "Metrics", "COUNT_KEYS", "metrics_from_results", "format_metrics"]

#: keys of :class:`Metrics` that are counts (ints), not percentages
COUNT_KEYS = ("n", "failed", "skipped")

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


def grounding_metrics(records: Iterable[tuple[Sequence[Sequence[float]], Sequence[float]]]) -> dict[str, Any]:
    """R1/R5 at IoU 0.3/0.5/0.7 and mIoU, in percent (floats), and "n", the
    number of records (an int).

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
    out: dict[str, Any] = {"n": n}
    for i, th in enumerate(THRESHOLDS):
        out[f"R1@{th}"] = float(100.0 * r1[i] / n) if n else 0.0
    for i, th in enumerate(THRESHOLDS):
        out[f"R5@{th}"] = float(100.0 * r5[i] / n) if n else 0.0
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
    r1_list: list[float] = []
    for d in sub:
        pred = np.array([d["pred_relevant_windows"][0][:2]], dtype=float)
        gts = np.array(gt_by_qid[d["qid"]]["relevant_windows"], dtype=float).reshape(-1, 2)
        best = gts[int(np.argmax(_cross_iou(pred, gts)[0]))] if len(gts) else np.array([0.0, 0.0])
        inter = max(0.0, min(pred[0, 1], best[1]) - max(pred[0, 0], best[0]))
        hull = max(pred[0, 1], best[1]) - min(pred[0, 0], best[0])
        r1_list.append(inter / hull if hull != 0 else 0.0)
    r1_iou = np.array(r1_list)
    for th in (0.5, 0.7):
        out[f"MR-R1@{th}"] = _r2(100 * float(np.mean(r1_iou >= th)))
    if all("pred_saliency_scores" in d for d in sub):
        for level, name in ((4, ""), (2, "-Fair"), (3, "-Good")):
            hits, aps_hl = [], []
            for d in sub:
                g = gt_by_qid[d["qid"]]
                n_clips = int(g["duration"] / clip_length)
                full = np.zeros((n_clips, 3))
                clip_ids = np.array(g["relevant_clip_ids"], dtype=int).reshape(-1)
                full[clip_ids] = np.array(g["saliency_scores"], dtype=float).reshape(len(clip_ids), 3)
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


# ------------------------------------------------------------ one evaluation's numbers

class Metrics(dict):  # type: ignore[type-arg]
    """The numbers of one evaluation: a read-only mapping.

    Metric values ("R1@0.5", "mIoU", "MR-mAP", ...) are plain floats in
    percent; the counts are ints: "n" (queries scored), "failed" (queries
    that could not be grounded) and "skipped" (annotation entries refused).
    "failed" and "skipped" are present only when not zero; the attributes
    :attr:`n`, :attr:`failed` and :attr:`skipped` are always there. It is a
    ``dict`` subclass, so ``json.dumps(metrics)`` and ``metrics == {...}``
    work as before; :func:`format_metrics` (or ``str(metrics)``) gives a table.
    """

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **counts: int):
        items = dict(values)
        items.update(counts)
        clean: dict[str, float | int] = {}
        for key, value in items.items():
            if key in COUNT_KEYS:
                continue
            x = float(value)
            clean[str(key)] = x
        for key in COUNT_KEYS:
            raw = items.get(key, 0)
            count = int(raw) if raw is not None and math.isfinite(float(raw)) else 0
            if key == "n" or count:
                clean[key] = count
        super().__init__(clean)

    @property
    def n(self) -> int:
        """Queries scored."""
        return int(self.get("n", 0))

    @property
    def failed(self) -> int:
        """Queries that could not be grounded (missing features, errors)."""
        return int(self.get("failed", 0))

    @property
    def skipped(self) -> int:
        """Annotation entries refused (malformed), counted as queries."""
        return int(self.get("skipped", 0))

    def values_in_percent(self) -> dict[str, float]:
        """The metrics without the counts."""
        return {k: v for k, v in self.items() if k not in COUNT_KEYS}

    def to_dict(self) -> dict[str, float | int]:
        """A plain dict (same keys and values)."""
        return dict(self)

    def __str__(self) -> str:
        return format_metrics(self)

    def __repr__(self) -> str:
        return f"Metrics({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Metrics, (dict(self),))

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidTypeError("Metrics is read-only; copy it with dict(metrics) to change it")

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only  # type: ignore[assignment]
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only


def _counts_line(metrics: Mapping[str, Any]) -> str:
    n = int(metrics.get("n", 0) or 0)
    parts = [f"{n} {'query' if n == 1 else 'queries'}"]
    for key in ("failed", "skipped"):
        count = int(metrics.get(key, 0) or 0)
        if count:
            parts.append(f"{count} {key}")
    return ", ".join(parts)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """A table of the metrics (two decimals) and a line of counts (whole numbers)."""
    keys = [k for k in metrics if k not in COUNT_KEYS]
    width = max([10] + [len(k) + 1 for k in keys])
    head = " ".join(f"{k:>{width}}" for k in keys)
    vals = " ".join(f"{float(metrics[k]):>{width}.2f}" for k in keys)
    return f"{head}\n{vals}\n({_counts_line(metrics)})"


def _iter_scored(results: Iterable[Mapping[str, Any]]) -> Iterator[tuple[list[list[float]], list[float]]]:
    for r in results:
        gt, topk = r.get("gt"), r.get("topk")
        if gt and isinstance(topk, list):
            yield [list(m[:2]) for m in topk], list(gt[0])


def _rank_scores(topk: Sequence[Sequence[Any]]) -> list[list[float]]:
    """Rows [s, e, score] for moment_detr's evaluation. A null score (the
    reference's NaN) cannot be sorted: then every row of the query is scored
    by its rank, which keeps the grounder's order."""
    rows = [list(m) for m in topk]
    if any(len(m) < 3 or m[2] is None for m in rows):
        return [[float(m[0]), float(m[1]), float(len(rows) - i)] for i, m in enumerate(rows)]
    return [[float(m[0]), float(m[1]), float(m[2])] for m in rows]


def _saliency_scores(values: Sequence[Any]) -> list[float]:
    finite = [float(v) for v in values if v is not None]
    low = (min(finite) - 1.0) if finite else 0.0  # a null clip ranks below every scored one
    return [low if v is None else float(v) for v in values]


def metrics_from_results(results: Iterable[Mapping[str, Any]], dataset: str = "charades",
                         queries: Iterable[Query] | None = None, *, failed: int = 0,
                         skipped: int = 0) -> Metrics:
    """The metric step: result lines (see :mod:`tfvtg.eval.records`) in,
    :class:`Metrics` out.

    R1/R5 at 0.3/0.5/0.7 and mIoU over every line with ground truth; for a
    dataset scored like QVHighlights (and ``queries`` given, for the clip
    saliency), moment_detr's MR and HL metrics too, from each query's top 7
    moments (TFVTG's submission) and, when recorded, its clip saliency.
    """
    from .registry import resolve_dataset

    results = list(results)
    values = grounding_metrics(_iter_scored(results))
    try:
        kind = resolve_dataset(dataset).spec.metrics
    except InvalidInputError:
        kind = "grounding"
    if kind == "qvhighlights" and queries is not None:
        by_qid = {q.qid: q for q in queries}
        gt, sub = [], []
        for r in results:
            q = by_qid.get(str(r.get("qid")))
            if q is None or not q.spans or not isinstance(r.get("topk"), list) or not r["topk"]:
                continue
            gt.append({"qid": q.qid, "duration": q.duration, "relevant_windows": [list(s) for s in q.spans],
                       "relevant_clip_ids": list(q.saliency), "saliency_scores": list(q.saliency.values())})
            # TFVTG submits its top 7 proposals per query to the QVHighlights evaluation
            entry: dict[str, Any] = {"qid": q.qid, "pred_relevant_windows": _rank_scores(r["topk"][:7])}
            if isinstance(r.get("saliency"), list):
                entry["pred_saliency_scores"] = _saliency_scores(r["saliency"])
            sub.append(entry)
        if sub:
            values.update(qvhighlights_metrics(sub, gt))
    values["failed"] = failed
    values["skipped"] = skipped
    return Metrics(values)
