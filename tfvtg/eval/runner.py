"""Benchmark evaluation: ground every query of a dataset, append each result
to a JSONL file as it comes, and compute the standard metrics.

A run killed halfway resumes: queries already in ``out`` are skipped and
never written twice; the metrics cover every line of the file.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfvtg.errors import InvalidInputError, MissingFileError

from ..core.config import GroundingConfig
from ..core.decomposition import Decomposition
from ..core.features import VideoFeatures
from ..video.decode import VIDEO_SUFFIXES
from .datasets import Query, load_dataset
from .metrics import grounding_metrics, qvhighlights_metrics, temporal_iou

__all__ = ["evaluate", "pad_features", "read_results", "metrics_from_results", "format_metrics"]



def pad_features(array: np.ndarray, duration: float, pad_sec: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The paper's out-of-distribution setting: ``pad_sec`` seconds of
    standard-normal noise features before the video. Returns (features,
    new duration)."""
    t = array.shape[0]
    n = round(t / duration * pad_sec)
    noise = rng.standard_normal((n,) + array.shape[1:]).astype(np.float32)
    return np.concatenate([noise, np.asarray(array, dtype=np.float32)], axis=0), duration + pad_sec


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Result lines of a (possibly interrupted) run; a torn last line is ignored."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with open(p, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a killed run left unfinished, so appended results
    start on a line of their own."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def metrics_from_results(results: list[Mapping[str, Any]], dataset: str,
                         queries: Iterable[Query] | None = None) -> dict[str, float]:
    """Metrics of result lines: R1/R5 at 0.3/0.5/0.7 and mIoU (percent), plus
    QVHighlights' MR/HL numbers for that dataset."""
    records = [([m[:2] for m in r["topk"]], r["gt"][0]) for r in results if r.get("gt")]
    metrics = grounding_metrics(records)
    if dataset.startswith("qvh") and queries is not None:
        by_qid = {q.qid: q for q in queries}
        gt, sub = [], []
        for r in results:
            q = by_qid.get(r["qid"])
            if q is None or not q.spans:
                continue
            gt.append({"qid": q.qid, "duration": q.duration, "relevant_windows": [list(s) for s in q.spans],
                       "relevant_clip_ids": list(q.saliency), "saliency_scores": list(q.saliency.values())})
            # TFVTG submits its top 7 proposals per query to the QVHighlights evaluation
            entry = {"qid": q.qid, "pred_relevant_windows": r["topk"][:7]}
            if "saliency" in r:
                entry["pred_saliency_scores"] = r["saliency"]
            sub.append(entry)
        if sub:
            metrics.update(qvhighlights_metrics(sub, gt))
    return metrics


def format_metrics(metrics: Mapping[str, float]) -> str:
    """A two-line table of the metrics."""
    keys = [k for k in metrics if k != "n"]
    head = " ".join(f"{k:>10}" for k in keys)
    vals = " ".join(f"{metrics[k]:>10.2f}" for k in keys)
    return f"{head}\n{vals}\n({int(metrics.get('n', 0))} queries)"


def _find_video(videos: Path, vid: str) -> Path:
    for suffix in VIDEO_SUFFIXES:
        p = videos / f"{vid}{suffix}"
        if p.exists():
            return p
    raise MissingFileError(f"no video file for {vid!r} in {videos}")


def _load_llm_outputs(path: str | os.PathLike[str]) -> dict[str, dict]:
    """{sentence-level key "<video>#<i>": TFVTG response} from an llm_outputs.json."""
    data = json.loads(Path(path).read_text())
    out = {}
    for vid, ann in data.items():
        for i, resp in enumerate(ann.get("response", [])):
            out[f"{vid}#{i}"] = resp
            sentences = ann.get("sentences", [])
            if i < len(sentences):
                out[f"{vid}|{sentences[i]}"] = resp
    return out


def evaluate(dataset: str, annotations: str | os.PathLike[str], *, features: str | os.PathLike[str] | None = None,
             videos: str | os.PathLike[str] | None = None, llm_outputs: str | os.PathLike[str] | None = None,
             text_encoder: Any = None, decomposer: Any = None, preset: str | GroundingConfig | None = None,
             out: str | os.PathLike[str] | None = None, pad_sec: float = 0.0, seed: int = 0,
             top_k: int = 10, limit: int | None = None, progress: bool = True,
             durations: str | os.PathLike[str] | None = None) -> dict[str, float]:
    """Ground every query of a benchmark and return its metrics.

    Args:
        dataset: "charades", "activitynet" or "qvhighlights".
        annotations: the dataset's annotation file (see :mod:`tfvtg.datasets`).
        features: directory of ``<video>.npy`` feature files (TFVTG layout), or
        videos: directory of video files, encoded with ``text_encoder`` (a
            :class:`~tfvtg.Blip2Encoder`; default the BLIP-2 default) and cached.
        llm_outputs: TFVTG-format ``llm_outputs.json`` with decompositions;
            otherwise ``decomposer`` (e.g. :class:`~tfvtg.OpenAIDecomposer`)
            or the annotations' own "response" entries, else VLM only.
        text_encoder: encoder of the features' space (default: BLIP-2).
        preset: grounding config or preset name (default: the dataset's).
        out: JSONL file of per-query results; appended as results come and
            resumed when it exists.
        pad_sec, seed: out-of-distribution padding (seconds of seeded noise
            features before each video; ground truth shifted accordingly).
        top_k: moments kept per query in ``out``.
        limit: evaluate only the first ``limit`` queries.
        durations: Charades-STA ``.txt`` annotations: CSV of video durations.

    Returns:
        Metrics in percent: "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5",
        "R5@0.7", "mIoU", "n" (queries), and for QVHighlights "MR-mAP@0.5",
        "MR-mAP@0.75", "MR-mAP", "MR-R1@0.5", "MR-R1@0.7" (and "HL-mAP",
        "HL-HIT@1" from the similarity curve's per-clip saliency).
    """
    from ..core.grounder import Grounder

    if (features is None) == (videos is None):
        raise InvalidInputError("give exactly one of features=DIR (.npy files) or videos=DIR (video files)")
    name = dataset.lower()
    # the Charades-STA text format carries no durations: a CSV or the feature files give them
    txt = str(annotations).endswith(".txt")
    queries = load_dataset(dataset, annotations, **({"durations": durations, "features": features} if txt else {}))
    if limit is not None:
        queries = queries[:limit]
    if preset is None:
        preset = {"activitynet": "activitynet", "qvhighlights": "qvhighlights"}.get(
            name.replace("-", "").replace("_", ""), "charades")
    config = preset if isinstance(preset, GroundingConfig) else GroundingConfig.preset(preset)
    if text_encoder is None:
        from ..api import default_encoder

        text_encoder = default_encoder()
    grounder = Grounder(text_encoder, config, decomposer)
    llm = _load_llm_outputs(llm_outputs) if llm_outputs else {}

    out_path = Path(out) if out else None
    if out_path is not None:
        _drop_torn_line(out_path)
    done = {r["qid"]: r for r in read_results(out_path)} if out_path else {}
    results = [done[q.qid] for q in queries if q.qid in done]
    todo = [q for q in queries if q.qid not in done]
    rng = np.random.default_rng(seed)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(queries), initial=len(results), unit="query", desc=f"eval {dataset}")
    sink = open(out_path, "a", encoding="utf-8") if out_path else None
    feats_cache: dict[str, tuple[VideoFeatures, float]] = {}
    failures = 0
    try:
        for q in todo:
            try:
                if q.video not in feats_cache:
                    feats_cache.clear()  # one video at a time keeps memory flat
                    feats_cache[q.video] = _video_features(q, features, videos, text_encoder, pad_sec, rng)
                feats, shift = feats_cache[q.video]
                res = grounder.ground(feats, q.sentence, decomposition=_decomposition_for(q, llm))
            except Exception as exc:  # report and go on: one bad video never ends a run
                failures += 1
                msg = f"failed {q.qid}: {type(exc).__name__}: {exc}"
                if bar is not None:
                    bar.write(msg, file=sys.stderr)
                else:
                    print(msg, file=sys.stderr)
                if isinstance(exc, (OSError, ImportError)) and type(exc).__name__ == "ModelUnavailableError":
                    raise
                continue
            topk = [[m.start - shift, m.end - shift, m.score] for m in res.moments[:top_k]]
            gt = [list(s) for s in q.spans]
            record = {"qid": q.qid, "video": q.video, "sentence": q.sentence,
                      "prediction": topk[0][:2] if topk else None, "topk": topk, "gt": gt,
                      "iou": temporal_iou(topk[0], gt[0]) if topk and gt else None}
            if name.startswith("qvh") and res.curve is not None:
                record["saliency"] = _clip_saliency(res.curve, feats.duration, shift)
            results.append(record)
            if sink is not None:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
            if bar is not None:
                bar.update(1)
                if len(results) % 10 == 0 or len(results) == len(queries):
                    m = grounding_metrics(([x[:2] for x in r["topk"]], r["gt"][0]) for r in results if r["gt"])
                    bar.set_postfix({"R1@0.5": f"{m['R1@0.5']:.1f}", "mIoU": f"{m['mIoU']:.1f}"})
    finally:
        if sink is not None:
            sink.close()
        if bar is not None:
            bar.close()
    metrics = metrics_from_results(results, name, queries)
    if failures:
        metrics["failed"] = float(failures)
    return metrics


def _decomposition_for(q: Query, llm: Mapping[str, Any]) -> Decomposition | None:
    """The decomposition the reference's LLM evaluation uses for ``q``: from
    the LLM outputs, else from the annotation's own "response"; None (VLM
    only, or the grounder's decomposer) when there are neither. An entry
    without ``query_json`` (TFVTG writes {} where its LLM call failed) still
    goes through the voting path with the query alone, as the reference does."""
    if llm:
        entry = llm.get(q.qid, llm.get(f"{q.video}|{q.sentence}"))
    elif q.response is not None:
        entry = q.response
    else:
        return None
    if isinstance(entry, Mapping) and "query_json" in entry:
        return Decomposition.from_tfvtg(entry)
    return Decomposition("single-query")


def _video_features(q: Query, features, videos, encoder, pad_sec: float, rng) -> tuple[VideoFeatures, float]:
    if features is not None:
        npy = Path(features) / f"{q.video}.npy"
        if not npy.exists():
            raise MissingFileError(f"no feature file {npy}")
        array = np.load(npy)
        duration = q.duration if q.duration is not None else VideoFeatures.load(npy).duration
    else:
        from ..api import features_for_video

        vf = features_for_video(_find_video(Path(videos), q.video), encoder=encoder)
        array = vf.tokens
        duration = q.duration if q.duration is not None else vf.duration
    if pad_sec > 0:
        array, duration = pad_features(array, duration, pad_sec, rng)
        return VideoFeatures(array, duration), float(pad_sec)  # moments come back shifted by pad_sec
    return VideoFeatures(array, duration), 0.0


def _clip_saliency(curve: np.ndarray, duration: float, shift: float, clip: float = 2.0) -> list[float]:
    """Mean similarity per ``clip``-second clip of the original video
    (``shift`` seconds of padding, if any, come first and are left out)."""
    t = len(curve)
    times = (np.arange(t) + 0.5) / t * duration - shift
    n = max(1, int((duration - shift) / clip))
    idx = np.clip(np.floor(times / clip).astype(int), -1, n - 1)
    out = np.zeros(n)
    for c in range(n):
        sel = curve[idx == c]
        out[c] = float(sel.mean()) if sel.size else 0.0
    return out.tolist()
