"""LLM decomposition against a real chat-completions server on 127.0.0.1."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from chat_server import ChatServer, Reply, error_body  # noqa: E402

from tfvtg.decomposition import Decomposition  # noqa: E402
from tfvtg.llm import (  # noqa: E402
    DecompositionError, LLMTimeoutError, OpenAIDecomposer, default_decomposer, extract_json_object,
    parse_decomposition,
)
from tfvtg.llm_cache import LLMCache  # noqa: E402
from tfvtg.prompts import PROMPT_VERSION  # noqa: E402

KEY = "sk-test-SECRET-123"


def good(query: str = "a person opens a door then sits down") -> dict:
    return {
        "reasoning": "two actions in order",
        "sub-queries": "1. opens a door 2. sits down",
        "relationship": "sequentially",
        "query_json": [
            {"sub_query_id": 0, "descriptions": [query, f"someone: {query}"]},
            {"sub_query_id": 1, "descriptions": ["a person opens a door", "a door is opened"]},
            {"sub_query_id": 2, "descriptions": ["a person sits down", "someone takes a seat"]},
        ],
    }


def reply(obj) -> Reply:
    return Reply(content=json.dumps(obj))


@pytest.fixture
def make(tmp_path):
    def _make(server: ChatServer, **kw) -> OpenAIDecomposer:
        kw.setdefault("cache", tmp_path / "cache.sqlite")
        kw.setdefault("timeout", 5.0)
        kw.setdefault("max_retries", 2)
        return OpenAIDecomposer(model="test-model", base_url=server.base_url, api_key=KEY, **kw)
    return _make


def test_good_reply_uses_structured_output_and_key(make):
    with ChatServer([reply(good())]) as srv:
        dec = make(srv).decompose("a person opens a door then sits down")
    assert dec.relationship == "sequentially"
    assert dec.sub_events[0][0] == "a person opens a door"
    assert len(dec.sub_events) == 2 and not dec.fallback
    req = srv.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json["response_format"]["type"] == "json_schema"
    assert req.json["model"] == "test-model"
    assert "a person opens a door then sits down" in req.user_text


def test_429_with_retry_after_then_success(make):
    script = [Reply(status=429, headers={"Retry-After": "0.01"}, body=error_body("slow down", "rate_limit")),
              reply(good())]
    with ChatServer(script) as srv:
        dec = make(srv).decompose("q")
    assert not dec.fallback and len(srv.requests) == 2


def test_500_then_success(make):
    script = [Reply(status=500, headers={"retry-after-ms": "10"}, body=error_body("boom")), reply(good())]
    with ChatServer(script) as srv:
        dec = make(srv).decompose("q")
    assert dec.relationship == "sequentially" and len(srv.requests) == 2


def test_persistent_500_raises_clear_error(make):
    with ChatServer([Reply(status=500, headers={"retry-after-ms": "1"}, body=error_body("boom"))]) as srv:
        with pytest.raises(DecompositionError, match="HTTP 500"):
            make(srv, max_retries=1).decompose("q")
    assert len(srv.requests) == 2


def test_reply_not_json_gets_repaired(make):
    script = [Reply(content="Sure! Here you go: the person opens a door."),
              Reply(content="```json\n" + json.dumps(good()) + "\n```\nHope this helps.")]
    with ChatServer(script) as srv:
        dec = make(srv).decompose("q")
    assert not dec.fallback and dec.relationship == "sequentially"
    assert len(srv.requests) == 2
    repair = srv.requests[1].json["messages"]
    assert repair[-2]["role"] == "assistant" and "opens a door" in repair[-2]["content"]
    assert "no JSON object" in repair[-1]["content"]


def test_schema_violation_twice_falls_back_with_warning(make, caplog):
    bad = {"relationship": "later", "query_json": []}
    with ChatServer([reply(bad)]) as srv, caplog.at_level(logging.WARNING, logger="tfvtg.llm"):
        dec = make(srv).decompose("a man waves")
    assert dec.fallback and dec.relationship == "single-query"
    assert dec.query_descriptions == ("a man waves",)
    assert len(srv.requests) == 2  # one request, one repair, no more
    assert "relationship" in srv.requests[1].user_text  # the repair quotes the error
    assert any("single sub-event" in r.getMessage() for r in caplog.records)


def test_fallbacks_are_not_cached(make):
    with ChatServer([Reply(content="nope"), Reply(content="nope"), reply(good())]) as srv:
        d = make(srv)
        assert d.decompose("q").fallback
        assert not d.decompose("q").fallback


def test_server_rejecting_json_schema_switches_to_plain_prompting(make):
    script = [Reply(status=400, body=error_body("response_format json_schema not supported")),
              reply(good()), reply(good())]
    with ChatServer(script) as srv:
        d = make(srv, cache=None)
        d.decompose("q1")
        d.decompose("q2")
    assert "response_format" in srv.requests[0].json
    assert all("response_format" not in r.json for r in srv.requests[1:])
    assert len(srv.requests) == 3


def test_timeout_is_clear_and_prompt(make):
    with ChatServer([Reply(delay=30, content="late")]) as srv:
        d = make(srv, timeout=0.5, max_retries=0)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="timed out") as info:
            d.decompose("q")
        elapsed = time.monotonic() - t0
    assert isinstance(info.value, TimeoutError)
    assert elapsed < 0.5 * 1 + 3.0


def test_100_queries_concurrency_8_in_order(make):
    def responder(body):
        q = body["messages"][-1]["content"].removeprefix("Query: ")
        time.sleep(0.01)
        return reply(good(q))

    queries = [f"query number {i}" for i in range(100)]
    with ChatServer(responder=responder) as srv:
        out = make(srv).decompose_many(queries, concurrency=8, progress=False)
    assert [d.query_descriptions[0] for d in out] == queries
    assert len(srv.requests) == 100
    assert 1 < srv.max_in_flight <= 8


def test_cached_rerun_sends_zero_requests(make, tmp_path):
    queries = [f"q{i}" for i in range(10)]
    with ChatServer(responder=lambda b: reply(good(b["messages"][-1]["content"]))) as srv:
        first = make(srv).decompose_many(queries, progress=False)
        n = len(srv.requests)
        second = make(srv).decompose_many(queries, progress=False)  # a new instance, same cache file
        make(srv).decompose("q3")
    assert n == 10 and len(srv.requests) == 10
    assert first == second


def test_batch_survives_bad_and_failing_items(make):
    def responder(body):
        q = body["messages"][1]["content"]
        if "bad" in q:
            return Reply(content="garbage")
        if "down" in q:
            return Reply(status=503, headers={"retry-after-ms": "1"}, body=error_body("down"))
        return reply(good(q))

    with ChatServer(responder=responder) as srv:
        out = make(srv, max_retries=0).decompose_many(["ok 1", "bad 2", "down 3", "ok 4"], progress=False)
    assert [d.fallback for d in out] == [False, True, True, False]


def test_decompose_many_inside_running_loop(make):
    import asyncio

    async def main(d):
        return d.decompose_many(["a", "b"], progress=False)

    with ChatServer(responder=lambda b: reply(good())) as srv:
        out = asyncio.run(main(make(srv)))
    assert len(out) == 2


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    names = ("openai", "httpx", "httpcore", "tfvtg")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    yield caplog
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


def test_key_never_leaks(make, tmp_path, debug_logs, monkeypatch):
    caplog = debug_logs
    errors = []
    script = [Reply(status=429, headers={"Retry-After": "0.01"}, body=error_body(f"bad key {KEY}")),
              reply(good()), Reply(content="not json"), Reply(content="still not"),
              Reply(status=401, body=error_body(f"Incorrect API key provided: {KEY}"))]
    with ChatServer(script) as srv:
        d = make(srv, max_retries=1)
        d.decompose("one")
        d.decompose("two")
        try:
            d.decompose("three")
        except DecompositionError as exc:
            errors.append(exc)
        srv.script = [Reply(status=400, body=error_body(f"echo {KEY}"))]
        d.structured_output = False
        try:
            d.decompose("four")
        except DecompositionError as exc:
            errors.append(exc)
        out = tmp_path / "out.json"
        ann = tmp_path / "ann.json"
        ann.write_text(json.dumps({"v": {"duration": 3, "timestamps": [[0, 1]], "sentences": ["one"]}}))
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        from tfvtg.cli import main
        assert main(["decompose", str(ann), "--out", str(out), "--base-url", srv.base_url,
                     "--cache", str(tmp_path / "cache.sqlite"), "--no-progress"]) == 0
    assert len(errors) == 2
    assert any(r.name.startswith("openai") for r in caplog.records)  # the client's debug logs were captured
    assert any(r.name.startswith("httpx") for r in caplog.records)
    texts = [caplog.text, repr(d), *(str(e) + repr(e) for e in errors), out.read_text()]
    assert all(KEY not in t for t in texts)
    for f in tmp_path.iterdir():
        assert KEY.encode() not in f.read_bytes(), f
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(d)


def test_auth_error_stops_the_batch(make, tmp_path, monkeypatch):
    from tfvtg.cli import main
    from tfvtg.llm import LLMConfigurationError

    with ChatServer([Reply(status=401, body=error_body("invalid key"))]) as srv:
        with pytest.raises(LLMConfigurationError, match="401"):
            make(srv).decompose_many([f"q{i}" for i in range(20)], concurrency=2, progress=False)
        assert len(srv.requests) <= 3  # stops instead of asking for all 20
        ann, out = tmp_path / "a.json", tmp_path / "o.json"
        ann.write_text(json.dumps({"v": {"duration": 3, "timestamps": [[0, 1]], "sentences": ["x"]}}))
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        assert main(["decompose", str(ann), "--out", str(out), "--base-url", srv.base_url,
                     "--cache", "none", "--no-progress"]) == 1
    assert json.loads(out.read_text())["v"]["response"] == [{}]  # left for the next run


def test_missing_key_is_clear(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIDecomposer(cache=None)
    # A local server needs no key.
    assert OpenAIDecomposer(base_url="http://127.0.0.1:1/v1", cache=None).base_url


def test_default_decomposer(monkeypatch, caplog):
    import tfvtg.llm as llm

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TFVTG_LLM_BASE_URL", raising=False)
    monkeypatch.setattr(llm, "_notice_logged", False)
    with caplog.at_level(logging.INFO, logger="tfvtg.llm"):
        assert default_decomposer() is None
        assert default_decomposer() is None
    notices = [r for r in caplog.records if "no LLM configured" in r.getMessage()]
    assert len(notices) == 1
    monkeypatch.setenv("TFVTG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TFVTG_LLM_MODEL", "local-model")
    d = default_decomposer(cache=None)
    assert d.model == "local-model" and d.base_url == "http://127.0.0.1:9/v1"


# -- parsing ---------------------------------------------------------------

json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(prefix=st.text(alphabet="abc xyz.:\n", max_size=30), suffix=st.text(alphabet="abc xyz.}\n", max_size=30),
       fence=st.booleans(), words=st.lists(json_text.filter(str.strip), min_size=1, max_size=3))
def test_extract_json_object_finds_embedded_object(prefix, suffix, fence, words):
    obj = {"relationship": "single-query", "query_json": [{"sub_query_id": 0, "descriptions": words}]}
    body = json.dumps(obj)
    text = prefix + (f"```json\n{body}\n```" if fence else body) + suffix
    assert extract_json_object(text) == obj
    assert parse_decomposition(text).query_descriptions == tuple(w.strip() for w in words)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_parse_never_crashes_on_garbage(text):
    from tfvtg.llm import LLMResponseError
    try:
        parse_decomposition(text)
    except LLMResponseError:
        pass


# -- cache and TFVTG files ----------------------------------------------------

def test_cache_concurrent_writers(tmp_path):
    path = tmp_path / "c.sqlite"
    dec = Decomposition.from_tfvtg(good())

    def writer(k):
        cache = LLMCache(path)
        for i in range(30):
            cache.put("m", PROMPT_VERSION, f"w{k}-q{i}", dec)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache = LLMCache(path)
    assert len(cache) == 180
    assert cache.get("m", PROMPT_VERSION, "w5-q29") == dec
    assert cache.get("other-model", PROMPT_VERSION, "w5-q29") is None
    assert cache.get("m", "old-prompt", "w5-q29") is None


def test_import_tfvtg_outputs_makes_decompose_free(make, tmp_path):
    data = {"vid1": {"duration": 10, "timestamps": [[0, 1], [2, 3]], "sentences": ["a man waves.", "failed one"],
                     "response": [good("a man waves."), {}]}}
    path = tmp_path / "llm_outputs.json"
    path.write_text(json.dumps(data))
    with ChatServer([reply(good())]) as srv:
        d = make(srv)
        assert d.import_tfvtg_outputs(path) == 1
        dec = d.decompose("a man waves.")
    assert srv.requests == []
    assert dec.to_tfvtg()["query_json"] == good("a man waves.")["query_json"]


def test_cli_decompose_writes_tfvtg_format_and_resumes(tmp_path, monkeypatch):
    from tfvtg.cli import main

    ann = {"v1": {"duration": 30.0, "timestamps": [[1, 2], [3, 4]], "sentences": ["s one", "s two"]},
           "v2": {"duration": 20.0, "timestamps": [[5, 6]], "sentences": ["s three"]}}
    ann_path, out = tmp_path / "ann.json", tmp_path / "out.json"
    ann_path.write_text(json.dumps(ann))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    # v1's first answer already exists from an earlier (interrupted) run.
    out.write_text(json.dumps({"v1": {**ann["v1"], "response": [good("s one"), {}]}}))
    with ChatServer(responder=lambda b: reply(good(b["messages"][-1]["content"]))) as srv:
        args = ["decompose", str(ann_path), "--out", str(out), "--base-url", srv.base_url,
                "--concurrency", "2", "--cache", str(tmp_path / "c.sqlite"), "--no-progress"]
        assert main(args) == 0
        assert len(srv.requests) == 2
        assert main(args) == 0
        assert len(srv.requests) == 2  # nothing left to ask
    result = json.loads(out.read_text())
    assert set(result) == {"v1", "v2"}
    assert result["v2"]["duration"] == 20.0 and result["v2"]["sentences"] == ["s three"]
    for vid in result:
        assert len(result[vid]["response"]) == len(ann[vid]["sentences"])
        for sentence, resp in zip(result[vid]["sentences"], result[vid]["response"]):
            assert Decomposition.from_tfvtg(resp).relationship == "sequentially"
            assert sentence in resp["query_json"][0]["descriptions"][0]
