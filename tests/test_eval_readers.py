"""Annotation readers on hostile input: every bad entry is refused on its
own and counted exactly, nothing crashes, strict mode names file and line."""
from __future__ import annotations

import json
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfvtg.errors import DatasetError, InvalidInputError, MissingFileError
from tfvtg.eval.datasets import load_charades_sta, load_qvhighlights, load_tfvtg_json, read_durations_csv
from tfvtg.eval.jsonsafe import read_json
from tfvtg.eval.registry import load_dataset

HUGE = "1" * 400  # a 400-digit number: float() of it as an int overflows


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _video(duration, stamps, sentences=None):
    return {"duration": duration, "timestamps": stamps,
            "sentences": sentences or [f"sentence {i}" for i in range(len(stamps))]}


# ---------------------------------------------------------------- item 8: one bad span costs one query

def test_one_reversed_span_skips_only_that_sentence(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({
        "v1": _video(100, [[1, 5], [20, 10], [30, 40], [50, 60]]),   # sentence 1 reversed
        "v2": _video(50, [[1, 2], [3, 4]]),
        "v3": _video(80, [[9, 8], [1, 2], [7, 6]]),                  # two reversed
    }))
    with pytest.warns(UserWarning, match=r"skipped 3 queries") as record:
        qs = load_tfvtg_json(path)
    assert [q.qid for q in qs] == ["v1#0", "v1#2", "v1#3", "v2#0", "v2#1", "v3#1"]
    assert qs.skipped == 3 and len(qs.problems) == 3
    assert "'v1', sentence 1" in str(record[0].message) and "ends before it starts" in str(record[0].message)
    # the sentences keep their own spans (nothing shifted after the bad one)
    assert qs[1].span == (30.0, 40.0) and qs[1].sentence == "sentence 2"


def test_bad_video_entry_counts_its_sentences(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"ok": _video(10, [[1, 2]]),
                                "nodur": {"timestamps": [[1, 2], [3, 4]], "sentences": ["a", "b"]},
                                "mismatch": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["a", "b", "c"]}}))
    qs = _quiet(load_tfvtg_json, path)
    assert [q.qid for q in qs] == ["ok#0"] and qs.skipped == 2 + 3


# ---------------------------------------------------------------- item 16: values that used to crash or pass

BAD_DURATIONS = ["NaN", "Infinity", "-Infinity", "0", "-3", HUGE, "-" + HUGE, '"abc"', "true", "null", "[1]"]


@pytest.mark.parametrize("duration", BAD_DURATIONS, ids=lambda v: v if len(v) < 20 else "400-digits")
def test_tfvtg_json_refuses_bad_durations_per_video(tmp_path, duration):
    path = tmp_path / "a.json"
    path.write_text('{"bad": {"duration": ' + duration + ', "timestamps": [[1, 2]], "sentences": ["x"]}, '
                    '"good": {"duration": 30, "timestamps": [[1, 2]], "sentences": ["y"]}}')
    qs = _quiet(load_tfvtg_json, path)
    assert [q.qid for q in qs] == ["good#0"] and qs.skipped == 1
    with pytest.raises(DatasetError, match=r"a\.json: video 'bad'"):
        load_tfvtg_json(path, strict=True)


BAD_SPANS = ["[-5, 20]", "[6, Infinity]", "[NaN, 7]", "[6, NaN]", "[25, 50]", "[31, 31.5]", f"[1, {HUGE}]",
             "[1]", "[1, 2, 3]", '"1-2"', "null", "[true, 2]", '["a", 2]']


@pytest.mark.parametrize("span", BAD_SPANS, ids=lambda v: v if len(v) < 20 else "400-digits")
def test_tfvtg_json_refuses_bad_spans_per_sentence(tmp_path, span):
    path = tmp_path / "a.json"
    path.write_text('{"v": {"duration": 30, "timestamps": [[1, 2], ' + span + ', [3, 4]], '
                    '"sentences": ["a", "b", "c"]}}')
    qs = _quiet(load_tfvtg_json, path)
    assert [q.qid for q in qs] == ["v#0", "v#2"] and qs.skipped == 1
    assert all(math.isfinite(x) for q in qs for s in q.spans for x in s)


def test_span_rules_keep_charades_style_overrun(tmp_path):
    # Charades-STA labels end up to 1.5 s after the video: kept, as the published evaluation keeps them
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"v": _video(18.58, [[12.7, 19.9], [0, 18.58], [0, 0]])}))
    qs = load_tfvtg_json(path, strict=True)
    assert [q.span for q in qs] == [(12.7, 19.9), (0.0, 18.58), (0.0, 0.0)]


def test_charades_text_reader_per_line(tmp_path):
    txt = tmp_path / "sta.txt"
    csv = tmp_path / "durations.csv"
    csv.write_text(f"id,length\nA,30\nB,nan\nC,{HUGE}\nD,-1\nE,20\n")
    with pytest.warns(UserWarning, match="skipped 3 queries"):
        durations = read_durations_csv(csv)
    assert durations == {"A": 30.0, "E": 20.0}
    txt.write_bytes(b"A 1.0 5.0##first\n"
                    b"A -5 20##negative start\n"
                    b"A 6 inf##infinite end\n"
                    b"A 25 50##past the end\n"
                    b"A 6 nan##nan\n"
                    b"A 2.0 3.0##caf\xe9 latin-1 byte\n"                  # not UTF-8: this line only
                    b"A " + HUGE.encode() + b" 3##huge\n"
                    b"E 2.0 4.0##second\r\n"
                    b"A 3.0 4.0##third\n")
    qs = _quiet(load_charades_sta, txt, durations=durations)
    assert [(q.qid, q.sentence, q.span) for q in qs] == [
        ("A#0", "first", (1.0, 5.0)), ("E#0", "second", (2.0, 4.0)), ("A#1", "third", (3.0, 4.0))]
    assert qs.skipped == 6
    with pytest.raises(DatasetError, match=r"sta\.txt:2: span \[-5, 20\] starts before 0"):
        load_charades_sta(txt, durations=durations, strict=True)


def test_qvhighlights_reader_per_line(tmp_path):
    base = {"qid": 1, "query": "a dog", "vid": "v", "duration": 150, "relevant_windows": [[0, 4]],
            "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}
    lines = [json.dumps(base)]
    for i, change in enumerate([
            {"relevant_clip_ids": [0, float("inf")]}, {"relevant_clip_ids": [0, int(HUGE)]},
            {"relevant_clip_ids": [0, 75]}, {"relevant_clip_ids": [0, -1]}, {"relevant_clip_ids": [0, 1.5]},
            {"saliency_scores": [[1, 2, 3]]}, {"saliency_scores": [[1, 2, 3], [4, 4, 9]]},
            {"duration": float("nan")}, {"duration": int(HUGE)}, {"relevant_windows": [[140, 170]]},
            {"relevant_windows": [[6, float("inf")]]}, {"qid": 1}, {"query": ""}, {"query": 5}], start=2):
        lines.append(json.dumps({**base, "qid": i, **change}))
    lines.append("[" * 5000 + "]" * 5000)          # nested too deep: this line only
    lines.append('{"qid": 99, "query": "ok"')       # torn
    path = tmp_path / "q.jsonl"
    data = "\n".join(lines).encode() + b"\n" + json.dumps({**base, "qid": 50}).encode().replace(b"a dog", b"a \xff")
    data += b"\n" + json.dumps({**base, "qid": 60}).encode() + b"\n"
    path.write_bytes(data)
    qs = _quiet(load_qvhighlights, path)
    assert [q.qid for q in qs] == ["1", "60"]
    assert qs.skipped == len(lines) - 1 + 1
    assert qs[0].saliency == {0: (1, 2, 3), 1: (4, 4, 4)}
    with pytest.raises(DatasetError, match=r"q\.jsonl:2: .*clip id"):
        load_qvhighlights(path, strict=True)


def test_deeply_nested_json_is_an_error_not_a_recursion(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"v": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(DatasetError, match="deep.json: JSON nested too deeply"):
        load_tfvtg_json(deep)
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_dataset("activitynet", deep)
    # the reusable loader (tfvtg ground --decomposition, LLM outputs)
    with pytest.raises(InvalidInputError, match="deep.json: JSON nested too deeply"):
        read_json(deep, "decomposition file")
    with pytest.raises(MissingFileError, match="decomposition file not found"):
        read_json(tmp_path / "missing.json", "decomposition file")
    (tmp_path / "latin.json").write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        read_json(tmp_path / "latin.json")
    assert read_json(_write(tmp_path / "s.json", '{"k\\ud800": ["\\udfff x"]}')) == {"k\ufffd": ["\ufffd x"]}


def _write(path, text):
    path.write_text(text)
    return path


def test_non_utf8_byte_in_json_skips_its_entry_only(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"v": {"duration": 30, "timestamps": [[1, 2], [3, 4]], "sentences": ["caf\xe9", "ok"]},'
                     b' "w": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["fine"]}}')
    qs = _quiet(load_tfvtg_json, path)
    assert [(q.qid, q.sentence) for q in qs] == [("v#1", "ok"), ("w#0", "fine")] and qs.skipped == 1


def test_lone_surrogates_in_sentences_are_replaced(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"v": {"duration": 30, "timestamps": [[1, 2]], "sentences": ["a \\ud800 door"]}}')
    (q,) = load_tfvtg_json(path)
    assert q.sentence == "a \ufffd door"
    q.sentence.encode("utf-8")  # writable


# ---------------------------------------------------------------- fuzz: never a crash, only valid queries

_numbers = (st.integers() | st.floats() | st.just(int(HUGE)) | st.sampled_from([float("nan"), float("inf")]))
_values = st.recursive(st.none() | st.booleans() | _numbers | st.text(max_size=5),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(
                           st.sampled_from(["duration", "timestamps", "sentences", "response", "qid", "query", "vid",
                                            "relevant_windows", "relevant_clip_ids", "saliency_scores"]),
                           c, max_size=5), max_leaves=16)


def _valid(queries):
    for q in queries:
        assert q.sentence.strip() and q.video
        assert q.duration is None or (math.isfinite(q.duration) and q.duration > 0)
        for s, e in q.spans:
            assert math.isfinite(s) and math.isfinite(e) and 0 <= s <= e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=4), _values, max_size=3), st.lists(_values, max_size=4))
def test_readers_never_crash_on_non_finite_and_huge_numbers(tmp_path, obj, lines):
    js = tmp_path / "a.json"
    js.write_text(json.dumps(obj))  # NaN / Infinity tokens and 400-digit integers included
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps(v) for v in lines))
    for reader, path in ((load_tfvtg_json, js), (load_qvhighlights, jl)):
        try:
            _valid(_quiet(reader, path))
        except DatasetError:
            pass  # the whole file is unusable (not an object): a clear error, not a crash


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_text_readers_never_crash_on_bytes(tmp_path, data):
    path = tmp_path / "sta.txt"
    path.write_bytes(b"A 1 2##x\n" + data)
    _valid(_quiet(load_charades_sta, path))
    path = tmp_path / "q.jsonl"
    path.write_bytes(data)
    _valid(_quiet(load_qvhighlights, path))
