"""The searchable library on synthetic features and a stand-in text encoder
(fast): storage, two-stage search, the cross-video score, bad input."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from tfvtg import Hit, Library, VideoFeatures
from tfvtg.errors import (
    EncoderMismatchError,
    InvalidInputError,
    LibraryError,
    LibraryFormatError,
    UnknownVideoError,
)
from tfvtg.library.index import pool_segments, segment_bounds

D = 64
Q = 4


def vec(text: str) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


class HashEncoder:
    """Stand-in text encoder: a fixed random vector per sentence."""

    space = "hash-space"
    name = "hash-encoder"
    mask_threshold = 0.2

    def __init__(self):
        self.calls = 0

    def encode_text(self, texts):
        self.calls += 1
        return np.stack([vec(t) for t in texts])


class OtherEncoder(HashEncoder):
    space = "other-space"


def planted(events: dict[str, tuple[int, int]], t: int = 90, seed: int = 0, strength: float = 2.0) -> np.ndarray:
    """(T, Q, D) noise with each text's vector added to one token slot over its frame span."""
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((t, Q, D)).astype(np.float32) * 0.1
    scale = np.linalg.norm(feats[0, 0])
    for slot, (text, (a, b)) in enumerate(events.items()):
        u = vec(text)
        feats[a:b, slot % Q] += strength * u / np.linalg.norm(u) * scale
    return feats


def video(events=None, t=90, seed=0, strength=2.0, space="hash-space") -> VideoFeatures:
    return VideoFeatures(planted(events or {}, t, seed, strength), duration=t / 3.0, encoder=space)


@pytest.fixture()
def lib(tmp_path):
    library = Library(tmp_path / "lib", encoder=HashEncoder())
    yield library
    library.close()


def fill(library: Library, n: int = 12) -> None:
    """n videos of 30 s; v3 shows "a dog jumps" at 10-18 s, v7 "a man walks" at 20-28 s."""
    plants = {3: {"a dog jumps": (30, 54)}, 7: {"a man walks": (60, 84)}}
    library.add_features_many((f"v{i}", video(plants.get(i), seed=i)) for i in range(n))


# ---------------------------------------------------------------- search

def test_search_finds_the_planted_moment_across_videos(lib):
    fill(lib)
    hits = lib.search("a dog jumps", top_k=5)
    assert isinstance(hits[0], Hit)
    assert hits[0].video == "v3"
    assert hits[0].start == pytest.approx(10.0, abs=2.0) and hits[0].end == pytest.approx(18.0, abs=2.0)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score > 0.5 > max(h.score for h in hits if h.video != "v3")
    assert lib.search("a man walks", top_k=1)[0].video == "v7"
    assert lib.search("a man walks", top_k=1)[0].start == pytest.approx(20.0, abs=2.0)
    assert len(lib.search("a dog jumps", top_k=10, per_video=1)) == 10
    assert len({h.video for h in lib.search("a dog jumps", top_k=10, per_video=1)}) == 10
    assert sum(h.video == "v3" for h in lib.search("a dog jumps", top_k=10, per_video=2)) == 2


def test_two_stage_search_matches_exhaustive_grounding(lib):
    fill(lib, 16)
    for query in ("a dog jumps", "a man walks", "a door opens"):
        fast = lib.search(query, top_k=5, candidates=4)
        full = lib.search(query, top_k=5, exhaustive=True)
        assert full.candidates == 16 and fast.candidates == 4
        if query != "a door opens":  # a planted event: the coarse stage must keep its video
            assert fast[0] == full[0]


def test_score_ranks_across_videos_where_tfvtg_confidence_cannot(lib):
    lib.add_features("weak", video({"a dog jumps": (30, 54)}, seed=1, strength=1.0))
    lib.add_features("strong", video({"a dog jumps": (30, 54)}, seed=2, strength=3.0))
    lib.add_features("none", video(seed=3))
    hits = lib.search("a dog jumps", top_k=3, per_video=1)
    assert [h.video for h in hits] == ["strong", "weak", "none"]
    # TFVTG's per-video confidence is 1 for every video's best moment: useless across videos
    assert hits[0].confidence == hits[1].confidence == 1.0


def test_query_text_is_embedded_once_per_search(tmp_path):
    enc = HashEncoder()
    library = Library(tmp_path / "lib", encoder=enc)
    fill(library, 8)
    enc.calls = 0
    library.search("a dog jumps", top_k=3, exhaustive=True)
    assert enc.calls == 1


def test_search_reads_only_the_candidates_features(lib, monkeypatch):
    fill(lib, 12)
    opened = []
    real_open = lib._store.open
    monkeypatch.setattr(lib._store, "open", lambda rel: opened.append(rel) or real_open(rel))
    lib.search("a dog jumps", top_k=2, candidates=3)
    assert len(opened) == 3


def test_long_video_is_grounded_on_a_region_with_correct_seconds(tmp_path):
    library = Library(tmp_path / "lib", encoder=HashEncoder(), max_region_frames=120, segment_frames=32)
    library.add_features("long", video({"a dog jumps": (600, 630)}, t=900, seed=5))  # 200-210 s of 300 s
    library.add_features("short", video(seed=6))
    hit = library.search("a dog jumps", top_k=1)[0]
    assert hit.video == "long"
    overlap = min(hit.end, 210.0) - max(hit.start, 200.0)
    assert overlap / (max(hit.end, 210.0) - min(hit.start, 200.0)) > 0.5, hit


def test_ivf_backend_finds_the_same_best_video(tmp_path):
    pytest.importorskip("faiss")
    library = Library(tmp_path / "lib", encoder=HashEncoder(), coarse="ivf", nprobe=64)
    fill(library, 12)
    assert library.search("a dog jumps", top_k=1, candidates=3)[0].video == "v3"


def test_coarse_vectors_bound_the_segment_mean_curve_from_below():
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((50, Q, D)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
    bounds, coarse = pool_segments(tokens, 16)
    assert list(bounds) == list(segment_bounds(50, 16)) == [0, 12, 25, 38, 50]
    assert coarse.shape == (4 * Q, D) and coarse.dtype == np.float16
    for _ in range(5):
        u = rng.standard_normal(D).astype(np.float32)
        u /= np.linalg.norm(u)
        curve = (tokens @ u).max(axis=1)
        dots = (coarse.astype(np.float32) @ u).reshape(4, Q).max(axis=1)
        means = [curve[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:])]
        assert np.all(dots <= np.array(means) + 1e-2)


# ---------------------------------------------------------------- storage

def test_features_come_back_memory_mapped_and_equal(lib):
    original = video({"a dog jumps": (30, 54)}, seed=9)
    lib.add_features("vid42", original, source="/videos/vid42.mp4")
    back = lib.features("vid42")
    assert isinstance(back, VideoFeatures)
    assert back.duration == pytest.approx(30.0) and back.fps == pytest.approx(3.0)
    assert back.source == "/videos/vid42.mp4" and back.encoder == "hash-space"
    np.testing.assert_allclose(back.tokens, original.tokens, atol=2e-3)
    stored = lib._open_tokens(lib.info("vid42"))
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16
    assert lib.search("a dog jumps", top_k=1)[0].source == "/videos/vid42.mp4"


def test_len_contains_videos_remove(lib):
    fill(lib, 4)
    assert len(lib) == 4 and "v1" in lib and "nope" not in lib and 42 not in lib
    assert lib.videos() == ["v0", "v1", "v2", "v3"]
    file = lib.path / lib.info("v3").file
    lib.remove("v3")
    assert len(lib) == 3 and "v3" not in lib and not file.exists()
    assert all(h.video != "v3" for h in lib.search("a dog jumps", top_k=10))
    with pytest.raises(UnknownVideoError, match="no video 'v3'"):
        lib.remove("v3")
    with pytest.raises(KeyError):
        lib.features("v3")
    with pytest.raises(UnknownVideoError):
        lib.cut(Hit("v3", 0.0, 1.0, 0.5), lib.path / "x.mp4")


def test_add_features_is_idempotent_and_refuses_a_different_video_under_a_taken_id(lib):
    f = video(seed=1)
    assert lib.add_features("a", f) == "a"
    assert lib.add_features("a", f) == "a" and len(lib) == 1
    with pytest.raises(LibraryError, match="already has the id"):
        lib.add_features("a", video(t=60, seed=2))
    with pytest.raises(InvalidInputError):
        lib.add_features("a/b", f)
    with pytest.raises(InvalidInputError, match=r"\(T, 4, 64\)"):
        lib.add_features("c", VideoFeatures(np.ones((10, 2, 8), np.float32), duration=3.0))


def test_library_persists_and_a_query_needs_a_known_encoder(tmp_path):
    first = Library(tmp_path / "lib", encoder=HashEncoder())
    fill(first, 4)
    first.close()
    again = Library(tmp_path / "lib")  # the stand-in encoder cannot be loaded by its name
    assert len(again) == 4 and again.space == "hash-space"
    with pytest.raises(LibraryError, match="cannot be loaded|no encoder"):
        again.search("a dog jumps")
    features_only = Library(tmp_path / "bare")
    features_only.add_features("x", video(seed=1))
    with pytest.raises(LibraryError, match=r"no encoder is known.*encoder="):
        features_only.search("a dog jumps")
    assert Library(tmp_path / "lib", encoder=HashEncoder()).search("a dog jumps", top_k=1)[0].video == "v3"


def test_an_encoder_from_another_space_is_refused(lib, tmp_path):
    fill(lib, 2)
    with pytest.raises(EncoderMismatchError, match="hash-space"):
        Library(lib.path, encoder=OtherEncoder())
    with pytest.raises(EncoderMismatchError):
        lib.add_features("z", video(seed=4, space="other-space"))


def test_empty_library_search_returns_no_hits_with_a_note(lib):
    hits = lib.search("anything")
    assert hits == [] and "empty" in hits.note


def test_a_newer_format_is_refused_and_nothing_changes(lib):
    fill(lib, 2)
    lib.close()
    marker = lib.path / "library.json"
    marker.write_text(json.dumps({"format": "tfvtg-library", "version": 99}))

    def snapshot():
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in lib.path.rglob("*") if p.is_file()}

    before = snapshot()
    with pytest.raises(LibraryFormatError, match="newer tfvtg"):
        Library(lib.path, encoder=HashEncoder())
    assert snapshot() == before


def test_a_folder_that_is_not_a_library_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(LibraryError, match="not a tfvtg library"):
        Library(tmp_path / "stuff")
    assert sorted(os.listdir(tmp_path / "stuff")) == ["notes.txt"]


def test_orphans_from_a_killed_writer_are_removed_on_the_next_write(lib):
    fill(lib, 2)
    stray = lib.path / "features" / "ab" / "abcdef.npy"
    stray.parent.mkdir(parents=True, exist_ok=True)
    np.save(stray, np.zeros((2, Q, D), np.float16))
    tmp = stray.parent / ".abcd.npy.x1y2.tmp"
    tmp.write_bytes(b"half")
    again = Library(lib.path, encoder=HashEncoder())
    again.add_features("new", video(seed=11))
    assert not stray.exists() and not tmp.exists()
    assert len(again) == 3


def test_bad_arguments_are_named(lib):
    fill(lib, 2)
    with pytest.raises(InvalidInputError, match="query"):
        lib.search("  ")
    with pytest.raises(InvalidInputError, match="top_k"):
        lib.search("x", top_k=0)
    with pytest.raises(InvalidInputError, match="candidates"):
        lib.search("x", candidates=0)
    with pytest.raises(TypeError):
        Library(lib.path, encoder=object())


def test_two_level_coarse_search_keeps_the_exact_best_videos():
    from tfvtg.library.index import CoarseIndex

    rng = np.random.default_rng(0)
    u = rng.standard_normal(D).astype(np.float32)
    u /= np.linalg.norm(u)
    index = CoarseIndex()
    for v in range(600):
        tokens = rng.standard_normal((96, Q, D)).astype(np.float32)
        if v in (123, 456):
            tokens[40:70, 1] += (3.0 if v == 123 else 2.0) * u  # 30 frames of a match
        tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
        bounds, vectors = pool_segments(tokens, 32)
        index.append(v + 1, f"v{v}", bounds, vectors, Q)
    index.prefilter = 200
    two_level = index.search(u, 5)  # level 1 keeps 200 of 600 videos
    index.prefilter = None  # the default: this size is scanned whole on level 2
    exact = index.search(u, 5)
    assert [c.video for c in two_level[:2]] == [c.video for c in exact[:2]] == ["v123", "v456"]
    assert two_level[0] == exact[0] and 32 <= exact[0].first_frame and exact[0].last_frame <= 96
    assert index.memory_bytes == 4 * D * (600 * 3 * Q + 600 * 2 * Q)


def test_search_memory_grows_with_the_region_grounded_not_the_video(tmp_path):
    import tracemalloc

    def peak_bytes(max_region_frames: int) -> int:
        library = Library(tmp_path / f"lib{max_region_frames}", encoder=HashEncoder(),
                          max_region_frames=max_region_frames)
        library.add_features("long", video({"a dog jumps": (9000, 9030)}, t=12000, seed=8))
        library.search("a dog jumps", top_k=1)  # loads the coarse index
        tracemalloc.start()
        hit = library.search("a dog jumps", top_k=1)[0]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert 2990 <= hit.start <= 3010  # frame 9000 at 3 fps
        return peak

    whole_video_float32 = 12000 * Q * D * 4  # 12.3 MB
    assert peak_bytes(600) < whole_video_float32 / 8
    # stored tokens stay memory-mapped float16: even grounded whole, no float32 copy of the video
    assert peak_bytes(20000) < whole_video_float32 / 4


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_coarse_vectors_are_the_slot_means_of_each_segment(dtype):
    # the compiled pooling against numpy's mean, segment by segment
    rng = np.random.default_rng(3)
    tokens = rng.standard_normal((70, Q, D)).astype(dtype)
    bounds, coarse = pool_segments(tokens, 32)
    assert list(bounds) == [0, 23, 47, 70]
    expected = np.stack([tokens[a:b].astype(np.float64).mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    np.testing.assert_allclose(coarse.astype(np.float64).reshape(expected.shape), expected, atol=2e-3)


def test_segment_token_means_refuses_bounds_outside_the_video():
    from tfvtg.core.similarity import segment_token_means

    tokens = np.ones((10, 2, 4), np.float16)
    np.testing.assert_array_equal(segment_token_means(tokens, np.array([0, 4, 4, 10]))[1], 0.0)  # empty segment
    for bad in ([0, 11], [3, 2], [5]):
        with pytest.raises(InvalidInputError, match="bounds"):
            segment_token_means(tokens, np.array(bad))


def test_a_failed_fsync_is_reported_and_every_descriptor_closed(tmp_path, monkeypatch):
    from tfvtg.library import store

    fds = [os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT) for i in range(3)]
    real = os.fsync

    def fsync(fd):
        if fd == fds[1]:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)
    with pytest.raises(LibraryError, match="could not flush feature files to disk"):
        with store.FeatureStore.flushing() as flush:
            for fd in fds:
                flush.add(fd)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed


def test_a_span_ranked_twice_by_the_vote_is_one_hit():
    # grounding with a decomposition votes candidates together, and the same
    # span can come out at two ranks: a video shows it once among its hits
    from tfvtg import GroundingResult, Moment
    from tfvtg.library.search import hits_from_result

    curve = np.linspace(0.1, 0.9, 30).astype(np.float32)
    features = VideoFeatures(np.ones((30, 1, 4), np.float32), 10.0)
    result = GroundingResult(query="q", duration=10.0, curve=curve, moments=[
        Moment(6.0, 9.0, 1.0), Moment(6.0, 9.0, 0.8), Moment(1.0, 4.0, 0.5), Moment(6.0, 9.0, 0.4)])
    hits = hits_from_result("v", result, features, None, per_video=3)
    assert [(h.start, h.end) for h in hits] == [(6.0, 9.0), (1.0, 4.0)]
    assert hits[0].rank == 0 and hits[0].confidence == 1.0


def test_the_default_coarse_scan_reads_every_vector_until_the_library_is_large(monkeypatch):
    # whole level 2 up to FULL_SCAN_MAX_VECTORS (the recall), level 1 first past it (the scan's cost)
    from tfvtg.library import index as coarse

    rng = np.random.default_rng(1)
    idx = coarse.CoarseIndex()
    for v in range(300):
        tokens = rng.standard_normal((64, Q, D)).astype(np.float32)
        tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
        bounds, vectors = pool_segments(tokens, 32)
        idx.append(v + 1, f"v{v}", bounds, vectors, Q)
    level1_scans = []
    real = idx._coarse.best_per_video
    monkeypatch.setattr(idx._coarse, "best_per_video", lambda text: level1_scans.append(1) or real(text))
    u = rng.standard_normal(D).astype(np.float32)
    u /= np.linalg.norm(u)
    idx.search(u, 5)
    assert level1_scans == []
    monkeypatch.setattr(coarse, "FULL_SCAN_MAX_VECTORS", idx.num_vectors - 1)
    idx.search(u, 5)
    assert level1_scans == [1]


def test_feature_files_are_opened_one_header_at_a_time(tmp_path, monkeypatch):
    # numpy parses .npy headers with ast.literal_eval, which CPython 3.11 does
    # not make thread-safe (SystemError "AST constructor recursion depth
    # mismatch", seen once in this suite when the fine stage opened two
    # candidates at once): the store's opens must not overlap
    import threading
    import time

    from tfvtg import io as tio

    lib = Library(tmp_path / "lib", encoder=HashEncoder())
    fill(lib, 6)
    inside = []
    overlaps = []
    real = tio.np.load

    def slow_load(*args, **kwargs):
        inside.append(1)
        if len(inside) > 1:
            overlaps.append(len(inside))
        time.sleep(0.005)
        try:
            return real(*args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(tio.np, "load", slow_load)
    records = [lib.info(v) for v in lib.videos()]
    threads = [threading.Thread(target=lambda: [lib._store.open(r.file) for r in records]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    hits = lib.search("a dog jumps", top_k=3)  # the search's threads go through the same opens
    assert hits and overlaps == []
