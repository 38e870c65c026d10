"""evaluate(): the dataset registry, methods, the results file (settings,
lock, strict records), Metrics, and each input loaded once, inside its folder."""
from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tfvtg
from tfvtg.errors import DatasetError, InvalidInputError, ResultsFileError
from tfvtg.eval import registry
from tfvtg.eval.methods import MethodError
from tfvtg.eval.metrics import Metrics, format_metrics
from tfvtg.eval.records import ResultsFileLockedError, read_header, read_results
from tfvtg.eval.runner import evaluate

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from parity_synthetic import StandInEncoder as StandIn  # noqa: E402
from parity_synthetic import encode_text, synthetic_features  # noqa: E402


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """Six parity-fixture videos as feature files (three of their queries give
    the reference's NaN confidences) plus annotations and LLM outputs."""
    data = json.loads((FIXTURES / "parity_charades.json").read_text())
    d = tmp_path_factory.mktemp("charades")
    videos = dict(list(data["videos"].items())[:6])
    for vid, video in videos.items():
        np.save(d / f"{vid}.npy", synthetic_features(vid, video, seed=data["seed"]))
    ann = {vid: {k: v[k] for k in ("duration", "timestamps", "sentences")} for vid, v in videos.items()}
    (d / "ann.json").write_text(json.dumps(ann))
    (d / "llm.json").write_text(json.dumps({vid: {**ann[vid], "response": v["response"]}
                                            for vid, v in videos.items()}))
    return d, ann


def _run(d, out=None, **kw):
    kw.setdefault("features", d)
    kw.setdefault("text_encoder", StandIn())
    return evaluate(kw.pop("dataset", "charades"), kw.pop("annotations", d / "ann.json"), out=out, progress=False,
                    **kw)


def _strict_lines(path):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- records: strict JSON, IoU >= 0, null scores

def test_records_are_strict_json_with_null_scores_and_non_negative_iou(subset, tmp_path):
    d, _ = subset
    out = tmp_path / "r.jsonl"
    _run(d, out)
    lines = _strict_lines(out)
    records = lines[1:]
    assert "tfvtg_eval" in lines[0] and all("qid" in r for r in records)
    scores = [m[2] for r in records for m in r["topk"]]
    assert None in scores  # the reference's NaN confidences, kept as null
    assert all(s is None or math.isfinite(s) for s in scores)
    assert all(r["iou"] >= 0 for r in records)

    class Disjoint:
        name = "disjoint"

        def ground_video(self, video, query, duration):
            return [(20.0, 30.0, float("nan")), (0.0, 10.0, float("inf"))]

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.mp4").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"v": {"duration": 30, "timestamps": [[0, 10]], "sentences": ["a"]}}))
    m = evaluate("charades", tmp_path / "a.json", videos=tmp_path / "videos", method=Disjoint(),
                 out=tmp_path / "d.jsonl", progress=False)
    (record,) = _strict_lines(tmp_path / "d.jsonl")[1:]
    assert record["iou"] == 0.0  # TFVTG's raw formula gives -0.5 for these disjoint spans
    assert record["topk"] == [[20.0, 30.0, None], [0.0, 10.0, None]]
    assert m["mIoU"] == 0.0 and m["R5@0.7"] == 100.0


def test_metrics_are_plain_floats_and_counts_are_ints(subset, tmp_path):
    d, ann = subset
    broken = dict(ann, NOFILE={"duration": 10, "timestamps": [[1, 2], [3, 4]], "sentences": ["x", "y"]},
                  BAD={"duration": 10, "timestamps": [[5, 2]], "sentences": ["reversed"]})
    (tmp_path / "ann.json").write_text(json.dumps(broken))
    with pytest.warns(UserWarning, match="skipped 1 query"):
        m = _run(d, annotations=tmp_path / "ann.json")
    assert isinstance(m, Metrics) and isinstance(m, tfvtg.Metrics)
    n = sum(len(v["sentences"]) for v in ann.values())
    assert (m["n"], m["failed"], m["skipped"]) == (n, 2, 1) and (m.n, m.failed, m.skipped) == (n, 2, 1)
    assert all(type(m[k]) is int for k in ("n", "failed", "skipped"))
    assert all(type(v) is float for k, v in m.items() if k not in ("n", "failed", "skipped"))
    table = format_metrics(m)
    assert f"({n} queries, 2 failed, 1 skipped)" in table and "2.00" not in table.splitlines()[-1]
    assert str(m) == table and json.loads(json.dumps(m)) == dict(m)
    with pytest.raises(TypeError):
        m["mIoU"] = 100.0
    clean = _run(d)
    assert "failed" not in clean and clean.failed == 0 and clean.skipped == 0


# ---------------------------------------------------------------- item 12: resume only with the same settings

def test_resume_refuses_other_settings_and_inputs(subset, tmp_path):
    d, ann = subset
    out = tmp_path / "r.jsonl"
    first = _run(d, out, limit=4)
    assert first.n == 4
    header = read_header(out)
    assert header["settings"]["dataset"] == "charades" and header["settings"]["config"]["stride"] == 20
    assert len(header["inputs"]["annotations"]) == 64

    with pytest.raises(ResultsFileError, match=r"config\.stride: 20 in the file, 40 now.*overwrite"):
        _run(d, out, config="activitynet")
    with pytest.raises(ResultsFileError, match=r"config\.stride"):
        _run(d, out, preset="activitynet")  # the old name of config=
    with pytest.raises(ResultsFileError, match=r"pad_sec: 0\.0 in the file, 10\.0 now"):
        _run(d, out, pad_sec=10)
    with pytest.raises(ResultsFileError, match=r"seed"):
        _run(d, out, pad_sec=0, seed=3)
    with pytest.raises(ResultsFileError, match="the llm_outputs file differs"):
        _run(d, out, llm_outputs=d / "llm.json")
    changed = tmp_path / "ann.json"
    changed.write_text(json.dumps(dict(list(ann.items())[:3])))
    with pytest.raises(ResultsFileError, match="the annotations file differs"):
        _run(d, out, annotations=changed)
    assert len(read_results(out)) == 4  # nothing was written by the refused runs

    # same settings: resumes (a torn last line is cut), never writes a query twice
    with open(out, "a") as f:
        f.write('{"qid": "torn')
    full = _run(d, out)
    qids = [r["qid"] for r in read_results(out)]
    assert len(qids) == len(set(qids)) == full.n == sum(len(v["sentences"]) for v in ann.values())
    assert _run(d, out) == full

    # overwrite: starts over with the new settings
    padded = _run(d, out, pad_sec=10, overwrite=True)
    assert read_header(out)["settings"]["pad_sec"] == 10.0 and len(read_results(out)) == padded.n


def test_results_without_settings_line_are_not_resumed(subset, tmp_path):
    d, _ = subset
    out = tmp_path / "old.jsonl"
    out.write_text(json.dumps({"qid": "x#0", "topk": [], "gt": [[1, 2]]}) + "\n")
    with pytest.raises(ResultsFileError, match="without a settings line"):
        _run(d, out)
    assert _run(d, out, overwrite=True).n > 0


# ---------------------------------------------------------------- item 13: one writer per results file

class _Gate:
    """The stand-in text encoder, holding its first call until released."""

    name = "parity-stand-in"

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode_text(self, texts):
        self.entered.set()
        assert self.release.wait(30)
        return encode_text(list(texts))


def test_second_writer_on_the_same_results_file_is_refused(subset, tmp_path):
    d, _ = subset
    out = tmp_path / "r.jsonl"
    gate = _Gate()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("m", _run(d, out, text_encoder=gate)))
    worker.start()
    try:
        assert gate.entered.wait(30)
        with pytest.raises(ResultsFileLockedError, match="another evaluation is writing"):
            _run(d, out)
        assert isinstance(ResultsFileLockedError("x"), ResultsFileError)
    finally:
        gate.release.set()
        worker.join(60)
    qids = [r["qid"] for r in read_results(out)]
    assert len(qids) == len(set(qids)) == outcome["m"].n
    assert _run(d, out) == outcome["m"]  # the lock is released with the run


# ---------------------------------------------------------------- loads each feature file once

def test_each_feature_file_is_loaded_once(subset, tmp_path, monkeypatch):
    d, ann = subset
    vids = list(ann)[:3]
    # QVHighlights-style: one query per line, the videos interleaved
    lines = [{"qid": i, "query": ann[v]["sentences"][0], "vid": v, "duration": ann[v]["duration"],
              "relevant_windows": [ann[v]["timestamps"][0]]} for i, v in enumerate(vids * 3)]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    loads = []
    real = np.load

    def counting(file, *args, **kwargs):
        loads.append(Path(file).name)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting)
    m = _run(d, dataset="qvh", annotations=tmp_path / "q.jsonl", config="charades")
    assert m.n == 9 and "MR-mAP" in m and "HL-mAP" in m
    assert sorted(loads) == sorted(f"{v}.npy" for v in vids)


# ---------------------------------------------------------------- item 19: ids name files inside the folder

def test_video_ids_cannot_escape_the_features_folder(subset, tmp_path, monkeypatch):
    d, ann = subset
    feats = tmp_path / "features"
    feats.mkdir()
    vid = next(iter(ann))
    (feats / f"{vid}.npy").write_bytes((d / f"{vid}.npy").read_bytes())
    secret = tmp_path / "secret"
    secret.mkdir()
    np.save(secret / "leak.npy", np.ones((30, 32, 256), np.float16))
    evil = {vid: ann[vid], "../secret/leak": {"duration": 10, "timestamps": [[1, 2]], "sentences": ["x"]},
            str(secret / "leak"): {"duration": 10, "timestamps": [[1, 2]], "sentences": ["y"]}}
    (tmp_path / "ann.json").write_text(json.dumps(evil))
    opened = []
    real = np.load
    monkeypatch.setattr(np, "load", lambda f, *a, **k: (opened.append(Path(f).resolve()), real(f, *a, **k))[1])
    m = _run(feats, annotations=tmp_path / "ann.json")
    assert m.failed == 2 and m.n == len(ann[vid]["sentences"])
    assert all(p.parent == feats.resolve() for p in opened) and opened


class Toy:
    """A plug-in method: answers the first quarter of the video, and a
    disjoint, NaN-scored span second."""

    name = "toy"

    def __init__(self, **options):
        self.options = options
        self.calls = []

    def ground_video(self, video, query, duration):
        self.calls.append((video, query, duration))
        return [(0.0, duration / 4, 0.9), (duration - 1, duration, float("nan"))]

    def saliency(self, video, query, duration, clip=2.0):
        return [1.0] + [0.0] * (int(duration / clip) - 1)


def test_video_ids_cannot_escape_the_videos_folder(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes(b"not decoded by the toy")
    (tmp_path / "leak.mp4").write_bytes(b"secret")
    ann = {"good": {"duration": 20, "timestamps": [[0, 5]], "sentences": ["a"]},
           "../leak": {"duration": 20, "timestamps": [[0, 5]], "sentences": ["b"]}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    toy = Toy()
    m = evaluate("charades", tmp_path / "ann.json", videos=videos, method=toy, progress=False)
    assert m.failed == 1 and m.n == 1
    assert [Path(c[0]).name for c in toy.calls] == ["good.mp4"]


# ---------------------------------------------------------------- registry

def test_dataset_registry_aliases_splits_and_defaults(subset, tmp_path):
    d, _ = subset
    assert registry.resolve_dataset("Charades-STA").spec.name == "charades"
    assert registry.resolve_dataset("anet").spec.default_preset == "activitynet"
    ood = registry.resolve_dataset("charades-ood-1")
    assert (ood.name, ood.pad_sec) == ("charades-ood-1", 10.0)
    assert registry.resolve_dataset("charades_OOD_2").pad_sec == 15.0
    assert registry.resolve_dataset("activitynet-ood-2").pad_sec == 60.0
    assert {"charades", "charades-ood-1", "charades-ood-2", "activitynet-ood-1", "qvhighlights"} <= set(
        registry.list_datasets())
    with pytest.raises(InvalidInputError, match="unknown dataset 'kinetics'.*charades-ood-1"):
        registry.resolve_dataset("kinetics")

    out = tmp_path / "ood.jsonl"
    ood_metrics = _run(d, out, dataset="charades-ood-1", limit=5)
    assert read_header(out)["settings"]["pad_sec"] == 10.0
    assert _run(d, tmp_path / "pad.jsonl", pad_sec=10, limit=5) == ood_metrics
    assert ood_metrics != _run(d, limit=5)  # the padding matters
    with pytest.raises(InvalidInputError, match="charades-ood-1 pads 10 s"):
        _run(d, dataset="charades-ood-1", pad_sec=5)
    # the dataset's default preset: activitynet's stride 40
    _run(d, tmp_path / "anet.jsonl", dataset="anet", limit=2)
    assert read_header(tmp_path / "anet.jsonl")["settings"]["config"]["stride"] == 40


def test_a_registered_dataset_is_evaluated_through_the_registry(subset, tmp_path):
    d, ann = subset
    seen = []

    def loader(path, *, strict=False, **_):
        seen.append(path)
        return registry.load_tfvtg_json(path, strict=strict)

    spec = registry.register_dataset(registry.DatasetSpec("mine", loader, "activitynet", aliases=("my-set",),
                                                          splits=(registry.Split("noisy", 5.0),)))
    try:
        m = _run(d, tmp_path / "r.jsonl", dataset="MY_SET-noisy", limit=3)
        assert m.n == 3 and seen == [d / "ann.json"]
        header = read_header(tmp_path / "r.jsonl")["settings"]
        assert (header["dataset"], header["pad_sec"], header["config"]["stride"]) == ("mine", 5.0, 40)
    finally:
        registry._REGISTRY.pop(spec.name)
        for key in [k for k, v in registry._LOOKUP.items() if v[0] == "mine"]:
            del registry._LOOKUP[key]
        registry.DATASETS.pop("mine")


# ---------------------------------------------------------------- methods

def test_method_object_and_entry_point_plugins(tmp_path, monkeypatch):
    import importlib.metadata

    videos = tmp_path / "videos"
    videos.mkdir()
    for v in ("a", "b"):
        (videos / f"{v}.mp4").write_bytes(b"x")
    lines = [{"qid": i, "query": f"q{i}", "vid": v, "duration": 40, "relevant_windows": [[0, 10]],
              "relevant_clip_ids": [0, 1], "saliency_scores": [[4, 4, 4], [1, 1, 1]]}
             for i, v in enumerate("abab")]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    out = tmp_path / "r.jsonl"
    m = evaluate("qvhighlights", tmp_path / "q.jsonl", videos=videos, method=Toy(), out=out, progress=False)
    assert m["R1@0.7"] == 100.0 and m["HL-HIT@1"] == 100.0 and m["MR-R1@0.7"] == 100.0
    record = _strict_lines(out)[1]
    assert record["topk"][1][2] is None and record["prediction"] == [0.0, 10.0] and record["iou"] == 1.0

    made = []

    class EntryPoint:
        name = "toy"
        value = "tests:Toy"

        def load(self):
            return lambda **options: made.append(Toy(**options)) or made[-1]

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [EntryPoint()] if kw.get("group") == "tfvtg.methods" else real(**kw))
    from tfvtg.eval.methods import method_names

    assert method_names() == ["tfvtg", "tag", "toy"]
    m2 = evaluate("qvhighlights", tmp_path / "q.jsonl", videos=videos, method="toy",
                  method_options={"mllm": "some/model"}, out=tmp_path / "r2.jsonl", progress=False)
    assert m2 == m and made[0].options == {"mllm": "some/model"}
    assert read_header(tmp_path / "r2.jsonl")["settings"]["method"] == {"name": "toy",
                                                                        "options": {"mllm": "some/model"}}
    with pytest.raises(MethodError, match="unknown method 'nope'.*toy"):
        evaluate("qvhighlights", tmp_path / "q.jsonl", videos=videos, method="nope", progress=False)
    with pytest.raises(MethodError, match="video files"):
        evaluate("qvhighlights", tmp_path / "q.jsonl", features=videos, method="toy", progress=False)
    with pytest.raises(MethodError, match="takes no options"):
        evaluate("qvhighlights", tmp_path / "q.jsonl", features=videos, method="tfvtg",
                 method_options={"mllm": "x"}, text_encoder=StandIn(), progress=False)

    # the CLI passes --mllm and --base-url to the plug-in's factory
    from tfvtg.cli import main

    made.clear()
    assert main(["eval", "--dataset", "qvh", "--annotations", str(tmp_path / "q.jsonl"), "--videos", str(videos),
                 "--method", "toy", "--mllm", "/models/qwen", "--base-url", "http://127.0.0.1:1/v1",
                 "--out", str(tmp_path / "cli.jsonl"), "--no-progress"]) == 0
    assert made[0].options == {"mllm": "/models/qwen", "base_url": "http://127.0.0.1:1/v1"}


def test_tag_method_uses_the_tag_preset_or_says_it_is_missing(subset, tmp_path, monkeypatch):
    from tfvtg import GroundingConfig

    d, _ = subset
    real = GroundingConfig.preset.__func__
    if "tag" not in " ".join(tfvtg.PRESETS):
        with pytest.raises(MethodError, match="method 'tag' needs the grounding preset 'tag-charades'"):
            _run(d, method="tag")
    tag = GroundingConfig(stride=10, max_stride_factor=0.25)
    monkeypatch.setattr(GroundingConfig, "preset", classmethod(
        lambda cls, name, **kw: tag if name == "tag-charades" else real(cls, name, **kw)))
    _run(d, tmp_path / "tag.jsonl", method="tag", limit=2)
    settings = read_header(tmp_path / "tag.jsonl")["settings"]
    assert settings["method"]["name"] == "tag" and settings["config"]["stride"] == 10


def test_llm_outputs_file_nested_too_deeply_is_a_dataset_error(subset, tmp_path):
    d, _ = subset
    (tmp_path / "llm.json").write_text('{"v": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(DatasetError, match="nested too deeply"):
        _run(d, llm_outputs=tmp_path / "llm.json")
