"""``tfvtg extract`` hardening: colliding stems, orphans of a killed run,
too-short videos, --encoder by name or path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tfvtg.cli import main
from tfvtg.testing import make_video

pytest.importorskip("av")


def _sources(out):
    return {json.loads(p.read_text())["source"] for p in out.glob("*.json")}


def test_videos_with_the_same_stem_do_not_overwrite_each_other(tiny_blip2_dir, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_video(tmp_path / "a" / "clip.mp4", n_frames=20, fps=10)
    b = make_video(tmp_path / "b" / "clip.mp4", n_frames=40, fps=10)
    x_avi = make_video(tmp_path / "x.avi", n_frames=30, fps=10)
    x_mp4 = make_video(tmp_path / "x.mp4", n_frames=50, fps=10)
    out = tmp_path / "out"
    argv = ["extract", a, b, x_avi, x_mp4, "--out", str(out), "--encoder", tiny_blip2_dir]
    assert main(argv) == 0
    assert "done 4, skipped 0, failed 0" in capsys.readouterr().out
    npys = sorted(out.glob("*.npy"))
    assert len(npys) == 4
    assert sorted(np.load(p).shape[0] for p in npys) == [6, 9, 12, 15]  # each video's own frames
    assert _sources(out) == {a, b, x_avi, x_mp4}
    assert main(argv) == 0  # a re-run finds every output under the same name
    assert "done 0, skipped 4, failed 0" in capsys.readouterr().out


def test_a_plain_name_taken_by_another_video_is_not_reused(tiny_blip2_dir, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_video(tmp_path / "a" / "clip.mp4", n_frames=20, fps=10)
    b = make_video(tmp_path / "b" / "clip.mp4", n_frames=40, fps=10)
    out = tmp_path / "out"
    assert main(["extract", a, "--out", str(out), "--encoder", tiny_blip2_dir]) == 0
    assert main(["extract", b, "--out", str(out), "--encoder", tiny_blip2_dir]) == 0
    assert "done 1, skipped 0" in capsys.readouterr().out.splitlines()[-1]
    assert _sources(out) == {a, b}


def test_orphan_temporary_files_of_a_killed_run_are_removed(tiny_blip2_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / ".clip.npy.k3j2l1.tmp"
    orphan.write_bytes(b"half an array")
    video = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10)
    assert main(["extract", video, "--out", str(out), "--encoder", tiny_blip2_dir]) == 0
    assert not orphan.exists()
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.npy"]


def test_a_video_too_short_for_two_feature_frames_is_refused(tiny_blip2_dir, tmp_path, capsys):
    short = make_video(tmp_path / "short.mp4", n_frames=2, fps=10)  # 0.2 s: 1 frame at 3 fps
    ok = make_video(tmp_path / "ok.mp4", n_frames=20, fps=10)
    out = tmp_path / "out"
    assert main(["extract", short, ok, "--out", str(out), "--encoder", tiny_blip2_dir]) == 1
    text = capsys.readouterr()
    assert "done 1, skipped 0, failed 1" in text.out
    assert "short.mp4" in text.err and "too short" in text.err and "at least 2" in text.err
    assert not (out / "short.npy").exists() and (out / "ok.npy").exists()


def test_encoder_by_registry_name_and_model_alias(tiny_blip2_dir, tmp_path, capsys):
    from tfvtg import Blip2Encoder, register_encoder

    register_encoder("tiny-test-blip2", lambda **kw: Blip2Encoder(tiny_blip2_dir, space="tiny-space", **kw),
                     space="tiny-space", overwrite=True)
    video = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10)
    assert main(["extract", video, "--out", str(tmp_path / "by-name"), "--encoder", "tiny-test-blip2",
                 "--device", "cpu"]) == 0
    meta = json.loads((tmp_path / "by-name" / "clip.json").read_text())
    assert meta["encoder"] == "tiny-space"
    assert main(["extract", video, "--out", str(tmp_path / "by-path"), "--model", tiny_blip2_dir]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "by-name" / "clip.npy"), np.load(tmp_path / "by-path" / "clip.npy"))
    assert main(["extract", video, "--out", str(tmp_path / "x"), "--encoder", str(tmp_path / "no-model")]) == 2
    assert "no-model" in capsys.readouterr().err
