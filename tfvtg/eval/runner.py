"""Benchmark evaluation: ground every query of a dataset, write each result
as it comes, and compute the standard metrics.

Three steps, each its own piece:

1. the runner (this module): reads the annotations through the dataset
   registry, loads each video's input once (its feature file, or the video
   for video methods), grounds that video's queries with the chosen method
   and reports a failed query without stopping;
2. the record writer (:mod:`tfvtg.eval.records`): one strict-JSON line per
   query, appended and flushed, in a locked results file that records the
   run's settings, so that a killed run resumes exactly and a run with other
   settings does not;
3. the metric step (:func:`tfvtg.eval.metrics.metrics_from_results`):
   result lines in, :class:`~tfvtg.eval.metrics.Metrics` out.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfvtg.errors import (
    DatasetError,
    IncompatibleModelError,
    InvalidInputError,
    InvalidTypeError,
    MissingExtraError,
    MissingFileError,
    ModelUnavailableError,
)

from ..core.config import GroundingConfig
from ..core.decomposition import Decomposition
from ..core.features import VideoFeatures
from .datasets import Query, QueryList, check_span
from .jsonsafe import clean_text, read_json
from .methods import BUILTIN_METHODS, MethodError, check_method, find_method, load_method, tag_preset
from .metrics import Metrics, format_metrics, metrics_from_results
from .records import ResultsFile, file_digest, make_record, read_results
from .registry import DatasetChoice, load_dataset, resolve_dataset

__all__ = ["evaluate", "pad_features", "read_results", "metrics_from_results", "format_metrics", "Metrics"]

# errors that no other query can escape: the run stops with them
_FATAL = (ModelUnavailableError, MissingExtraError, IncompatibleModelError)


def pad_features(array: np.ndarray, duration: float, pad_sec: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The paper's out-of-distribution setting: ``pad_sec`` seconds of
    standard-normal noise features before the video. ``array`` is (T, ...)
    frames covering ``duration`` seconds; returns (features with
    ``round(T / duration * pad_sec)`` more frames, new duration in seconds)."""
    t = array.shape[0]
    n = round(t / duration * pad_sec)
    noise = rng.standard_normal((n,) + array.shape[1:]).astype(np.float32)
    return np.concatenate([noise, np.asarray(array, dtype=np.float32)], axis=0), duration + pad_sec


def _video_rng(seed: int, video: str) -> np.random.Generator:
    """Noise for one video, from the seed and the video id alone: the same
    however the run is ordered, interrupted or resumed."""
    digest = hashlib.sha256(video.encode("utf-8", "replace")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


# ---------------------------------------------------------------- inputs: one file per video, inside its folder

def _inside(root: Path, name: str) -> Path:
    """``root / name`` when that stays inside ``root``; a video id like
    "../secret/leak" or "/etc/passwd" is refused. The folder part is resolved
    (symlinked folders outside ``root`` are refused too); the file itself may
    be a symlink, as feature files often are."""
    if not name or "\x00" in name or os.path.isabs(name):
        raise InvalidInputError(f"video id {name!r} is not a name inside {root}")
    candidate = root / name
    base = root.resolve()
    parent = candidate.parent.resolve()
    if parent != base and base not in parent.parents:
        raise InvalidInputError(f"video id {name!r} points outside {root}; ids name files inside that folder")
    return parent / candidate.name


def _find_video(videos: Path, vid: str) -> Path:
    from ..video.decode import VIDEO_SUFFIXES

    for suffix in VIDEO_SUFFIXES:
        for s in (suffix, suffix.upper()):
            p = _inside(videos, f"{vid}{s}")
            if p.is_file():
                return p
    raise MissingFileError(f"no video file for {vid!r} in {videos}")


def _load_feature_file(root: Path, vid: str, duration: float | None) -> tuple[np.ndarray, float, str | None]:
    """The (T, Q, D) array of ``<root>/<vid>.npy``, read once, with its
    duration in seconds: the annotation's, else the sidecar's, else T / 3 fps."""
    from ..io import feature_timing, load_array, read_sidecar

    npy = _inside(root, f"{vid}.npy")
    array = load_array(npy)
    meta = read_sidecar(npy)
    duration, _ = feature_timing(array.shape[0] if array.ndim else 0, meta, duration)
    encoder = meta.get("encoder") if isinstance(meta.get("encoder"), str) else None
    return array, float(duration), encoder


# ---------------------------------------------------------------- methods as the runner sees them

@dataclass
class _Input:
    """One video's input, loaded once for all its queries."""

    payload: Any  # (VideoFeatures, seconds of padding) or (video path, duration)
    duration: float  # the original video's length in seconds (padding excluded)


@dataclass
class _Outcome:
    rows: list[list[Any]]  # [start, end, score] in the original video's seconds, best first
    saliency: list[float] | None = None


class _GrounderRun:
    """TFVTG's Grounder on frame features (from files or encoded videos)."""

    def __init__(self, name: str, grounder: Any, encoder: Any, features: Path | None, videos: Path | None,
                 pad_sec: float, seed: int, llm: Mapping[str, Any], saliency: bool):
        self.name, self.grounder, self.encoder = name, grounder, encoder
        self.features, self.videos = features, videos
        self.pad_sec, self.seed, self.llm, self.saliency = pad_sec, seed, llm, saliency

    def prepare(self, vid: str, duration: float | None) -> _Input:
        """(features, seconds of padding before the video) for one video."""
        if self.features is not None:
            array, duration, space = _load_feature_file(self.features, vid, duration)
        else:
            from ..api import features_for_video

            assert self.videos is not None
            vf = features_for_video(_find_video(self.videos, vid), encoder=self.encoder)
            array, space = vf.tokens, vf.encoder
            duration = vf.duration if duration is None else duration
        original = float(duration)
        if self.pad_sec > 0:
            array, duration = pad_features(array, duration, self.pad_sec, _video_rng(self.seed, vid))
        return _Input((VideoFeatures(array, duration, encoder=space), float(self.pad_sec)), original)

    def ground(self, prepared: _Input, q: Query) -> _Outcome:
        feats, shift = prepared.payload
        res = self.grounder.ground(feats, q.sentence, decomposition=_decomposition_for(q, self.llm))
        rows = [[m.start - shift, m.end - shift, m.score] for m in res.moments]
        sal = _clip_saliency(res.curve, feats.duration, shift) if self.saliency and res.curve is not None else None
        return _Outcome(rows, sal)


class _VideoMethodRun:
    """A plug-in method on video files."""

    def __init__(self, method: Any, videos: Path, saliency: bool):
        self.method, self.videos, self.saliency = method, videos, saliency
        self.name = str(method.name)

    def prepare(self, vid: str, duration: float | None) -> _Input:
        path = _find_video(self.videos, vid)
        if duration is None:
            from ..video.decode import probe

            duration = probe(path).duration
        return _Input(path, float(duration))

    def ground(self, prepared: _Input, q: Query) -> _Outcome:
        path = prepared.payload
        duration = q.duration if q.duration is not None else prepared.duration
        rows = _check_rows(self.method.ground_video(str(path), q.sentence, duration), self.name)
        sal = None
        if self.saliency and callable(getattr(self.method, "saliency", None)):
            sal = [float(x) for x in self.method.saliency(str(path), q.sentence, duration, clip=2.0)]
        return _Outcome(rows, sal)


def _check_rows(rows: Any, name: str) -> list[list[Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise MethodError(f"method {name!r} returned {type(rows).__name__}, not rows [start, end, score]")
    out = []
    for i, row in enumerate(rows):
        values = list(row) if isinstance(row, Iterable) and not isinstance(row, (str, bytes)) else []
        if len(values) not in (2, 3):
            raise MethodError(f"method {name!r}: row {i} is not [start, end, score]: {row!r}")
        try:
            s, e = float(values[0]), float(values[1])
        except (TypeError, ValueError):
            raise MethodError(f"method {name!r}: row {i} has a start or end that is not a number: {row!r}") from None
        if not (np.isfinite(s) and np.isfinite(e)) or e < s:
            raise MethodError(f"method {name!r}: row {i} is not a span in seconds: {row!r}")
        out.append([s, e, values[2] if len(values) == 3 else None])
    return out


# ---------------------------------------------------------------- the run's plan

@dataclass
class _Plan:
    choice: DatasetChoice
    queries: QueryList
    run: _GrounderRun | _VideoMethodRun
    top_k: int
    settings: dict[str, Any]
    inputs: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def _resolve_config(config: GroundingConfig | str | None, preset: GroundingConfig | str | None,
                    method: str, choice: DatasetChoice) -> tuple[GroundingConfig, str | None]:
    if config is not None and preset is not None and config != preset:
        raise InvalidInputError("give config= or its alias preset=, not both")
    chosen = config if config is not None else preset
    if chosen is None:
        if method == "tag":
            return tag_preset(choice.spec.name), f"tag-{choice.spec.name}"
        chosen = choice.spec.default_preset
    if isinstance(chosen, GroundingConfig):
        return chosen, None
    if not isinstance(chosen, str):
        raise InvalidTypeError(f"config must be a GroundingConfig or a preset name, got {type(chosen).__name__}")
    return GroundingConfig.preset(chosen), chosen


def _encoder_identity(encoder: Any) -> dict[str, Any]:
    name = getattr(encoder, "name", None)
    space = getattr(encoder, "space", None)
    return {"name": name if isinstance(name, str) else type(encoder).__name__,
            "space": space if isinstance(space, str) else None}


def _plain_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
            for k, v in sorted(options.items())}


def _plan(dataset: str | DatasetChoice, annotations: str | os.PathLike[str], *, config: Any, preset: Any,
          features: Any, videos: Any, method: Any, method_options: Mapping[str, Any] | None, llm_outputs: Any,
          decomposer: Any, text_encoder: Any, pad_sec: float | None, seed: int, top_k: int,
          limit: int | None, durations: Any, strict: bool) -> _Plan:
    choice = resolve_dataset(dataset)
    if pad_sec is None:
        pad_sec = choice.pad_sec
    pad_sec = float(pad_sec)
    if not np.isfinite(pad_sec) or pad_sec < 0:
        raise InvalidInputError(f"pad_sec must be a finite number of seconds >= 0, got {pad_sec!r}")
    if choice.split is not None and pad_sec != choice.pad_sec:
        raise InvalidInputError(f"{choice.name} pads {choice.pad_sec:g} s; for {pad_sec:g} s evaluate "
                                f"{choice.spec.name!r} with that padding")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be a whole number >= 1, got {top_k!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(f"limit must be a whole number >= 0, got {limit!r}")
    options = dict(method_options or {})
    saliency = choice.spec.metrics == "qvhighlights"
    builtin = isinstance(method, str) and method in BUILTIN_METHODS
    # every argument is checked before anything is read or loaded
    if builtin:
        if options:
            raise MethodError(f"method {method!r} takes no options ({', '.join(sorted(options))}); those are for "
                              "plug-in methods such as numpro")
        if (features is None) == (videos is None):
            raise InvalidInputError("give exactly one of features=DIR (.npy files) or videos=DIR (video files)")
    else:
        if isinstance(method, str):
            find_method(method)  # an unknown name is the first thing to say
        if config is not None or preset is not None:
            raise MethodError("config=/preset= choose the Grounder's settings; a plug-in method has its own")
        if llm_outputs or decomposer is not None:
            raise MethodError("LLM decompositions (llm_outputs=, decomposer=) are for the tfvtg and tag methods")
        if videos is None or features is not None:
            raise MethodError(f"method {getattr(method, 'name', method)!r} works on video files: give videos=DIR "
                              "(and no features=)")
        if pad_sec > 0:
            raise MethodError("noise padding (pad_sec, the OOD splits) applies to frame features: it needs the "
                              "tfvtg or tag method")
    feature_dir, video_dir = _folder(features, "features"), _folder(videos, "videos")

    queries = load_dataset(choice, annotations, strict=strict, durations=durations)
    if limit is not None:
        queries = QueryList(queries[:limit], queries.path, queries.skipped, queries.problems)

    run: _GrounderRun | _VideoMethodRun
    if builtin:
        cfg, preset_name = _resolve_config(config, preset, method, choice)
        encoder = _text_encoder(text_encoder)
        from ..core.grounder import Grounder

        grounder = Grounder(encoder, cfg, decomposer)
        llm = _load_llm_outputs(llm_outputs) if llm_outputs else {}
        run = _GrounderRun(method, grounder, encoder, feature_dir, video_dir, pad_sec, seed, llm, saliency)
        method_record: dict[str, Any] = {"name": method}
        settings_extra = {"config": asdict(grounder.config), "encoder": _encoder_identity(encoder),
                          "decomposer": None if decomposer is None else
                          {"type": type(decomposer).__name__, "model": str(getattr(decomposer, "model", ""))}}
        info_extra = {"preset": preset_name, "features": str(features) if features else None,
                      "videos": str(videos) if videos else None}
    else:
        assert video_dir is not None
        obj = load_method(method, **options) if isinstance(method, str) else check_method(method)
        run = _VideoMethodRun(obj, video_dir, saliency)
        method_record = {"name": run.name, "options": _plain_options(options)}
        settings_extra = {"config": None, "encoder": None, "decomposer": None}
        info_extra = {"videos": str(videos)}

    settings = {"dataset": choice.spec.name, "method": method_record, "pad_sec": pad_sec,
                "seed": int(seed), "top_k": top_k, **settings_extra}
    durations_digest = file_digest(durations) if isinstance(durations, (str, os.PathLike)) else None
    inputs = {"annotations": file_digest(annotations),
              "llm_outputs": file_digest(llm_outputs) if llm_outputs else None,
              "durations": durations_digest}
    from .. import __version__

    info = {"annotations": str(annotations), "llm_outputs": str(llm_outputs) if llm_outputs else None,
            "tfvtg": __version__, **info_extra}
    return _Plan(choice, queries, run, top_k, settings, inputs, info)


def _folder(path: Any, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        raise MissingFileError(f"{what} folder not found: {path}")
    return p


def _text_encoder(encoder: Any) -> Any:
    if encoder is None:
        from ..api import default_encoder

        return default_encoder()
    if isinstance(encoder, (str, os.PathLike)):
        from ..encoders import load_encoder

        return load_encoder(encoder)
    return encoder


# ---------------------------------------------------------------- the loop

class _Progress:
    """A tqdm bar (or stderr lines) with a running R1@0.5 / mIoU."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="query", desc=desc)
        self.hits = 0
        self.iou_sum = 0.0
        self.scored = 0

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def done(self, record: Mapping[str, Any]) -> None:
        if record.get("iou") is not None:
            self.scored += 1
            self.iou_sum += float(record["iou"])
            self.hits += float(record["iou"]) >= 0.5
        if self.bar is not None:
            self.bar.update(1)
            if self.scored:
                self.bar.set_postfix({"R1@0.5": f"{100 * self.hits / self.scored:.1f}",
                                      "mIoU": f"{100 * self.iou_sum / self.scored:.1f}"}, refresh=False)

    def skip(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _by_video(queries: Iterable[Query]) -> dict[str, list[Query]]:
    """Queries grouped by video, videos in order of first appearance (each
    video's input is then loaded once even when its queries are scattered)."""
    groups: dict[str, list[Query]] = {}
    for q in queries:
        groups.setdefault(q.video, []).append(q)
    return groups


def _run(plan: _Plan, todo: Sequence[Query], write: Callable[[dict[str, Any]], None],
         progress: _Progress) -> tuple[int, int]:
    """Ground ``todo`` video by video; returns (failed, skipped) query counts."""
    failed = skipped = 0
    for vid, group in _by_video(todo).items():
        duration = next((q.duration for q in group if q.duration is not None), None)
        try:
            prepared = plan.run.prepare(vid, duration)
        except _FATAL:
            raise
        except Exception as exc:  # one bad video never ends a run
            failed += len(group)
            progress.write(f"failed {len(group)} {'query' if len(group) == 1 else 'queries'} of video {vid!r}: "
                           f"{type(exc).__name__}: {exc}")
            progress.skip(len(group))
            continue
        for q in group:
            try:
                if q.duration is None:  # the text format: the spans meet the duration only now
                    for span in q.spans:
                        check_span(span, prepared.duration)
            except InvalidInputError as exc:
                skipped += 1
                progress.write(f"skipped {q.qid}: {exc}")
                progress.skip(1)
                continue
            try:
                outcome = plan.run.ground(prepared, q)
            except _FATAL:
                raise
            except Exception as exc:
                failed += 1
                progress.write(f"failed {q.qid}: {type(exc).__name__}: {exc}")
                progress.skip(1)
                continue
            record = make_record(q.qid, q.video, q.sentence, outcome.rows, q.spans, plan.top_k, outcome.saliency)
            write(record)
            progress.done(record)
    return failed, skipped


def evaluate(dataset: str, annotations: str | os.PathLike[str], *,
             config: GroundingConfig | str | None = None, preset: GroundingConfig | str | None = None,
             features: str | os.PathLike[str] | None = None, videos: str | os.PathLike[str] | None = None,
             method: Any = "tfvtg", method_options: Mapping[str, Any] | None = None,
             llm_outputs: str | os.PathLike[str] | None = None, decomposer: Any = None, text_encoder: Any = None,
             out: str | os.PathLike[str] | None = None, overwrite: bool = False,
             pad_sec: float | None = None, seed: int = 0, top_k: int = 10, limit: int | None = None,
             durations: str | os.PathLike[str] | Mapping[str, float] | None = None, strict: bool = False,
             progress: bool = True) -> Metrics:
    """Ground every query of a benchmark and return its metrics.

    Args:
        dataset: a registered name: "charades", "activitynet", "qvhighlights",
            an alias ("charades-sta", "anet", "qvh") or a split
            ("charades-ood-1": 10 s of noise before each video; see
            :mod:`tfvtg.eval.registry`).
        annotations: the dataset's annotation file (see :mod:`tfvtg.eval.datasets`).
        config: grounding config or preset name (default: the dataset's
            preset, or ``tag-<dataset>`` for method "tag"). ``preset`` is
            its old name, kept as an alias.
        features: folder of ``<video>.npy`` feature files (TFVTG layout), or
        videos: folder of video files (encoded with ``text_encoder`` and
            cached, for the tfvtg/tag methods; given as files to plug-ins).
        method: "tfvtg" (default), "tag", the name of a plug-in in the
            entry-point group ``tfvtg.methods``, or a method object (see
            :class:`tfvtg.eval.methods.VideoMethod`).
        method_options: keyword arguments for a plug-in's factory (e.g.
            ``{"mllm": "Qwen/Qwen2-VL-7B-Instruct"}``).
        llm_outputs: TFVTG-format ``llm_outputs.json`` with decompositions;
            otherwise ``decomposer`` (e.g. :class:`~tfvtg.OpenAIDecomposer`)
            or the annotations' own "response" entries, else VLM only.
        text_encoder: the encoder of the features' space: an object, or a
            registry name / local directory for :func:`tfvtg.load_encoder`
            (default: BLIP-2, TFVTG_BLIP2_MODEL).
        out: JSONL results file: appended as results come and resumed when it
            holds results of the same settings and inputs (see
            :mod:`tfvtg.eval.records`); locked while the run writes.
        overwrite: start ``out`` over instead of resuming it.
        pad_sec, seed: out-of-distribution padding (seconds of seeded noise
            features before each video; moments are shifted back, so ground
            truth is unchanged). ``pad_sec`` defaults to the split's (0 s
            for a plain dataset).
        top_k: moments kept per query in ``out``.
        limit: evaluate only the first ``limit`` queries.
        durations: Charades-STA ``.txt`` annotations: CSV of video durations
            (without it, each video's duration comes from its features).
        strict: refuse the whole annotation file at its first malformed entry
            (DatasetError naming file and line) instead of skipping it.
        progress: show a progress bar.

    Returns:
        :class:`~tfvtg.eval.metrics.Metrics`: "R1@0.3", "R1@0.5", "R1@0.7",
        "R5@0.3", "R5@0.5", "R5@0.7", "mIoU" (floats, percent), "n" (int,
        queries scored), "failed" and "skipped" (ints, when not zero), and
        for QVHighlights "MR-mAP@0.5", "MR-mAP@0.75", "MR-mAP", "MR-R1@0.5",
        "MR-R1@0.7" (and "HL-mAP", "HL-HIT@1" from per-clip saliency).

    Raises:
        ResultsFileError: ``out`` holds another run's results (the message
            says what differs) or another evaluation is writing it.
        DatasetError: the annotation file cannot be read at all (or, with
            ``strict``, has a malformed entry).
    """
    plan = _plan(dataset, annotations, config=config, preset=preset, features=features, videos=videos,
                 method=method, method_options=method_options, llm_outputs=llm_outputs, decomposer=decomposer,
                 text_encoder=text_encoder, pad_sec=pad_sec, seed=seed, top_k=top_k, limit=limit,
                 durations=durations, strict=strict)
    queries = plan.queries
    results_file = (ResultsFile(out, plan.settings, plan.inputs, plan.info, overwrite=overwrite)
                    if out is not None else None)
    memory: dict[str, dict[str, Any]] = {}
    if results_file is not None:
        results_file.open()
        memory = results_file.done
    try:
        todo = [q for q in queries if q.qid not in memory]
        bar = _Progress(progress, len(queries), len(queries) - len(todo), f"eval {plan.choice.name}")
        write = results_file.append if results_file is not None else (lambda r: memory.__setitem__(r["qid"], r))
        try:
            failed, skipped = _run(plan, todo, write, bar)
        finally:
            bar.close()
    finally:
        if results_file is not None:
            results_file.close()
    results = [memory[q.qid] for q in queries if q.qid in memory]
    return metrics_from_results(results, plan.choice.spec.name, queries, failed=failed,
                                skipped=skipped + queries.skipped)


# ---------------------------------------------------------------- LLM decompositions

def _load_llm_outputs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """{"<video>#<i>" and "<video>|<sentence>": TFVTG response} from an
    llm_outputs.json; entries that are not objects are left out."""
    data = read_json(path, "LLM outputs file", DatasetError)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object {{video: {{sentences, response}}}}, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for vid, ann in data.items():
        if not isinstance(ann, dict) or not isinstance(ann.get("response"), list):
            continue
        sentences: list[Any] = ann["sentences"] if isinstance(ann.get("sentences"), list) else []
        for i, resp in enumerate(ann["response"]):
            out[f"{vid}#{i}"] = resp
            if i < len(sentences) and isinstance(sentences[i], str):
                out[f"{vid}|{clean_text(sentences[i]).strip()}"] = resp
    return out


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

