"""Hardening of the LLM layer and of ``tfvtg ground`` / ``tfvtg decompose``:
an LLM that cannot be used never stops grounding, failed requests fail the
batch command, odd text never loses output, damaged caches are bypassed,
per-video imported answers, one-line CLI errors. Real openai client, real
servers on 127.0.0.1."""
from __future__ import annotations

import asyncio
import copy
import json
import pickle
import re
import sqlite3
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from chat_server import ChatServer, HangUpServer, Reply, closed_port_url, decomposition_answer, query_in

import tfvtg
from tfvtg import Decomposition, Grounder, VideoFeatures
from tfvtg.errors import (
    CacheError,
    DecompositionError,
    InvalidInputError,
    LLMConfigurationError,
    LLMTimeoutError,
    MissingExtraError,
)
from tfvtg.llm import (
    ENV_CONNECT_TIMEOUT,
    ENV_MAX_RETRIES,
    ENV_TIMEOUT,
    DecompositionCache,
    LLMExtraMissingError,
    LLMUnreachableError,
    OpenAIDecomposer,
    OpenAIEndpoint,
    default_decomposer,
)

pytest.importorskip("openai")

KEY = "sk-test-SECRET-hardening-42"
FIXTURE = Path(__file__).parent / "fixtures" / "charades_llm_outputs_subset.json"
QUERY = "a man opens the door then sits down"


def answer(query: str, relationship: str = "sequentially", extra: str = "") -> str:
    return decomposition_answer(query, relationship, (extra,))


query_of = query_in


def good(req, n):
    return Reply(answer(query_of(req)))


class HashEncoder:
    """Text embeddings that differ per text (seeded by the text's bytes)."""

    def encode_text(self, texts):
        return np.stack([np.random.default_rng(list(t.encode("utf-8", "replace"))).standard_normal(16)
                         for t in texts])


FEATS = VideoFeatures(np.random.default_rng(0).standard_normal((60, 4, 16)), duration=20.0)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A private cache folder, no LLM configured; ``env(url)`` configures one."""
    monkeypatch.setenv("TFVTG_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TFVTG_LLM_BASE_URL", "TFVTG_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)

    def configure(url: str) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("TFVTG_LLM_BASE_URL", url)

    return configure


def recorded(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, caught


# ------------------------------------------------------------------ item 3: an unusable LLM never stops grounding

def test_ground_with_an_unreachable_llm_falls_back_with_one_warning(env):
    url = closed_port_url()
    env(url)
    res, caught = recorded(lambda: tfvtg.ground(FEATS, QUERY, text_encoder=HashEncoder()))
    assert res.decomposition.fallback
    assert res.decomposition.query_descriptions == (QUERY,) and res.moments
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "cannot reach the LLM server" in messages[0] and url in messages[0]
    assert "grounding with the query alone" in messages[0]
    assert caught[0].filename == __file__  # the user's line, not tfvtg's or asyncio's
    assert KEY not in messages[0]


def test_default_decomposer_gives_up_fast(env):
    env(closed_port_url())
    d = default_decomposer()
    assert d is not None
    assert (d.timeout, d.endpoint.connect_timeout, d.max_retries) == (ENV_TIMEOUT, ENV_CONNECT_TIMEOUT, ENV_MAX_RETRIES)
    # worst case for a host that never accepts: every attempt waits connect_timeout, plus backoff (< 8 s)
    assert (ENV_MAX_RETRIES + 1) * ENV_CONNECT_TIMEOUT + 8 < 30


def _failing_servers():
    yield "401", lambda: ChatServer(lambda r, n: Reply(status=401, body={"error": {"message": "bad key"}})), \
        LLMConfigurationError
    yield "404", lambda: ChatServer(lambda r, n: Reply(status=404, body={"error": {"message": "no model"}})), \
        LLMConfigurationError
    yield "500", lambda: ChatServer(lambda r, n: Reply(status=500, body={"error": {"message": "boom"}})), \
        DecompositionError
    yield "not-a-completion", lambda: ChatServer(lambda r, n: Reply(body={"unexpected": True})), DecompositionError
    yield "empty-choices", lambda: ChatServer(lambda r, n: Reply(body={"choices": []})), DecompositionError
    yield "hang-up", HangUpServer, LLMUnreachableError
    yield "slow", lambda: ChatServer(lambda r, n: Reply(answer("q"), delay=1.5)), LLMTimeoutError


@pytest.mark.parametrize("name,server,error", list(_failing_servers()), ids=[s[0] for s in _failing_servers()])
def test_every_failed_request_is_a_decomposition_error_and_grounding_degrades(tmp_path, name, server, error):
    with server() as srv:
        d = OpenAIDecomposer(model="m", base_url=srv.url, api_key=KEY, cache=False, timeout=0.5, max_retries=0)
        with pytest.raises(error) as info:
            d.decompose(QUERY)
        assert KEY not in str(info.value)
        res, caught = recorded(lambda: Grounder(HashEncoder(), decomposer=d).ground(FEATS, QUERY))
    assert res.decomposition.fallback
    assert [str(w.message) for w in caught if "could not decompose" in str(w.message)]


def test_closed_port_is_unreachable_not_a_crash():
    d = OpenAIDecomposer(model="m", base_url=closed_port_url(), api_key=KEY, cache=False, max_retries=0)
    with pytest.raises(LLMUnreachableError, match="cannot reach") as info:
        d.decompose(QUERY)
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, DecompositionError)


def test_missing_openai_names_the_extra_and_grounding_degrades(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ModuleNotFoundError
    d = OpenAIDecomposer(model="m", base_url=closed_port_url(), api_key=KEY, cache=False)
    with pytest.raises(LLMExtraMissingError, match=r'pip install "tfvtg\[llm\]"') as info:
        d.decompose(QUERY)
    assert isinstance(info.value, MissingExtraError) and isinstance(info.value, DecompositionError)
    res, _ = recorded(lambda: Grounder(HashEncoder(), decomposer=d).ground(FEATS, QUERY))
    assert res.decomposition.fallback


def test_a_key_that_cannot_be_sent_is_a_configuration_error():
    bad_key = "sk-pasted\u2019from-a-word-processor"
    d = OpenAIDecomposer(model="m", base_url=closed_port_url(), api_key=bad_key, cache=False)
    with pytest.raises(LLMConfigurationError, match="OPENAI_API_KEY") as info:
        d.decompose(QUERY)
    assert bad_key not in str(info.value)


# ------------------------------------------------------------------ the shared OpenAI setup

def test_endpoint_hides_the_key_everywhere(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", f"  {KEY}\n")  # pasted with whitespace
    ep = OpenAIEndpoint(base_url="http://127.0.0.1:1/v1", timeout=3, max_retries=1)
    assert ep.has_key
    for text in (repr(ep), str(ep), repr(vars(ep)), ep.redact(f"Incorrect API key provided: {KEY}.")):
        assert KEY not in text
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="API key"):
            attempt(ep)
    d = OpenAIDecomposer(model="m", base_url="http://127.0.0.1:1/v1", cache=False)
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="API key"):
            attempt(d)


def test_endpoint_sends_the_stripped_key_and_a_short_key_does_not_mangle_messages(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", f" {KEY} ")
    with ChatServer(good) as server:
        OpenAIDecomposer(model="m", base_url=server.url, cache=False).decompose(QUERY)
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    ep = OpenAIEndpoint(base_url="http://127.0.0.1:1/v1", api_key="k")
    assert ep.redact("check the key k") == "check the key ***"


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": float("nan")}, {"timeout": "soon"},
                                    {"max_retries": -1}, {"max_retries": 1.5}, {"max_retries": True}])
def test_endpoint_refuses_bad_settings(kwargs):
    with pytest.raises(InvalidInputError):
        OpenAIEndpoint(base_url="http://127.0.0.1:1/v1", **kwargs)


def test_sync_and_async_are_one_implementation(tmp_path):
    with ChatServer(good) as server:
        d = OpenAIDecomposer(model="m", base_url=server.url, api_key=KEY, cache=False)
        sync = d.decompose(QUERY)
        asynchronous = asyncio.run(d.adecompose(QUERY))

        async def in_a_notebook():  # sync call from inside a running loop
            return d.decompose(QUERY)

        nested = asyncio.run(in_a_notebook())
    assert sync == asynchronous == nested
    assert sync.sub_events == ((f"first of {QUERY}",), (f"second of {QUERY}",))
    bodies = [json.dumps(r, sort_keys=True) for r in server.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same request every way


# ------------------------------------------------------------------ item 7: batches report failures

def test_batch_warnings_point_at_the_callers_line(tmp_path):
    def script(req, n):
        q = query_of(req)
        if q == "broken":
            return Reply(status=500, body={"error": {"message": "boom"}})
        if q == "chatty":
            return Reply("I would rather not answer in JSON.")
        return good(req, n)

    failed = []
    with ChatServer(script) as server:
        d = OpenAIDecomposer(model="m", base_url=server.url, api_key=KEY, cache=False, max_retries=0)
        decs, caught = recorded(lambda: d.decompose_many(["fine", "broken", "chatty"], progress=False,
                                                         on_failure=lambda i, e: failed.append((i, e))))

        async def batch():
            return await d.adecompose_many(["broken", "chatty"], progress=False)

        _, caught_async = recorded(lambda: asyncio.run(batch()))
        _, caught_single = recorded(lambda: d.decompose("chatty"))
    assert [x.fallback for x in decs] == [False, True, True]
    assert [i for i, _ in failed] == [1] and isinstance(failed[0][1], DecompositionError)
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2
    assert any("failed for 1 of 3" in t and "HTTP 500" in t for t in texts)
    assert any("no usable decomposition" in t and "'chatty'" in t for t in texts)
    for w in [*caught, *caught_async, *caught_single]:
        assert w.filename == __file__, (w.filename, w.message)
    assert len(caught_async) == 2 and len(caught_single) == 1


def test_a_server_never_reached_is_not_asked_for_every_query():
    failed = []
    with HangUpServer() as server:
        d = OpenAIDecomposer(model="m", base_url=server.url, api_key=KEY, cache=False, max_retries=0)
        decs, caught = recorded(lambda: d.decompose_many([f"query {i}" for i in range(20)], concurrency=1,
                                                         progress=False, on_failure=lambda i, e: failed.append(i)))
    assert all(x.fallback for x in decs) and sorted(failed) == list(range(20))
    assert server.connections == 4  # then the rest fail at once, with the same error
    assert len(caught) == 1 and "20 of 20" in str(caught[0].message)


def _annotations(tmp_path: Path, ann: dict) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    return path


ANN = {"v1": {"duration": 10, "timestamps": [[0, 1], [2, 3]], "sentences": ["s one", "s two"]},
       "v2": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["s three"]}}


def test_decompose_cli_fails_when_requests_fail(tmp_path, env, capsys):
    from tfvtg.cli import main

    out = tmp_path / "out.json"
    env(closed_port_url())
    code = main(["decompose", str(_annotations(tmp_path, ANN)), "--out", str(out), "--no-progress",
                 "--max-retries", "0", "--base-url", closed_port_url()])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 of 3 queries could not be decomposed" in captured.err
    assert "cannot reach" in captured.err and "Traceback" not in captured.err
    data = json.loads(out.read_text())
    assert all(r["fallback"] for v in data.values() for r in v["response"])  # marked, retried next run


def test_decompose_cli_counts_only_failed_requests(tmp_path, env, capsys):
    from tfvtg.cli import main

    def script(req, n):
        q = query_of(req)
        if q == "s two":
            return Reply(status=500, body={"error": {"message": "boom"}})
        if q == "s three":
            return Reply("no JSON here")
        return good(req, n)

    env("unused")
    with ChatServer(script) as server:
        argv = ["decompose", str(_annotations(tmp_path, ANN)), "--out", str(tmp_path / "out.json"),
                "--no-progress", "--max-retries", "0", "--base-url", server.url]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "1 of 3 queries could not be decomposed" in err and "HTTP 500" in err
        assert all(line.startswith("tfvtg decompose:") for line in err.splitlines())
    with ChatServer(lambda r, n: Reply("still no JSON") if query_of(r) == "s three" else good(r, n)) as server:
        argv[-1] = server.url
        assert main(argv) == 0  # unusable replies fall back but are not request failures
    assert "fell back" in capsys.readouterr().out


def test_decompose_cli_without_a_key_gives_cli_advice(tmp_path, env, capsys):
    from tfvtg.cli import main

    assert main(["decompose", str(_annotations(tmp_path, ANN)), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base-url" in err and "api_key=" not in err


# ------------------------------------------------------------------ item 11: odd text never loses output

def test_decompose_cli_survives_lone_surrogates(tmp_path, env, capsys):
    from tfvtg.cli import main

    ann = {"v\ud800": {"duration": 4, "timestamps": [[0, 1], [1, 2]],
                       "sentences": ["a person sits \ud800 down", "a person stands up"]}}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))  # the file holds the JSON escape "\ud800"

    def script(req, n):
        q = query_of(req)
        if "sits" in q:  # a lone surrogate escaped inside the model's JSON
            return Reply(answer(q, extra=" \ud800"))  # json.dumps writes it as the escape \\ud800
        return Reply(answer(q) + " \ud800")  # and one in the message text itself

    env("unused")
    out = tmp_path / "out.json"
    argv = ["decompose", str(path), "--out", str(out), "--no-progress", "--cache", str(tmp_path / "c.sqlite")]
    with ChatServer(script) as server:
        assert main(argv + ["--base-url", server.url]) == 0
        raw = out.read_bytes().decode("utf-8")  # strict UTF-8
        data = json.loads(raw)
        (vid, entry), = data.items()
        assert vid == "v\ufffd"
        assert entry["sentences"] == ["a person sits \ufffd down", "a person stands up"]
        sits, stands = (Decomposition.from_tfvtg(r) for r in entry["response"])
        assert not sits.fallback and not stands.fallback
        assert sits.query_descriptions == ("a person sits \ufffd down", "a person sits \ufffd down \ufffd")
        assert stands.query_descriptions[0] == "a person stands up"
        sent = len(server.requests)
        assert main(argv + ["--base-url", server.url]) == 0  # the re-run resumes: nothing asked again
        assert len(server.requests) == sent
    out.unlink()
    assert main(argv + ["--base-url", closed_port_url()]) == 0  # every answer came from the cache
    assert json.loads(out.read_text()) == data


def test_decompose_cli_writes_its_output_as_it_goes(tmp_path, env, monkeypatch):
    import tfvtg.commands.decompose as command
    from tfvtg.cli import main

    monkeypatch.setattr(command, "_WRITE_EVERY_S", 0.0)
    out = tmp_path / "out.json"
    ann = {"v": {"duration": 9, "sentences": [f"sentence {i}" for i in range(5)]}}
    answered_on_disk = []

    def script(req, n):
        data = json.loads(out.read_text())
        answered_on_disk.append(sum(r is not None for r in data["v"]["response"]))
        return good(req, n)

    env("unused")
    with ChatServer(script) as server:
        assert main(["decompose", str(_annotations(tmp_path, ann)), "--out", str(out), "--no-progress",
                     "--concurrency", "1", "--cache", str(tmp_path / "c.sqlite"), "--base-url", server.url]) == 0
    assert answered_on_disk == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ item 15: damaged llm.sqlite never stops work

def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT, email TEXT)")
    db.execute("INSERT INTO users VALUES ('ann', 'ann@example.org')")
    db.commit()
    db.close()


def _other_columns(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE decompositions (id INTEGER, payload BLOB)")
    db.commit()
    db.close()


def _malformed(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE decompositions (key TEXT PRIMARY KEY, model TEXT, prompt_version TEXT, query TEXT, "
               "response TEXT, created REAL)")
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # the header survives, the schema page does not
    path.write_bytes(bytes(data))


DAMAGE = {
    "not-sqlite": lambda p: p.write_bytes(b"this is not a database\n" * 40),
    "short-garbage": lambda p: p.write_bytes(b"\x00\x01"),
    "malformed": _malformed,
    "foreign-tables": _foreign,
    "foreign-columns": _other_columns,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_default_cache_is_bypassed_with_one_warning(tmp_path, env, damage):
    path = tmp_path / "cache" / "llm.sqlite"
    path.parent.mkdir(parents=True)
    DAMAGE[damage](path)
    before = path.read_bytes()
    with ChatServer(good) as server:
        env(server.url)
        res, caught = recorded(lambda: tfvtg.ground(FEATS, QUERY, text_encoder=HashEncoder()))
        again, caught_again = recorded(lambda: tfvtg.ground(FEATS, QUERY, text_encoder=HashEncoder()))
    assert not res.decomposition.fallback and res.decomposition.relationship == "sequentially"
    assert not again.decomposition.fallback
    assert len(server.requests) == 2  # nothing cached: asked again
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and str(path) in texts[0] and "not usable" in texts[0], texts
    assert caught[0].filename == __file__
    assert caught_again == []  # one warning per file and process
    assert path.read_bytes() == before  # never overwritten


def test_an_explicit_cache_that_cannot_work_is_a_clear_error(tmp_path, env, capsys):
    from tfvtg.cli import main

    path = tmp_path / "mine.sqlite"
    _foreign(path)
    with pytest.raises(CacheError, match="mine.sqlite") as info:
        DecompositionCache(path)
    assert isinstance(info.value, OSError)
    with pytest.raises(CacheError, match="another program's tables"):
        OpenAIDecomposer(model="m", base_url=closed_port_url(), cache=path)
    bypassed, caught = recorded(lambda: DecompositionCache(path, strict=False))
    assert not bypassed.usable and len(caught) == 1 and bypassed.get("m", "v", "q") is None
    env("unused")
    code = main(["decompose", str(_annotations(tmp_path, ANN)), "--out", str(tmp_path / "o.json"),
                 "--base-url", closed_port_url(), "--cache", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "mine.sqlite" in err


def test_a_zero_byte_cache_is_an_empty_cache(tmp_path, env):
    path = tmp_path / "cache" / "llm.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with ChatServer(good) as server:
        env(server.url)
        _, caught = recorded(lambda: [default_decomposer().decompose(QUERY) for _ in range(2)])
    assert caught == [] and len(server.requests) == 1  # the second answer came from the cache
    assert len(DecompositionCache(path)) == 1


def test_a_cache_whose_pages_are_damaged_is_bypassed_mid_run(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = DecompositionCache(path)
    cache.put_many("m", "v", [(f"query {i} " + "x" * 500, Decomposition.single(f"q{i}")) for i in range(200)])
    cache.close()
    data = bytearray(path.read_bytes())
    data[8192:] = b"\xee" * (len(data) - 8192)  # the schema page survives, the table's pages do not
    path.write_bytes(bytes(data))
    reopened = DecompositionCache(path)  # opens fine
    with ChatServer(good) as server:
        d = OpenAIDecomposer(model="m", base_url=server.url, api_key=KEY, cache=reopened)
        dec, caught = recorded(lambda: d.decompose(QUERY))
    assert not dec.fallback and not reopened.usable
    assert len(caught) == 1 and str(path) in str(caught[0].message)


def test_a_read_only_cache_is_read_not_written(tmp_path, monkeypatch):
    import tfvtg.llm.cache as cache_module

    path = tmp_path / "c.sqlite"
    DecompositionCache(path).put("m", tfvtg.llm.PROMPT_VERSION, "known",
                                 Decomposition("single-query", ("known from the cache",)))
    real_access = cache_module.os.access
    monkeypatch.setattr(cache_module.os, "access",
                        lambda p, mode: False if Path(p) == path and mode == cache_module.os.W_OK
                        else real_access(p, mode))
    (cache, caught) = recorded(lambda: DecompositionCache(path))
    assert cache.usable and not cache.writable
    assert len(caught) == 1 and "read-only" in str(caught[0].message)
    with ChatServer(good) as server:
        d = OpenAIDecomposer(model="m", base_url=server.url, api_key=KEY, cache=cache)
        assert d.decompose("known").query_descriptions == ("known from the cache",)
        assert not d.decompose("new one").fallback
        assert not d.decompose("new one").fallback
    assert len(server.requests) == 2  # "new one" could not be stored, so it was asked twice
    assert cache.put_many("m", "v", [("x", Decomposition.single("x"))]) == 0


# ------------------------------------------------------------------ import_tfvtg keeps per-video answers

def test_import_keeps_each_videos_answer_for_a_repeated_sentence(tmp_path):
    published = json.loads(FIXTURE.read_text())
    d = OpenAIDecomposer(model="m", base_url=closed_port_url(), api_key=KEY, cache=tmp_path / "c.sqlite",
                         max_retries=0)
    assert d.import_tfvtg(FIXTURE) == sum(len(v["sentences"]) for v in published.values())  # 17

    def published_answer(video: str, sentence: str) -> Decomposition:
        i = published[video]["sentences"].index(sentence)
        return Decomposition.from_tfvtg(published[video]["response"][i])

    closet = "a person opens a door to a closet."
    assert d.decompose(closet, video="VU996") == published_answer("VU996", closet)
    assert d.decompose(closet, video="VU996").relationship == "sequentially"
    assert d.decompose(closet, video="CM6T8") == published_answer("CM6T8", closet)
    assert d.decompose(closet, video="CM6T8").relationship == "single-query"
    assert d.decompose(closet) == published_answer("CM6T8", closet)  # without a video: the first in the file
    assert d.decompose(closet, video="unknown") == published_answer("CM6T8", closet)
    door = "a person walks through the doorway."
    assert d.decompose(door, video="7IPW7") == published_answer("7IPW7", door)
    assert d.decompose(door, video="7IPW7") != published_answer("VXJS4", door)
    batch = d.decompose_many([closet, closet], videos=["VU996", "CM6T8"], progress=False)
    assert batch == [published_answer("VU996", closet), published_answer("CM6T8", closet)]


def test_decompose_cli_reproduces_imported_answers_per_video(tmp_path, env):
    from tfvtg.cli import main

    published = json.loads(FIXTURE.read_text())
    cache = tmp_path / "c.sqlite"
    DecompositionCache(cache).import_tfvtg(FIXTURE, "gpt-4o-mini", tfvtg.llm.PROMPT_VERSION)
    ann = {vid: {k: v for k, v in entry.items() if k != "response"} for vid, entry in published.items()}
    out = tmp_path / "out.json"
    env("unused")
    assert main(["decompose", str(_annotations(tmp_path, ann)), "--out", str(out), "--no-progress",
                 "--cache", str(cache), "--base-url", closed_port_url()]) == 0  # nothing asked
    data = json.loads(out.read_text())
    for vid, entry in published.items():
        assert [Decomposition.from_tfvtg(r) for r in data[vid]["response"]] == \
            [Decomposition.from_tfvtg(r) for r in entry["response"]]


def test_import_refuses_files_it_cannot_read(tmp_path):
    cache = DecompositionCache(tmp_path / "c.sqlite")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(InvalidInputError, match="deep.json"):
        cache.import_tfvtg(deep, "m", "v")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        cache.import_tfvtg(tmp_path / "missing.json", "m", "v")


# ------------------------------------------------------------------ tfvtg ground: one line per failure

@pytest.fixture
def hash_encoder_name():
    from tfvtg.encoders import register_encoder

    register_encoder("test-hash-encoder", lambda **kw: HashEncoder(), overwrite=True)
    return "test-hash-encoder"


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "feats.npy"
    np.save(path, np.random.default_rng(1).standard_normal((60, 4, 16)).astype(np.float16))
    return path


def test_cli_ground_with_an_unreachable_llm_warns_in_one_line_and_answers(npy, env, hash_encoder_name, capsys):
    from tfvtg.cli import main

    env(closed_port_url())
    assert main(["ground", str(npy), QUERY, "--encoder", hash_encoder_name, "--duration", "20"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfvtg ground: warning:") and "cannot reach" in lines[0]
    assert "query alone" in captured.out and " 1. " in captured.out


def test_cli_ground_no_llm_asks_nothing(npy, env, hash_encoder_name, capsys):
    from tfvtg.cli import main

    with ChatServer(good) as server:
        env(server.url)
        assert main(["ground", str(npy), QUERY, "--encoder", hash_encoder_name, "--no-llm"]) == 0
        assert server.requests == []
        assert main(["ground", str(npy), QUERY, "--model", hash_encoder_name]) == 0  # --model: the old name
        assert len(server.requests) == 1
    assert capsys.readouterr().err == ""


def test_cli_ground_json_is_strict(npy, tmp_path, env, hash_encoder_name, capsys):
    from tfvtg.cli import main

    constant = tmp_path / "constant.npy"
    np.save(constant, np.ones((30, 4, 16), np.float16))
    decomposition = tmp_path / "dec.json"
    decomposition.write_text(answer(QUERY))
    for features in (npy, constant):
        assert main(["ground", str(features), QUERY, "--encoder", hash_encoder_name, "--json",
                     "--decomposition", str(decomposition)]) == 0
        out = capsys.readouterr().out

        def refuse(token):
            raise AssertionError(f"non-strict JSON token {token}")

        data = json.loads(out, parse_constant=refuse)
        assert data["decomposition"]["relationship"] == "sequentially" and data["moments"]


def _ground_failures(tmp_path: Path, npy: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "wrong.json").write_text(json.dumps({"relationship": "later", "query_json": []}))
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (tmp_path / "empty.npy").write_bytes(b"")
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    f = str(npy)
    return {
        "missing-features": (["missing.npy", "q"], "feature file not found"),
        "missing-video": ([str(tmp_path / "missing.mp4"), "q"], "video file not found"),
        "empty-features": ([str(tmp_path / "empty.npy"), "q"], "empty.npy"),
        "decomposition-not-json": ([f, "q", "--decomposition", str(tmp_path / "notjson.json")], "not JSON"),
        "decomposition-wrong": ([f, "q", "--decomposition", str(tmp_path / "wrong.json")], "not a TFVTG"),
        "decomposition-deep": ([f, "q", "--decomposition", str(tmp_path / "deep.json")], "nested too deeply"),
        "decomposition-missing": ([f, "q", "--decomposition", str(tmp_path / "nope.json")], "not found"),
        "encoder-missing-dir": ([f, "q", "--encoder", str(tmp_path / "no-such-model")], "--encoder PATH"),
        "encoder-other-model": ([f, "q", "--encoder", str(qwen)], "qwen2_vl"),
        "bad-preset": ([f, "q", "--preset", "nope", "--encoder", "test-hash-encoder"], "preset"),
    }


@pytest.mark.parametrize("case", ["missing-features", "missing-video", "empty-features", "decomposition-not-json",
                                  "decomposition-wrong", "decomposition-deep", "decomposition-missing",
                                  "encoder-missing-dir", "encoder-other-model", "bad-preset"])
def test_cli_ground_failures_are_one_line(tmp_path, npy, env, hash_encoder_name, capsys, case):
    from tfvtg.cli import main

    argv, expected = _ground_failures(tmp_path, npy)[case]
    code = main(["ground", *argv, "--no-llm"])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfvtg ground: "), captured.err
    assert expected in lines[0]
    assert "Blip2Encoder(" not in lines[0] and "Traceback" not in captured.err


def _messages(err: str) -> list[str]:
    """stderr without progress bars (transformers' "Loading weights", encoding)."""
    return [ln for ln in err.splitlines() if ln.strip() and not re.search(r"\d+%\||it/s\]|s/it\]", ln)]


def test_cli_ground_end_to_end_on_a_generated_video(tmp_path, env, tiny_blip2_dir, video_file, capsys):
    from tfvtg.cli import main

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    assert main(["ground", video_file, "a green bar moves", "--encoder", tiny_blip2_dir, "--no-llm", "--top", "1"]) == 0
    captured = capsys.readouterr()
    assert _messages(captured.err) == [] and len([ln for ln in captured.out.splitlines() if " s - " in ln]) == 1
    env(closed_port_url())  # an LLM configured but not there: a one-line warning, then the answer
    assert main(["ground", video_file, "a green bar moves", "--encoder", tiny_blip2_dir]) == 0
    captured = capsys.readouterr()
    messages = _messages(captured.err)
    assert len(messages) == 1 and "cannot reach" in messages[0] and " 1. " in captured.out
    for argv in ([str(broken), "q"], [str(tmp_path / "absent.mp4"), "q"]):
        assert main(["ground", *argv, "--encoder", tiny_blip2_dir, "--no-llm"]) != 0
        captured = capsys.readouterr()
        messages = _messages(captured.err)
        assert len(messages) == 1 and messages[0].startswith("tfvtg ground: "), captured.err
