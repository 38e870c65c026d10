"""The JSON API of ``tfvtg serve`` (in process, with httpx through
fastapi's TestClient) on a library of generated videos indexed with the tiny
BLIP-2: search, media by id with range requests, thumbnails, clips, curves,
uploads, and what the server refuses."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from tfvtg.core.decomposition import Decomposition

pytest.importorskip("fastapi")
av = pytest.importorskip("av")
PIL = pytest.importorskip("PIL.Image")

from fastapi.testclient import TestClient  # noqa: E402

from tfvtg.app import create_app  # noqa: E402
from tfvtg.app.media import RangeNotSatisfiable, parse_range  # noqa: E402
from tfvtg.app.safety import RefusedRequestError, check_token, check_video_id, refusal  # noqa: E402
from tfvtg.app.service import ReadOnlyLibrary, Service, Settings  # noqa: E402

BASE = "http://127.0.0.1"


class CountingDecomposer:
    """Stands in for the LLM; counts the questions it was asked."""

    def __init__(self):
        self.asked: list[str] = []

    def decompose(self, query: str) -> Decomposition:
        self.asked.append(query)
        return Decomposition("sequentially", (query,), (("a person opens the door",), ("a man sits on a chair",)))


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``directory``: size, modification time and content hash
    (SQLite's shared-memory index, rewritten by every reader, left out)."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns,
                                            hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


@pytest.fixture(scope="module")
def library_dir(tiny_blip2_dir, tmp_path_factory):
    from tfvtg import Library, VideoFeatures
    from tfvtg.testing import make_video

    root = tmp_path_factory.mktemp("serve-api")
    videos = root / "videos"
    videos.mkdir()
    paths = [make_video(videos / f"{name}.mp4", n_frames=n, fps=10, size=(96, 64), codec="libx264")
             for name, n in (("kitchen", 90), ("hallway", 120), ("garden", 60))]
    lib = Library(root / "lib", encoder=tiny_blip2_dir)
    assert lib.add_many(paths, progress=False).ok
    kitchen = lib.features("kitchen")
    # an id that needs URL-encoding, and a video known only by its features
    lib.add_features("my clip (1)", kitchen, source=paths[0])
    lib.add_features("no file", VideoFeatures(np.array(kitchen.tokens), duration=kitchen.duration,
                                              encoder=kitchen.encoder))
    lib.close()
    return root / "lib"


@pytest.fixture(scope="module")
def decomposer():
    return CountingDecomposer()


@pytest.fixture(scope="module")
def client(library_dir, decomposer):
    app = create_app(library_dir, decomposer=decomposer, warm_up=False)
    with TestClient(app, base_url=BASE) as c:
        yield c


def json_error(response) -> str:
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == response.status_code
    assert "Traceback" not in body["error"] and body["error"]
    return body["error"]


# -- search ----------------------------------------------------------------------------------
def test_search_returns_hits_across_videos_best_first_with_what_the_page_shows(client):
    r = client.get("/api/search", params={"q": "a person opens the door", "top_k": 6})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["server-timing"].startswith("app;dur=")
    body = r.json()
    hits = body["hits"]
    assert body["query"] == "a person opens the door" and 1 <= len(hits) <= 6
    assert len({h["video"] for h in hits}) >= 2  # across videos
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert [h["rank"] for h in hits] == list(range(len(hits)))
    assert len({(h["video"], round(h["start"], 2), round(h["end"], 2)) for h in hits}) == len(hits)  # each once
    videos = {v["id"]: v for v in client.get("/api/videos").json()["videos"]}
    for h in hits:
        assert 0 <= h["start"] < h["end"] <= videos[h["video"]]["duration"] + 1e-6
        assert h["duration"] == videos[h["video"]]["duration"]
        assert h["media"] == videos[h["video"]]["media"]
    assert body["decomposition"]["relationship"] == "sequentially"
    assert isinstance(body["search_ms"], float) and body["candidates"] >= 2


def test_videos_lists_the_library_with_url_safe_media_paths(client):
    videos = {v["id"]: v for v in client.get("/api/videos").json()["videos"]}
    assert set(videos) == {"kitchen", "hallway", "garden", "my clip (1)", "no file"}
    assert videos["kitchen"]["duration"] == pytest.approx(9.0) and videos["kitchen"]["has_source"]
    assert videos["my clip (1)"]["media"] == "/api/videos/my%20clip%20%281%29"
    assert not videos["no file"]["has_source"]
    assert client.get(videos["my clip (1)"]["media"] + "/stream").status_code == 200


@pytest.mark.parametrize("params, words", [
    ({"q": "   "}, "query is empty"),
    ({}, "q: Field required"),
    ({"q": "a dog", "top_k": 0}, "top_k"),
    ({"q": "a dog", "top_k": 1000}, "top_k must be a whole number from 1 to 100"),
    ({"q": "a dog", "top_k": "ten"}, "top_k"),
    ({"q": "word " * 300}, "under 1000"),
])
def test_bad_search_parameters_are_refused_in_words(client, params, words):
    r = client.get("/api/search", params=params)
    assert r.status_code == 400
    assert words in json_error(r)


def test_a_search_never_modifies_the_library_directory(library_dir, tiny_blip2_dir):
    before = snapshot(library_dir)
    app = create_app(library_dir, decomposer=CountingDecomposer(), warm_up=False)
    service = app.state.service
    assert isinstance(service.library, ReadOnlyLibrary)
    for name in ("add", "add_many", "add_features", "add_features_many", "remove"):
        assert not hasattr(service.library, name)  # nothing on the server's side can write
    with TestClient(app, base_url=BASE) as c:
        opened = snapshot(library_dir)
        for q in ("a person opens the door", "a dog runs", "a woman drinks water", "a dog runs"):
            hits = c.get("/api/search", params={"q": q, "top_k": 5}).json()["hits"]
            h = hits[0]
            assert c.get(h["media"] + "/curve", params={"q": q, "start": h["start"], "end": h["end"]}).status_code == 200
            assert c.get(h["media"] + "/thumb", params={"t": h["start"]}).status_code == 200
        assert c.get("/api/videos").status_code == 200 and c.get("/api/info").status_code == 200
        assert c.get("/api/videos/kitchen/clip", params={"start": 1, "end": 3}).status_code == 200
        # SQLite's write-ahead log exists while the catalogue is open, and stays empty: nothing was written
        after = snapshot(library_dir)
        assert after == opened
        assert after.get("catalogue.sqlite-wal", (0,))[0] == 0
    assert snapshot(library_dir) == before


# -- media by id -----------------------------------------------------------------------------------
def test_video_stream_answers_range_requests_so_the_player_can_seek(client, library_dir):
    from tfvtg import Library

    with Library(library_dir) as lib:
        source = Path(lib.info("hallway").source)
    data = source.read_bytes()
    url = "/api/videos/hallway/stream"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/mp4"
    part = client.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.headers["content-length"] == "1000"
    tail = client.get(url, headers={"Range": "bytes=-300"})
    assert tail.status_code == 206 and tail.content == data[-300:]
    rest = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert rest.status_code == 206 and rest.content == data[-10:]
    past = client.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
    head = client.head(url, headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10" and head.content == b""


@pytest.mark.parametrize("header, size, expected", [
    (None, 100, None), ("bytes=0-9", 100, (0, 9)), ("bytes=90-200", 100, (90, 99)), ("bytes=-5", 100, (95, 99)),
    ("bytes=-500", 100, (0, 99)), ("bytes=10-", 100, (10, 99)), ("bytes=0-1,5-6", 100, (0, 1)),
    ("items=0-1", 100, None), ("bytes=9-3", 100, None), ("bytes=-", 100, None),
])
def test_parse_range(header, size, expected):
    got = parse_range(header, size)
    assert (None if got is None else (got.first, got.last)) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0"])
def test_parse_range_refuses_what_selects_nothing(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@pytest.mark.parametrize("path", [
    "/api/videos/..%2F..%2Fetc%2Fpasswd/stream",
    "/api/videos/%2Fetc%2Fpasswd/stream",
    "/api/videos/%2e%2e/stream",
    "/api/videos/%252e%252e%252fetc%252fpasswd/stream",  # encoded twice
    "/api/videos/..%5C..%5Cwindows/stream",
    "/api/videos/kitchen%00.mp4/stream",
    "/static/..%2F..%2Fpyproject.toml",
    "/api/uploads/..%2F..%2Fetc/stream",
    "/api/videos/../../../etc/passwd",
    "/api/videos/kitchen/../../../etc/passwd",
    "/api/videos//etc/passwd/stream",
])
def test_traversal_and_its_encoded_variants_are_refused_before_routing(client, path):
    # (httpx tidies plain '..' segments away before sending: those end as 404;
    # the next test gives the app the paths byte for byte)
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    if "%" in path or "//" in path:
        assert r.status_code == 400 and "refused" in json_error(r)
    assert "root:" not in r.text and "[project]" not in r.text
    assert r.headers["content-type"] == "application/json"


def test_raw_traversal_paths_reach_the_guard_unchanged_and_are_refused(library_dir):
    """The ASGI app itself, given the paths byte for byte (no client tidying)."""
    import asyncio

    app = create_app(library_dir, warm_up=False)

    async def call(raw: bytes, decoded: str) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": decoded, "raw_path": raw, "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1:7860")], "http_version": "1.1", "scheme": "http",
                 "server": ("127.0.0.1", 7860), "client": ("127.0.0.1", 5555), "root_path": ""}
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    for raw, decoded in [(b"/api/videos/../../etc/passwd/stream", "/api/videos/../../etc/passwd/stream"),
                         (b"/api/videos/%2e%2e%2f%2e%2e%2fetc/stream", "/api/videos/../../etc/stream"),
                         (b"/static/../server.py", "/static/../server.py"),
                         (b"/static/./app.js", "/static/./app.js"),
                         (b"/api/videos/..\\..\\x/stream", "/api/videos/..\\..\\x/stream")]:
        status, body = asyncio.run(call(raw, decoded))
        assert status == 400 and b"refused" in body, raw
    app.state.service.close()


def test_refusal_and_id_checks():
    assert refusal(b"/api/videos/kitchen/stream", "/api/videos/kitchen/stream") is None
    assert refusal(b"/api/videos/my%20clip%20%281%29/stream", "/api/videos/my clip (1)/stream") is None
    assert refusal(b"/api/videos/a..b/stream", "/api/videos/a..b/stream") is None  # dots inside a name are fine
    assert "percent-encoded" in refusal(b"/x/%2E%2E/y", "/x/../y")
    for bad in ("..", ".", "/etc/passwd", "a/b", "a\\b", "~root", "C:secret", "nul\x00"):
        with pytest.raises(RefusedRequestError, match="refused"):
            check_video_id(bad)
    assert check_token("0123456789abcdef") == "0123456789abcdef"
    for bad in ("../../etc", "0123456789ABCDEF", "0123", "0123456789abcdef0"):
        with pytest.raises(RefusedRequestError):
            check_token(bad)


def test_unknown_ids_and_videos_without_a_file_are_told_in_words(client):
    r = client.get("/api/videos/nope/stream")
    assert r.status_code == 404 and "no video 'nope'" in json_error(r)
    r = client.get("/api/videos/no%20file/stream")
    assert r.status_code == 404 and "added as features" in json_error(r)
    r = client.get("/api/uploads/0123456789abcdef/stream")
    assert r.status_code == 404 and "upload the file again" in json_error(r)
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and "no such page" in json_error(r)


def test_a_host_header_of_another_site_is_refused(client, library_dir):
    r = client.get("/api/info", headers={"host": "evil.example:7860"})
    assert r.status_code == 400 and "Host" in json_error(r)
    assert client.get("/api/info", headers={"host": "localhost:7860"}).status_code == 200
    assert client.get("/api/info", headers={"host": "[::1]:7860"}).status_code == 200
    opened = create_app(library_dir, warm_up=False, allowed_hosts=["*"])
    with TestClient(opened, base_url=BASE) as c:
        assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 200


def test_thumbnail_is_the_frame_at_the_asked_time(client):
    def red(t: float) -> float:
        r = client.get("/api/videos/kitchen/thumb", params={"t": t, "w": 64})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        image = PIL.open(io.BytesIO(r.content)).convert("RGB")
        assert image.size[0] == 64
        return float(np.median(np.asarray(image)[..., 0]))

    # make_video tints frame i with red (7 i) mod 256, at 10 frames per second
    assert red(0.5) == pytest.approx(35, abs=20)
    assert red(2.0) == pytest.approx(140, abs=20)
    assert red(3.5) == pytest.approx(245, abs=20)
    r = client.get("/api/videos/kitchen/thumb", params={"t": -1})
    assert r.status_code == 400
    assert client.get("/api/videos/kitchen/thumb", params={"t": 1000}).status_code == 200  # the last frame


def test_cut_downloads_the_moment_as_an_mp4(client, tmp_path):
    r = client.get("/api/videos/hallway/clip", params={"start": 4.0, "end": 7.0, "pad": 1.0})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["content-disposition"].startswith("attachment;") and "hallway-0m0" in r.headers["content-disposition"]
    assert r.headers["x-clip-method"] in ("stream-copy", "re-encode")
    start, end = float(r.headers["x-clip-start"]), float(r.headers["x-clip-end"])
    assert start <= 3.0 + 1e-6 and end == pytest.approx(8.0)
    out = tmp_path / "clip.mp4"
    out.write_bytes(r.content)
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        frames = sum(1 for _ in c.decode(stream))
    assert frames == pytest.approx((end - start) * 10, abs=2)
    again = client.get("/api/videos/hallway/clip", params={"start": 4.0, "end": 7.0, "pad": 1.0, "mode": "reencode"})
    assert again.headers["x-clip-method"] == "re-encode"
    r = client.get("/api/videos/no%20file/clip", params={"start": 1, "end": 2})
    assert r.status_code == 409 and "added as features" in json_error(r)
    r = client.get("/api/videos/hallway/clip", params={"start": 5, "end": 2})
    assert r.status_code == 400 and "before it starts" in json_error(r)


def test_curve_carries_the_moment_the_candidates_and_the_sub_events(client, decomposer):
    q = "a person opens the door and then sits"
    hits = client.get("/api/search", params={"q": q, "top_k": 3}).json()["hits"]
    asked = decomposer.asked.count(q)
    h = hits[0]
    curve = client.get(h["media"] + "/curve", params={"q": q, "start": h["start"], "end": h["end"]}).json()
    assert len(curve["times"]) == len(curve["values"]) == round(h["duration"] * 3)
    assert all(0 < t < curve["duration"] for t in curve["times"])
    assert curve["times"] == sorted(curve["times"])
    assert curve["moment"] == {"start": h["start"], "end": h["end"]}
    assert curve["min"] <= min(curve["values"]) and curve["max"] >= max(curve["values"])
    assert curve["candidates"] and all(0 <= c["start"] < c["end"] <= curve["duration"] + 1e-6
                                       for c in curve["candidates"])
    assert curve["relationship"] == "sequentially"
    assert [e["description"] for e in curve["sub_events"]] == ["a person opens the door", "a man sits on a chair"]
    assert all(len(e["values"]) == len(curve["values"]) and e["moments"] for e in curve["sub_events"])
    client.get(hits[-1]["media"] + "/curve", params={"q": q})
    assert decomposer.asked.count(q) == asked == 1  # the LLM is asked once per query


def test_long_curves_are_pooled_keeping_their_peaks():
    from tfvtg.app.service import CURVE_POINTS, _pool_curve

    curve = np.zeros(10_800, np.float32)
    curve[5_000] = 0.9
    times, values = _pool_curve(curve, 1 / 3)
    assert len(times) == len(values) == CURVE_POINTS and max(values) == pytest.approx(0.9)
    assert times[0] > 0 and times[-1] < 3600


# -- one video: uploads --------------------------------------------------------------------------------
def wait_for(client, job_id: str) -> dict:
    import time

    seen_running = False
    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}").json()
        seen_running |= job["state"] == "running"
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the encoding job did not finish")


def test_an_uploaded_video_is_encoded_with_progress_and_grounded(client, tmp_path):
    from tfvtg.testing import make_video

    data = Path(make_video(tmp_path / "porch.mp4", n_frames=75, fps=10, size=(96, 64), codec="libx264")).read_bytes()
    r = client.post("/api/uploads", params={"name": "porch.mp4"}, content=data)
    assert r.status_code == 201
    up = r.json()
    assert up["name"] == "porch.mp4" and up["size"] == len(data) and up["duration"] == pytest.approx(7.5)
    job = wait_for(client, up["job"])
    assert job["state"] == "done" and job["done"] == job["total"] == round(7.5 * 3) and job["fraction"] == 1.0
    assert client.get(f"/api/uploads/{up['token']}").json()["ready"] is True
    body = client.get(f"/api/uploads/{up['token']}/search", params={"q": "a person walks", "top_k": 3}).json()
    assert 1 <= len(body["hits"]) <= 3
    for h in body["hits"]:
        assert h["name"] == "porch.mp4" and h["media"] == f"/api/uploads/{up['token']}"
        assert 0 <= h["start"] < h["end"] <= 7.5 + 1e-6 and -1 <= h["score"] <= 1  # a mean cosine similarity
    assert client.get(f"/api/uploads/{up['token']}/stream", headers={"Range": "bytes=0-99"}).content == data[:100]
    assert client.get(f"/api/uploads/{up['token']}/thumb", params={"t": 2.0}).status_code == 200
    curve = client.get(f"/api/uploads/{up['token']}/curve", params={"q": "a person walks"}).json()
    assert len(curve["values"]) == round(7.5 * 3)
    clip = client.get(f"/api/uploads/{up['token']}/clip", params={"start": 2, "end": 4, "pad": 0.5})
    assert clip.status_code == 200 and "porch-0m0" in clip.headers["content-disposition"]


def test_a_multipart_upload_works_and_the_browser_file_name_is_display_only(client, tmp_path):
    from tfvtg.testing import make_video

    data = Path(make_video(tmp_path / "x.mp4", n_frames=30, fps=10, size=(96, 64), codec="libx264")).read_bytes()
    r = client.post("/api/uploads", files={"file": ("../../../etc/evil.mp4", data, "video/mp4")})
    assert r.status_code == 201
    up = r.json()
    assert up["name"] == "evil.mp4"
    service = client.app.state.service
    stored = service.upload(up["token"]).path
    assert stored.parent == service.upload_dir and stored.name == up["token"] + ".mp4"
    assert stored.read_bytes() == data
    assert wait_for(client, up["job"])["state"] == "done"


def test_an_upload_that_is_no_video_is_refused_in_words_and_nothing_is_kept(client):
    service = client.app.state.service
    before = set(service.upload_dir.iterdir())
    r = client.post("/api/uploads", params={"name": "notes.txt"}, content=b"shopping list\n" * 100)
    assert r.status_code == 422
    message = json_error(r)
    assert "notes.txt is not a video" in message and str(service.upload_dir) not in message
    r = client.post("/api/uploads", params={"name": "empty.mp4"}, content=b"")
    assert r.status_code == 400 and "empty" in json_error(r)
    assert set(service.upload_dir.iterdir()) == before


def test_uploads_over_the_limit_are_refused_while_they_stream(library_dir):
    settings = Settings(max_upload_bytes=10_000)
    app = create_app(library_dir, warm_up=False, settings=settings)
    service = app.state.service
    with TestClient(app, base_url=BASE) as c:
        r = c.post("/api/uploads", params={"name": "big.mp4"}, content=b"\0" * 20_000)  # declared too large
        assert r.status_code == 413 and "limited to 9.8 KiB" in json_error(r)

        def chunks():  # no Content-Length: counted while it arrives
            for _ in range(50):
                yield b"\0" * 1000

        r = c.post("/api/uploads", params={"name": "big.mp4"}, content=chunks())
        assert r.status_code == 413 and "over the limit" in json_error(r)
        r = c.post("/api/uploads", files={"file": ("big.mp4", b"\0" * 30_000, "video/mp4")})
        assert r.status_code == 413
        assert list(service.upload_dir.iterdir()) == []
        upload_dir = service.upload_dir
    assert not upload_dir.exists()  # the server's temporary directory goes with it


def test_without_a_library_the_page_is_in_one_video_mode(tiny_blip2_dir):
    app = create_app(None, encoder=tiny_blip2_dir, warm_up=False)
    with TestClient(app, base_url=BASE) as c:
        info = c.get("/api/info").json()
        assert info["library"] is None and info["max_upload_bytes"] == Settings().max_upload_bytes
        for path in ("/api/search?q=a+dog", "/api/videos"):
            r = c.get(path)
            assert r.status_code == 409 and "one video" in json_error(r)


def test_the_page_and_its_assets_come_from_memory_with_safety_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="query"' in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "/api/search" in js.text
    assert client.get("/static/app.css").status_code == 200
    r = client.get("/static/server.py")
    assert r.status_code == 404 and "no asset" in json_error(r)


def test_an_unexpected_failure_is_a_sentence_not_a_trace(library_dir, monkeypatch):
    app = create_app(library_dir, warm_up=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app.state.service, "search", broken)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        r = c.get("/api/search", params={"q": "a dog"})
    assert r.status_code == 500 and json_error(r) == "the server failed: RuntimeError: disk on fire"


def test_service_refuses_a_missing_or_foreign_library_directory(tmp_path):
    from tfvtg.errors import LibraryError, MissingFileError

    with pytest.raises(MissingFileError, match="tfvtg index"):
        Service(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()  # not created by a typo
    (tmp_path / "other").mkdir()
    with pytest.raises(LibraryError, match="not a tfvtg library"):
        Service(tmp_path / "other")


def test_a_library_without_a_known_encoder_says_how_to_give_one(tmp_path):
    import time

    from tfvtg import Library, VideoFeatures

    rng = np.random.default_rng(0)
    with Library(tmp_path / "lib") as lib:  # built from features alone: no encoder name stored
        lib.add_features("a", VideoFeatures(rng.standard_normal((30, 4, 8)).astype(np.float16), duration=10.0,
                                            encoder="some-space"))
    app = create_app(tmp_path / "lib")  # warms up in the background
    with TestClient(app, base_url=BASE) as c:
        for _ in range(200):
            info = c.get("/api/info").json()
            if info["ready"]:
                break
            time.sleep(0.05)
        assert "no encoder is known" in info["warm_error"] and "--encoder" in info["warm_error"]
        r = c.get("/api/search", params={"q": "a dog"})
        assert r.status_code == 409 and "--encoder NAME_OR_PATH" in json_error(r)
        assert c.get("/api/videos").json()["videos"][0]["id"] == "a"  # the rest still works


def test_older_uploads_make_room_for_newer_ones(tiny_blip2_dir, tmp_path):
    from tfvtg.app.safety import UnknownUploadError
    from tfvtg.testing import make_video

    data = Path(make_video(tmp_path / "a.mp4", n_frames=20, fps=10, size=(64, 48), codec="libx264")).read_bytes()
    service = Service(None, encoder=tiny_blip2_dir, settings=Settings(max_uploads=2, upload_dir=str(tmp_path / "up")))
    ups = [service.receive_upload(f"v{i}.mp4", iter([data[:500], data[500:]])) for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == sorted(u.path.name for u in ups[1:])
    with pytest.raises(UnknownUploadError, match="upload the file again"):
        service.upload(ups[0].token)
    with pytest.raises(UnknownUploadError):
        service.job(ups[0].job)
    service.close()
    assert (tmp_path / "up").is_dir() and not list((tmp_path / "up").iterdir())  # a given directory stays, emptied
