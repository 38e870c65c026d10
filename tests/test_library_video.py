"""The library with real video files: a tiny BLIP-2 loaded through
from_pretrained, generated videos, clip export and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tfvtg import Blip2Encoder, Hit, Library
from tfvtg.errors import InvalidInputError, LibraryError, MissingFileError
from tfvtg.testing import make_video

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    paths = [make_video(d / f"v{i}.mp4", n_frames=40 + 20 * i, fps=10) for i in range(3)]
    bad = d / "broken.mp4"
    bad.write_bytes(b"this is no video" * 64)
    return d, paths, bad


class CountingEncoder(Blip2Encoder):
    videos_encoded = 0

    def encode_video(self, *args, **kwargs):
        type(self).videos_encoded += 1
        return super().encode_video(*args, **kwargs)


def test_add_is_idempotent_by_content_and_add_many_skips_broken_files(tiny_blip2_dir, videos, tmp_path):
    d, paths, bad = videos
    enc = CountingEncoder(tiny_blip2_dir, device="cpu")
    lib = Library(tmp_path / "lib", encoder=enc)
    vid = lib.add(paths[0])
    assert vid == "v0" and lib.info("v0").source == str((d / "v0.mp4").resolve())
    assert lib.features("v0").shape == (12, 8, 16) and lib.features("v0").duration == pytest.approx(4.0)
    n = CountingEncoder.videos_encoded
    assert lib.add(paths[0]) == "v0" and CountingEncoder.videos_encoded == n  # not encoded again
    report = lib.add_many([*paths, str(bad), str(d / "missing.mp4")], progress=False)
    assert sorted(report.done) == ["v1", "v2"] and report.skipped == [paths[0]]
    assert {p for p, _ in report.failed} == {str(bad), str(d / "missing.mp4")}
    assert any("VideoDecodeError" in why for _, why in report.failed)
    assert str(report) == "done 2, skipped 1, failed 2"
    assert len(lib) == 3
    hits = lib.search("a dog jumps", top_k=3)
    assert hits and all(h.source and h.source.endswith(".mp4") for h in hits)
    assert all(0 <= h.start < h.end <= lib.info(h.video).duration + 1e-6 for h in hits)
    # a second file with the same stem gets its own id
    other = tmp_path / "other"
    other.mkdir()
    dup = make_video(other / "v0.mp4", n_frames=50, fps=10)
    assert lib.add(dup).startswith("v0-")


def test_a_built_library_reopens_with_its_encoder_by_name(tiny_blip2_dir, videos, tmp_path):
    _, paths, _ = videos
    lib = Library(tmp_path / "lib", encoder=tiny_blip2_dir)
    lib.add(paths[1])
    lib.close()
    again = Library(tmp_path / "lib")
    assert again.encoder_name == tiny_blip2_dir
    assert again.search("a man walks", top_k=1)[0].video == "v1"


def test_cut_stream_copies_on_keyframes_reencodes_otherwise_and_clips_at_edges(tiny_blip2_dir, videos, tmp_path):
    _, paths, _ = videos
    lib = Library(tmp_path / "lib", encoder=Blip2Encoder(tiny_blip2_dir, device="cpu"))
    lib.add(paths[2])  # 8 s at 10 fps, a keyframe every 1.2 s
    copied = lib.cut(Hit("v2", 3.0, 5.0, 0.3), tmp_path / "a.mp4", pad=1.0)
    assert copied.method == "stream-copy" and 1.2 <= copied.start <= 2.0 and copied.end == pytest.approx(6.0)
    again = lib.cut(Hit("v2", 3.0, 5.0, 0.3), tmp_path / "b.mp4", pad=1.0, mode="reencode")
    assert again.method == "re-encode" and (again.start, again.end) == (2.0, 6.0)
    edge = lib.cut(Hit("v2", 7.0, 8.0, 0.3), tmp_path / "c.mp4", pad=2.0, mode="reencode")
    assert edge.end == pytest.approx(8.0)  # clipped to the video's end
    for clip, seconds in ((copied, copied.end - copied.start), (again, 4.0), (edge, 3.0)):
        with av.open(clip.path) as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert frames == pytest.approx(seconds * 10, abs=1.5), clip
    with pytest.raises(InvalidInputError, match="keyframe"):
        lib.cut("v2", tmp_path / "d.mp4", start=3.05, end=4.0, pad=0.0, mode="copy")


def test_cut_needs_a_source_file(tmp_path):
    from tfvtg import VideoFeatures

    lib = Library(tmp_path / "lib")
    lib.add_features("f", VideoFeatures(np.random.default_rng(0).standard_normal((9, 2, 4)), duration=3.0))
    with pytest.raises(LibraryError, match="no source file"):
        lib.cut(Hit("f", 0.0, 1.0, 0.1), tmp_path / "x.mp4")
    lib.add_features("g", VideoFeatures(np.ones((9, 2, 4)), duration=3.0), source=str(tmp_path / "gone.mp4"))
    with pytest.raises(MissingFileError, match="gone"):
        lib.cut(Hit("g", 0.0, 1.0, 0.1), tmp_path / "x.mp4")


# ---------------------------------------------------------------- CLI

def test_cli_index_search_library(tiny_blip2_dir, videos, tmp_path, capsys):
    from tfvtg.cli import main

    d, paths, bad = videos
    lib_dir = str(tmp_path / "lib")
    assert main(["index", str(d), "--library", lib_dir, "--encoder", tiny_blip2_dir, "--device", "cpu"]) == 1
    out = capsys.readouterr()
    assert "done 3, skipped 0, failed 1" in out.out and "broken.mp4" in out.err
    assert main(["index", paths[0], paths[1], "--library", lib_dir, "--model", tiny_blip2_dir]) == 0
    assert "done 0, skipped 2, failed 0" in capsys.readouterr().out

    assert main(["search", lib_dir, "a dog jumps", "--top", "2", "--json", "--cut-dir", str(tmp_path / "clips")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == "a dog jumps" and len(result["hits"]) == 2 and result["note"] is None
    hit = result["hits"][0]
    assert set(hit) >= {"video", "start", "end", "score", "source", "clip"}
    assert hit["clip"]["method"] in ("stream-copy", "re-encode") and (tmp_path / "clips").is_dir()
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 2

    assert main(["search", lib_dir, "a dog jumps", "--top", "1"]) == 0
    assert "score" in capsys.readouterr().out

    assert main(["library", lib_dir, "--json", "--list"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["videos"] == 3 and stats["encoder"] == tiny_blip2_dir
    assert stats["hours"] == pytest.approx((4 + 6 + 8) / 3600)
    assert stats["bytes"] > stats["feature_bytes"] > 0 and len(stats["list"]) == 3
    assert main(["library", lib_dir]) == 0
    text = capsys.readouterr().out
    assert "videos    3" in text and "on disk" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    from tfvtg import VideoFeatures
    from tfvtg.cli import main

    assert main(["search", str(tmp_path / "nowhere"), "x"]) == 2
    assert "no tfvtg library" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    lib = Library(tmp_path / "bare")
    lib.add_features("f", VideoFeatures(np.ones((9, 2, 4)), duration=3.0))
    lib.close()
    assert main(["search", str(tmp_path / "bare"), "x"]) == 2
    err = capsys.readouterr().err
    assert "no encoder is known" in err and "--encoder" in err and "Traceback" not in err
    empty = Library(tmp_path / "empty")
    empty.close()
    assert main(["search", str(tmp_path / "empty"), "x", "--json"]) == 0
    assert "empty" in json.loads(capsys.readouterr().out)["note"]
    for flag in ("--top", "--candidates", "--per-video"):  # the error names the flag the user typed
        assert main(["search", str(tmp_path / "empty"), "x", flag, "0"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"tfvtg search: {flag} must be at least 1, got 0"]


def test_cli_index_accepts_extracted_feature_files(tiny_blip2_dir, videos, tmp_path, capsys):
    from tfvtg.cli import main

    _, paths, _ = videos
    assert main(["extract", paths[0], paths[1], "--out", str(tmp_path / "f"), "--encoder", tiny_blip2_dir]) == 0
    lib_dir = str(tmp_path / "lib")
    assert main(["index", str(tmp_path / "f" / "v0.npy"), str(tmp_path / "f" / "v1.npy"), "--library", lib_dir]) == 0
    assert "done 2" in capsys.readouterr().out
    assert main(["index", str(tmp_path / "f" / "v0.npy"), "--library", lib_dir]) == 0
    assert "skipped 1" in capsys.readouterr().out
    lib = Library(lib_dir, encoder=tiny_blip2_dir)
    assert lib.videos() == ["v0", "v1"] and lib.info("v0").source == paths[0]
    assert lib.search("a dog", top_k=1)


def test_a_new_library_adds_videos_with_the_default_encoder(tiny_blip2_dir, videos, tmp_path, monkeypatch):
    _, paths, _ = videos
    monkeypatch.setenv("TFVTG_BLIP2_MODEL", tiny_blip2_dir)
    lib = Library(tmp_path / "lib")
    assert lib.add(paths[0]) == "v0"
    assert lib.encoder_name == tiny_blip2_dir
    lib.close()
    monkeypatch.delenv("TFVTG_BLIP2_MODEL")
    assert Library(tmp_path / "lib").search("a dog jumps", top_k=1)[0].video == "v0"
