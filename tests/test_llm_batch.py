"""Batch behaviour of LLM decomposition: stopping on a refused key, resuming,
repeated queries, key hygiene end to end. Real openai client, real local server."""
from __future__ import annotations

import asyncio
import json
import logging
import pickle
import warnings

import pytest
from chat_server import ChatServer, Reply
from hypothesis import given, settings
from hypothesis import strategies as st

from tfvtg import Decomposition
from tfvtg.llm.client import DecompositionCache, LLMConfigurationError, OpenAIDecomposer, extract_json, parse_reply

pytest.importorskip("openai")

KEY = "sk-test-SECRET-123"


def answer(query: str) -> str:
    return json.dumps({"reasoning": "r", "sub-queries": "1. a 2. b", "relationship": "sequentially",
                       "query_json": [{"sub_query_id": 0, "descriptions": [query]},
                                      {"sub_query_id": 1, "descriptions": [f"first of {query}"]},
                                      {"sub_query_id": 2, "descriptions": [f"second of {query}"]}]})


def query_of(request: dict) -> str:
    return request["messages"][1]["content"].split('"')[1]


def good(req, n):
    return Reply(answer(query_of(req)))


def unauthorized(req, n):
    return Reply(status=401, body={"error": {"message": "Incorrect API key provided"}})


def make(server, tmp_path, **kw) -> OpenAIDecomposer:
    kw.setdefault("timeout", 5)
    kw.setdefault("max_retries", 1)
    kw.setdefault("cache", tmp_path / "llm.sqlite")
    return OpenAIDecomposer(model="test-model", base_url=server.url, api_key=KEY, **kw)


def test_refused_key_stops_the_batch(tmp_path):
    with ChatServer(unauthorized) as server:
        with pytest.raises(LLMConfigurationError, match="401"):
            make(server, tmp_path).decompose_many([f"q{i}" for i in range(40)], concurrency=2, progress=False)
    assert len(server.requests) < 10  # not one doomed request per query


def test_unknown_model_is_a_configuration_error(tmp_path):
    with ChatServer(lambda req, n: Reply(status=404, body={"error": {"message": "model not found"}})) as server:
        with pytest.raises(LLMConfigurationError, match="test-model"):
            make(server, tmp_path).decompose("q")


def test_configuration_error_surfaces_inside_a_running_loop(tmp_path):
    async def in_notebook(d):
        return d.decompose_many(["a", "b"], progress=False)

    with ChatServer(unauthorized) as server:
        with pytest.raises(LLMConfigurationError):
            asyncio.run(in_notebook(make(server, tmp_path)))


def test_repeated_queries_cost_one_request_each(tmp_path):
    queries = ["a dog runs", "a cat sits", "a dog runs", " a dog runs ", "a cat sits"]
    seen = []
    with ChatServer(good) as server:
        decs = make(server, tmp_path, cache=None).decompose_many(
            queries, progress=False, on_result=lambda i, d: seen.append(i))
    assert len(server.requests) == 2
    assert [d.query_descriptions[0] for d in decs] == [q.strip() for q in queries]
    assert sorted(seen) == list(range(5))


def test_cli_resumes_answer_by_answer_and_retries_fallbacks(tmp_path, monkeypatch):
    from tfvtg.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ann = {"v1": {"duration": 10, "timestamps": [[0, 1], [2, 3], [4, 5]], "sentences": ["s one", "s two", "s 3"]},
           "v2": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["s four"]}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "out.json"
    earlier = {"v1": {**ann["v1"], "response": [json.loads(answer("s one")),  # kept
                                                {},  # TFVTG's failure marker: asked again
                                                Decomposition.single("s 3", fallback=True).to_tfvtg()]}}
    out.write_text(json.dumps(earlier))
    with ChatServer(good) as server:
        argv = ["decompose", str(tmp_path / "ann.json"), "--out", str(out), "--base-url", server.url,
                "--cache", str(tmp_path / "c.sqlite"), "--no-progress"]
        assert main(argv) == 0
        assert sorted(query_of(r) for r in server.requests) == ["s 3", "s four", "s two"]
    data = json.loads(out.read_text())
    for vid in ann:
        assert data[vid]["sentences"] == ann[vid]["sentences"]
        for sentence, resp in zip(ann[vid]["sentences"], data[vid]["response"]):
            dec = Decomposition.from_tfvtg(resp)
            assert dec.query_descriptions[0] == sentence and not dec.fallback


def test_cli_with_a_refused_key_leaves_work_for_the_next_run(tmp_path, monkeypatch, capsys):
    from tfvtg.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ann = {"v": {"duration": 3, "timestamps": [[0, 1], [1, 2]], "sentences": ["x", "y"]}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "out.json"
    argv = ["decompose", str(tmp_path / "ann.json"), "--out", str(out), "--cache", str(tmp_path / "c.sqlite"),
            "--no-progress", "--base-url"]
    with ChatServer(unauthorized) as server:
        assert main(argv + [server.url]) == 1
    assert "401" in capsys.readouterr().err
    assert json.loads(out.read_text())["v"]["response"] == [None, None]
    with ChatServer(good) as server:
        assert main(argv + [server.url]) == 0
    assert [r["query_json"][0]["descriptions"][0] for r in json.loads(out.read_text())["v"]["response"]] == ["x", "y"]


def test_key_absent_from_debug_logs_errors_cache_and_outputs(tmp_path, monkeypatch, caplog, capsys):
    from tfvtg.cli import main

    caplog.set_level(logging.DEBUG)
    names = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "tfvtg")  # the client's HTTP stack
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    try:
        echo = f"Incorrect API key provided: {KEY}"  # a server that echoes the key back
        errors = []
        with ChatServer(lambda req, n: Reply(status=401, body={"error": {"message": echo}})) as server:
            d = make(server, tmp_path)
            for call in (lambda: d.decompose("q"), lambda: d.decompose_many(["a", "b"], progress=False)):
                with pytest.raises(LLMConfigurationError) as info:
                    call()
                errors += [str(info.value), repr(info.value)]
        with ChatServer(lambda req, n: Reply("not json") if n < 2 else good(req, n)) as server:
            d = make(server, tmp_path)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                d.decompose("first")  # falls back, with a warning
                d.decompose_many(["second", "third"], progress=False)
            errors += [str(w.message) for w in caught]
            monkeypatch.setenv("OPENAI_API_KEY", KEY)
            (tmp_path / "ann.json").write_text(json.dumps({"v": {"duration": 2, "sentences": ["s"]}}))
            assert main(["decompose", str(tmp_path / "ann.json"), "--out", str(tmp_path / "out.json"),
                         "--base-url", server.url, "--cache", str(tmp_path / "llm.sqlite")]) == 0
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
    loggers = {r.name.split(".")[0] for r in caplog.records}
    assert "openai" in loggers and any(n.startswith("httpx") for n in loggers)  # debug logs were captured
    captured = capsys.readouterr()
    texts = errors + [caplog.text, repr(d), captured.out, captured.err]
    assert all(KEY not in t for t in texts)
    for f in tmp_path.iterdir():
        assert KEY.encode() not in f.read_bytes(), f.name
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(d)


def test_import_skips_tfvtg_failure_markers_quietly(tmp_path):
    outputs = {"v": {"duration": 5, "sentences": ["a", "b"], "response": [json.loads(answer("a")), {}]}}
    path = tmp_path / "llm_outputs.json"
    path.write_text(json.dumps(outputs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DecompositionCache(tmp_path / "c.sqlite").import_tfvtg(path, "m", "v") == 1


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=15)


@settings(max_examples=80, deadline=None)
@given(before=st.text(alphabet="abc xyz.:\n", max_size=30), after=st.text(alphabet="abc xyz.}\n`", max_size=30),
       fenced=st.booleans(), words=st.lists(text.filter(str.strip), min_size=1, max_size=3))
def test_json_is_found_wherever_it_stands_in_the_reply(before, after, fenced, words):
    obj = {"relationship": "single-query", "query_json": [{"sub_query_id": 0, "descriptions": words}]}
    body = json.dumps(obj)
    reply = before + (f"```json\n{body}\n```" if fenced else body) + after
    assert extract_json(reply) == obj
    assert parse_reply(reply).query_descriptions == tuple(words)
