"""Datasets, metrics (hand-checked), resumable evaluation, plots, CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tfvtg.eval.datasets import DatasetError, load_charades_sta, load_dataset, load_qvhighlights, load_tfvtg_json
from tfvtg.eval.metrics import grounding_metrics, qvhighlights_metrics, saliency_ap, temporal_iou
from tfvtg.eval.runner import evaluate, pad_features, read_results

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from parity_synthetic import StandInEncoder as StandIn  # noqa: E402
from parity_synthetic import synthetic_features  # noqa: E402

# ---------------------------------------------------------------- datasets

def test_readers(tmp_path):
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"v1": {"duration": 30, "timestamps": [[1, 5], [6, 9]], "sentences": ["a b", "c d"]},
                              "v2": {"duration": 10, "timestamps": [[1, 5]], "sentences": []}}))
    with pytest.warns(UserWarning, match="v2"):
        qs = load_tfvtg_json(js)
    assert [q.qid for q in qs] == ["v1#0", "v1#1"] and qs[1].span == (6.0, 9.0) and qs[0].duration == 30
    with pytest.raises(DatasetError, match="v2"):
        load_tfvtg_json(js, strict=True)

    txt = tmp_path / "charades_test.txt"
    txt.write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n"
                   "broken line without hashes\n"
                   "AO8RW 2.0 1.0##end before start\n"
                   "Y6R7T 3.1 9.2##person opens the door.\n")
    csv = tmp_path / "durations.csv"
    csv.write_text("id,subject,length\nAO8RW,x,33.67\n")
    np.save(tmp_path / "Y6R7T.npy", np.zeros((60, 2, 4), np.float16))
    with pytest.warns(UserWarning, match=r"charades_test.txt:2.*and|charades_test.txt:2"):
        qs = load_charades_sta(txt, durations=csv, features=tmp_path)
    assert [(q.video, q.span, q.duration) for q in qs] == [("AO8RW", (0.0, 6.9), 33.67), ("Y6R7T", (3.1, 9.2), 20.0)]
    with pytest.raises(DatasetError, match=":2:"):
        load_charades_sta(txt, strict=True)

    jl = tmp_path / "qvh.jsonl"
    jl.write_text(json.dumps({"qid": 7, "query": "q", "duration": 150, "vid": "v", "relevant_windows": [[0, 4], [10, 20]],
                              "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}) + "\n{bad\n")
    with pytest.warns(UserWarning, match="qvh.jsonl:2"):
        (q,) = load_qvhighlights(jl)
    assert q.spans == ((0.0, 4.0), (10.0, 20.0)) and q.saliency[1] == (4, 4, 4)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("kinetics", js)
    with pytest.raises(FileNotFoundError):
        load_dataset("charades", tmp_path / "missing.json")


# ---------------------------------------------------------------- metrics

def test_grounding_metrics_hand_checked():
    records = [
        ([[0, 10], [50, 60]], [0, 10]),      # IoU 1
        ([[0, 4], [0, 10]], [0, 10]),         # top-1 IoU 0.4, top-2 IoU 1
        ([[20, 30]], [0, 10]),                # disjoint: IoU -0.5 -> counts 0 in mIoU
    ]
    m = grounding_metrics(records)
    assert m["n"] == 3
    assert m["R1@0.3"] == pytest.approx(200 / 3) and m["R1@0.5"] == pytest.approx(100 / 3)
    assert m["R5@0.5"] == pytest.approx(200 / 3) and m["R5@0.7"] == pytest.approx(200 / 3)
    assert m["mIoU"] == pytest.approx(100 * (1 + 0.4 + 0) / 3)
    assert temporal_iou([20, 30], [0, 10]) == pytest.approx(-1 / 3)


def test_qvhighlights_metrics_hand_checked():
    gt = [{"qid": i, "duration": 10, "relevant_windows": [[0, 10]], "relevant_clip_ids": [1, 2],
           "saliency_scores": [[4, 4, 1], [2, 4, 4]]} for i in range(3)]
    sub = [{"qid": 0, "pred_relevant_windows": [[0, 10, 0.9]]},
           {"qid": 1, "pred_relevant_windows": [[20, 30, 0.9], [0, 10, 0.5]]},
           {"qid": 2, "pred_relevant_windows": [[0, 6, 0.9]]}]
    m = qvhighlights_metrics(sub, gt)
    assert m["MR-mAP@0.5"] == pytest.approx(83.33)
    assert m["MR-mAP@0.75"] == pytest.approx(50.0)
    assert m["MR-mAP"] == pytest.approx(60.0)
    assert m["MR-R1@0.5"] == pytest.approx(66.67) and m["MR-R1@0.7"] == pytest.approx(33.33)
    assert "HL-mAP" not in m
    for d in sub:
        d["pred_saliency_scores"] = [0.1, 0.9, 0.5, 0.2, 0.0]
    m = qvhighlights_metrics(sub, gt)
    assert m["HL-HIT@1"] == pytest.approx(100.0) and m["HL-mAP"] == pytest.approx(83.33)


def test_saliency_ap_cases():
    assert saliency_ap([0, 1, 0], [0.1, 0.9, 0.3]) == 1.0
    assert saliency_ap([0, 0, 1], [0.9, 0.5, 0.4]) == pytest.approx(1 / 3)
    assert saliency_ap([0, 0], [0.1, 0.2]) == 0.0 and saliency_ap([1, 1], [0.1, 0.2]) == 1.0


# ---------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def charades_subset(tmp_path_factory):
    """Twelve parity-fixture videos as feature files plus their annotations."""
    data = json.loads((FIXTURES / "parity_charades.json").read_text())
    d = tmp_path_factory.mktemp("charades")
    videos = dict(list(data["videos"].items())[:12])
    for vid, video in videos.items():
        np.save(d / f"{vid}.npy", synthetic_features(vid, video, seed=data["seed"]))
    ann = {vid: {k: v[k] for k in ("duration", "timestamps", "sentences")} for vid, v in videos.items()}
    (d / "ann.json").write_text(json.dumps(ann))
    llm = {vid: {**ann[vid], "response": v["response"]} for vid, v in videos.items()}
    (d / "llm_outputs.json").write_text(json.dumps(llm))
    refs = {f"{c['video']}|{c['sentence']}": c["reference"] for c in data["cases"] if c["video"] in videos}
    return d, ann, refs


def test_evaluate_agrees_with_reference_predictions(charades_subset, tmp_path):
    d, ann, refs = charades_subset
    out = tmp_path / "res.jsonl"
    m = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(), out=out, progress=False)
    lines = read_results(out)
    assert m["n"] == len(lines) == sum(len(v["sentences"]) for v in ann.values())
    # the metrics the reference's own top-1 predictions give on the same queries
    ref_records = [([refs[f"{x['video']}|{x['sentence']}"]["vlm_top10"][0][:2]], x["gt"][0]) for x in lines]
    ref_m = grounding_metrics(ref_records)
    for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU"):
        assert abs(m[k] - ref_m[k]) <= 100 * 3 / m["n"] + 1e-9, k  # at most a few undefined cases differ
    assert set(lines[0]) >= {"qid", "prediction", "topk", "gt", "iou"}


def test_evaluate_resumes_without_duplicates(charades_subset, tmp_path):
    d, ann, _ = charades_subset
    out = tmp_path / "res.jsonl"
    first = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(), out=out, limit=5,
                     progress=False)
    assert first["n"] == 5
    with open(out, "a") as f:
        f.write('{"qid": "torn')  # a run killed mid-line
    full = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(), out=out, progress=False)
    qids = [r["qid"] for r in read_results(out)]
    assert len(qids) == len(set(qids)) == full["n"]
    again = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(), out=out, progress=False)
    assert again == full


def test_evaluate_with_llm_outputs_and_padding(charades_subset, tmp_path):
    d, _, _ = charades_subset
    m = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(),
                 llm_outputs=d / "llm_outputs.json", progress=False, limit=8)
    assert m["n"] == 8 and 0 <= m["mIoU"] <= 100
    padded = evaluate("charades", d / "ann.json", features=d, text_encoder=StandIn(), pad_sec=10, seed=1,
                      progress=False, limit=8, out=tmp_path / "p.jsonl")
    lines = read_results(tmp_path / "p.jsonl")
    assert padded["n"] == 8 and all(r["gt"] for r in lines)
    arr, dur = pad_features(np.ones((30, 2, 4)), 10.0, 5.0, np.random.default_rng(0))
    assert arr.shape == (45, 2, 4) and dur == 15.0
    with pytest.raises(ValueError, match="exactly one"):
        evaluate("charades", d / "ann.json", text_encoder=StandIn())


def test_missing_feature_file_is_reported_and_run_goes_on(charades_subset, tmp_path):
    d, ann, _ = charades_subset
    ann2 = dict(ann)
    ann2["NOFILE"] = {"duration": 10, "timestamps": [[1, 2]], "sentences": ["x"]}
    (tmp_path / "ann.json").write_text(json.dumps(ann2))
    m = evaluate("charades", tmp_path / "ann.json", features=d, text_encoder=StandIn(), progress=False)
    assert m["failed"] == 1 and m["n"] == sum(len(v["sentences"]) for v in ann.values())


# ---------------------------------------------------------------- pictures

def test_plot_result_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from tfvtg import Grounder, VideoFeatures

    data = json.loads((FIXTURES / "parity_charades.json").read_text())
    case = next(c for c in data["cases"] if c["decomposition"]["relationship"] == "sequentially")
    feats = VideoFeatures(synthetic_features(case["video"], data["videos"][case["video"]], seed=0), case["duration"])
    res = Grounder(StandIn(), "charades").ground(feats, case["sentence"], decomposition=case["decomposition"])
    fig = res.plot(ground_truth=case["timestamp"], path=tmp_path / "r.png")
    assert len(fig.axes) == 2
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert "GroundingResult(" in repr(res) and res.to_dict()["moments"] and res.rows()[0]["rank"] == 0
    assert "<table>" in res._repr_html_() and "sequentially" in res._repr_html_()


def test_eval_cli(charades_subset, tmp_path, tiny_blip2_dir, capsys):
    from tfvtg.cli import main

    d, _, _ = charades_subset
    # the tiny BLIP-2 has another feature size: the error names the mismatch, exit 0 with failures counted
    code = main(["eval", "--dataset", "charades", "--annotations", str(d / "ann.json"), "--features", str(d),
                 "--blip2", tiny_blip2_dir, "--limit", "2", "--out", str(tmp_path / "r.jsonl")])
    assert code == 1 and "dimension" in capsys.readouterr().err


# ---------------------------------------------------------------- parser guards

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), max_size=8))
def test_charades_reader_never_crashes(tmp_path, lines):
    import warnings

    path = tmp_path / "sta.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        queries = load_charades_sta(path)
    for q in queries:
        assert q.sentence.strip() and q.span[0] <= q.span[1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                    max_leaves=12))
def test_qvhighlights_reader_never_crashes(tmp_path, value):
    import warnings

    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(value) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_qvhighlights(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=6),
                       st.recursive(st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                        st.sampled_from(["duration", "timestamps", "sentences", "response", "x"]),
                                        c, max_size=4), max_leaves=12), max_size=3))
def test_tfvtg_json_reader_never_crashes(tmp_path, value):
    import warnings

    path = tmp_path / "a.json"
    path.write_text(json.dumps(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for q in load_tfvtg_json(path):
            assert q.sentence.strip() and q.span[0] <= q.span[1]


def test_llm_outputs_without_query_json_vote_like_the_reference(charades_subset):
    from tfvtg import Decomposition, Grounder, VideoFeatures
    from tfvtg.eval.datasets import Query
    from tfvtg.eval.runner import _decomposition_for

    q = Query("v#0", "v", "a person sits", 10.0, ((1.0, 2.0),), response={})
    assert _decomposition_for(q, {}) == Decomposition("single-query")  # {}: the query alone, voted
    assert _decomposition_for(Query("v#0", "v", "x", 10.0, ((1.0, 2.0),)), {}) is None  # no LLM at all
    full = {"relationship": "single-query", "query_json": [{"descriptions": ["a b"]}]}
    assert _decomposition_for(q, {"v#0": full}).query_descriptions == ("a b",)
    # the voting path on the query alone re-ranks its own top 3
    d, ann, _ = charades_subset
    vid = next(iter(ann))
    feats = VideoFeatures(np.load(d / f"{vid}.npy"), ann[vid]["duration"])
    res = Grounder(StandIn(), "charades").ground(feats, ann[vid]["sentences"][0],
                                                 decomposition=Decomposition("single-query"))
    assert res.moments and len(res.moments) <= 3
