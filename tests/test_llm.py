"""LLM decomposition against a real chat server on 127.0.0.1, through the real openai client."""
from __future__ import annotations

import json
import logging
import time
import warnings

import pytest
from chat_server import ChatServer, Reply, decomposition_answer, query_in
from hypothesis import given, settings
from hypothesis import strategies as st

from tfvtg import Decomposition, Grounder
from tfvtg.llm.client import (
    DecompositionCache,
    DecompositionError,
    LLMTimeoutError,
    OpenAIDecomposer,
    extract_json,
    parse_reply,
)

pytest.importorskip("openai")

KEY = "sk-test-SECRET-123456"


answer = decomposition_answer
query_of = query_in


def make(server, tmp_path, **kw) -> OpenAIDecomposer:
    kw.setdefault("timeout", 5)
    kw.setdefault("max_retries", 2)
    return OpenAIDecomposer(model="test-model", base_url=server.url, api_key=KEY,
                            cache=tmp_path / "llm.sqlite", **kw)


def test_good_reply(tmp_path):
    with ChatServer(lambda req, n: Reply(answer(query_of(req)))) as server:
        dec = make(server, tmp_path).decompose("a man opens the door then sits")
    assert dec.relationship == "sequentially" and not dec.fallback
    assert dec.sub_events == (("first of a man opens the door then sits",), ("second of a man opens the door then sits",))
    req = server.requests[0]
    assert req["model"] == "test-model"
    assert "a man opens the door then sits" in req["messages"][1]["content"]
    assert req["response_format"]["type"] == "json_schema"  # structured output asked for
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_429_with_retry_after_then_success(tmp_path):
    def script(req, n):
        if n == 0:
            return Reply(status=429, headers={"Retry-After": "0", "retry-after-ms": "20"},
                         body={"error": {"message": "slow down"}})
        return Reply(answer(query_of(req)))

    with ChatServer(script) as server:
        dec = make(server, tmp_path).decompose("q")
    assert not dec.fallback and len(server.requests) == 2


def test_500_then_success(tmp_path):
    def script(req, n):
        if n == 0:
            return Reply(status=500, headers={"retry-after-ms": "10"}, body={"error": {"message": "boom"}})
        return Reply(answer(query_of(req)))

    with ChatServer(script) as server:
        assert not make(server, tmp_path).decompose("q").fallback
    assert len(server.requests) == 2


def test_not_json_gets_one_repair_then_falls_back(tmp_path):
    with ChatServer(lambda req, n: Reply("I think the person opens a door.")) as server:
        with pytest.warns(UserWarning, match="single event"):
            dec = make(server, tmp_path).decompose("a person opens a door")
    assert dec.fallback and dec.relationship == "single-query"
    assert dec.query_descriptions == ("a person opens a door",)
    assert len(server.requests) == 2
    repair = server.requests[1]["messages"][-1]["content"]
    assert "no JSON object" in repair  # the repair quotes the error


def test_schema_violation_repaired(tmp_path):
    bad = json.dumps({"relationship": "afterwards", "query_json": []})

    def script(req, n):
        return Reply(bad if n == 0 else f"Sure! ```json\n{answer(query_of(req), 'simultaneously')}\n```")

    with ChatServer(script) as server:
        dec = make(server, tmp_path).decompose("q")
    assert dec.relationship == "simultaneously" and not dec.fallback
    assert "relationship" in server.requests[1]["messages"][-1]["content"]


def test_server_that_never_answers_times_out_clearly(tmp_path):
    with ChatServer(lambda req, n: Reply(answer("q"), delay=3.0)) as server:
        dec = make(server, tmp_path, timeout=0.5, max_retries=0)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="timed out") as info:
            dec.decompose("q")
        assert time.monotonic() - t0 < 2.5
    assert isinstance(info.value, TimeoutError)


def test_structured_output_refused_falls_back_to_plain_prompting(tmp_path):
    def script(req, n):
        if "response_format" in req:
            return Reply(status=400, body={"error": {"message": "response_format not supported"}})
        return Reply(answer(query_of(req)))

    with ChatServer(script) as server:
        d = make(server, tmp_path)
        assert not d.decompose("q1").fallback
        assert not d.decompose("q2").fallback
    assert [("response_format" in r) for r in server.requests] == [True, False, False]


def test_hundred_queries_concurrently_in_order_then_cached(tmp_path):
    active, peak = [0], [0]

    def script(req, n):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        active[0] -= 1
        return Reply(answer(query_of(req), "single-query"))

    queries = [f"query number {i}" for i in range(100)]
    with ChatServer(script) as server:
        d = make(server, tmp_path)
        decs = d.decompose_many(queries, concurrency=8, progress=False)
        assert [x.query_descriptions[0] for x in decs] == queries
        assert len(server.requests) == 100
        assert 1 < peak[0] <= 8
        again = make(server, tmp_path).decompose_many(queries, concurrency=8, progress=False)
        assert len(server.requests) == 100  # a cached re-run sends nothing
        assert again == decs


def test_batch_survives_a_failing_query(tmp_path):
    def script(req, n):
        if query_of(req) == "bad one":
            return Reply(status=400, body={"error": {"message": "nope"}})
        return Reply(answer(query_of(req)))

    with ChatServer(script) as server:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            decs = make(server, tmp_path, structured=True).decompose_many(["good", "bad one", "fine"],
                                                                          progress=False)
    assert [d.fallback for d in decs] == [False, True, False]


def test_key_never_leaks(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    messages = []
    with ChatServer(lambda req, n: Reply(status=401, body={"error": {"message": "bad key"}})) as server:
        d = make(server, tmp_path, max_retries=0)
        with pytest.raises(DecompositionError) as info:
            d.decompose("q")
        messages.append(str(info.value))
        messages.append(repr(d))
    with ChatServer(lambda req, n: Reply(answer(query_of(req)))) as server:
        d = make(server, tmp_path)
        d.decompose("q2")
        d.decompose_many(["q3", "q4"], progress=False)
    everything = "\n".join(messages + [r.getMessage() for r in caplog.records] + [caplog.text])
    assert KEY not in everything
    assert KEY.encode() not in (tmp_path / "llm.sqlite").read_bytes()


def test_grounder_decomposes_on_the_fly(tmp_path):
    import numpy as np

    from tfvtg import VideoFeatures

    class Enc:
        def encode_text(self, texts):
            return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(16) for t in texts])

    feats = VideoFeatures(np.random.default_rng(0).standard_normal((60, 4, 16)), duration=20.0)
    with ChatServer(lambda req, n: Reply(answer(query_of(req)))) as server:
        g = Grounder(Enc(), "charades", decomposer=make(server, tmp_path))
        res = g.ground(feats, "a man walks then sits")
    assert res.decomposition.relationship == "sequentially" and len(res.sub_event_moments) == 2


def test_no_key_and_no_server_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("TFVTG_LLM_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIDecomposer()


def test_default_decomposer_notice(monkeypatch, caplog):
    import tfvtg.llm.client as llm

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TFVTG_LLM_BASE_URL", raising=False)
    monkeypatch.setattr(llm, "_NOTICE_SHOWN", False)
    with caplog.at_level(logging.INFO, logger="tfvtg.llm"):
        assert llm.default_decomposer() is None
        assert llm.default_decomposer() is None
    assert sum("VLM-only" in r.getMessage() for r in caplog.records) == 1


def test_cache_import_of_tfvtg_outputs_and_concurrent_writers(tmp_path):
    outputs = {"vid1": {"duration": 10, "sentences": ["a", "b"],
                        "response": [json.loads(answer("a")), json.loads(answer("b", "single-query"))]}}
    path = tmp_path / "llm_outputs.json"
    path.write_text(json.dumps(outputs))
    cache = DecompositionCache(tmp_path / "c.sqlite")
    assert cache.import_tfvtg(path, "m", "v") == 2
    assert cache.get("m", "v", "b").relationship == "single-query"
    assert cache.get("other-model", "v", "b") is None

    import threading

    def writer(k):
        c = DecompositionCache(tmp_path / "c.sqlite")
        for i in range(20):
            c.put("m", "v", f"w{k}-{i}", Decomposition.single(f"w{k}-{i}"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 84  # 2 per-video entries + 2 sentence entries + 80


def test_decompose_cli_resumable(tmp_path, monkeypatch, capsys):
    from tfvtg.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ann = {"v1": {"duration": 10, "timestamps": [[0, 1], [2, 3]], "sentences": ["s one", "s two"]},
           "v2": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["s three"]}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "llm_outputs.json"
    with ChatServer(lambda req, n: Reply(answer(query_of(req)))) as server:
        argv = ["decompose", str(tmp_path / "ann.json"), "--out", str(out), "--model", "m",
                "--base-url", server.url, "--cache", str(tmp_path / "c.sqlite")]
        assert main(argv) == 0
        data = json.loads(out.read_text())
        assert [r["query_json"][0]["descriptions"][0] for r in data["v1"]["response"]] == ["s one", "s two"]
        assert Decomposition.from_tfvtg(data["v2"]["response"][0]).relationship == "sequentially"
        n = len(server.requests)
        assert main(argv) == 0 and len(server.requests) == n  # resumed: nothing sent
    assert KEY not in out.read_text() and KEY not in capsys.readouterr().out


# ------------------------------------------------------------------ parsing

def test_extract_json_forms():
    obj = json.loads(answer("x"))
    assert extract_json(answer("x")) == obj
    assert extract_json(f"Here you go:\n```json\n{answer('x')}\n```\nHope it helps") == obj
    assert extract_json(f"prefix {{not json}} then {answer('x')} suffix") == obj
    for bad in ["", "no braces", "{broken", "[1, 2]"]:
        with pytest.raises(ValueError):
            extract_json(bad)


# Text without braces inside strings (a "{" inside a JSON string would start
# another candidate object) and without fences.
_plain = st.text(alphabet=st.characters(blacklist_characters="{}`", blacklist_categories=("Cs",)), max_size=8)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _plain,
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(_plain, c, max_size=4), max_leaves=10)
_entry = st.one_of(
    st.fixed_dictionaries({"descriptions": st.lists(st.one_of(_plain, st.integers()), max_size=3)},
                          optional={"sub_query_id": st.one_of(st.integers(), _plain)}),
    _json)
_near_reply = st.fixed_dictionaries(
    {},
    optional={"relationship": st.sampled_from(["single-query", "simultaneously", "sequentially", "sequential",
                                               "afterwards", "", 3]),
              "query_json": st.one_of(st.lists(_entry, max_size=3), _json),
              "reasoning": _json})


def _first_object(value):
    """The object extract_json must find in json.dumps(value): the first dict
    in document order."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        for item in value:
            found = _first_object(item)
            if found is not None:
                return found
    return None


def _follows_schema(obj) -> bool:
    """TFVTG's schema, written out independently of the parser."""
    if not isinstance(obj, dict) or obj.get("relationship") not in ("single-query", "simultaneously",
                                                                     "sequentially"):
        return False
    entries = obj.get("query_json")
    if not isinstance(entries, list) or not entries:
        return False
    for entry in entries:
        if not isinstance(entry, dict):
            return False
        descriptions = entry.get("descriptions")
        if not isinstance(descriptions, list) or not descriptions:
            return False
        if not all(isinstance(d, str) and d.strip() for d in descriptions):
            return False
    return True


_words = _plain.filter(str.strip)
_valid_reply = st.fixed_dictionaries(
    {"relationship": st.sampled_from(["single-query", "simultaneously", "sequentially"]),
     "query_json": st.lists(st.fixed_dictionaries({"descriptions": st.lists(_words, min_size=1, max_size=3)},
                                                  optional={"sub_query_id": st.integers()}),
                            min_size=1, max_size=3)},
    optional={"reasoning": _json, "sub-queries": _json})
_replies = st.one_of(_valid_reply, _near_reply)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _replies, st.lists(_replies, min_size=1, max_size=2)))
def test_parse_reply_accepts_exactly_the_schema(value):
    from tfvtg.errors import InvalidInputError

    text = json.dumps(value)
    obj = _first_object(value)
    if obj is not None and _follows_schema(obj):
        dec = parse_reply(text)
        assert dec.relationship == obj["relationship"]
        assert dec.query_descriptions == tuple(obj["query_json"][0]["descriptions"])
        assert dec.sub_events == tuple(tuple(e["descriptions"]) for e in obj["query_json"][1:])
    else:
        with pytest.raises(InvalidInputError):
            parse_reply(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=60) | st.text(alphabet='{}[]":, ab\\ud800', max_size=60))
def test_parse_reply_never_crashes_and_returns_clean_text(text):
    from tfvtg.errors import InvalidInputError

    try:
        dec = parse_reply(text)
    except InvalidInputError:
        return  # the one way to refuse: a ValueError naming the problem
    assert "{" in text
    for description in dec.query_descriptions + tuple(d for ev in dec.sub_events for d in ev):
        description.encode("utf-8")  # never a lone surrogate


def test_parse_reply_survives_pathological_replies():
    from tfvtg.errors import InvalidInputError

    for text in ["[" * 5000 + "]" * 5000, "{" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000]:
        with pytest.raises(InvalidInputError):
            parse_reply(text)
    reply = '{"relationship": "single-query", "query_json": [{"descriptions": ["sits \\ud800 down"]}]}'
    assert parse_reply(reply).query_descriptions == ("sits \ufffd down",)
