"""The Ray engine on a local Ray (2 CPUs): it stores exactly what the local
engine stores, reports bad videos, and the driver alone writes."""
from __future__ import annotations

import numpy as np
import pytest

from tfvtg import Blip2Encoder, Library
from tfvtg.testing import make_video

ray = pytest.importorskip("ray")
pytest.importorskip("av")


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_engine_stores_exactly_the_local_engines_features(tiny_blip2_dir, tmp_path, local_ray):
    paths = [make_video(tmp_path / f"v{i}.mp4", n_frames=30 + 15 * i, fps=10) for i in range(3)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video here" * 50)
    inputs = [*paths, str(bad)]

    local = Library(tmp_path / "local", encoder=Blip2Encoder(tiny_blip2_dir, device="cpu"))
    on_ray = Library(tmp_path / "ray", encoder=Blip2Encoder(tiny_blip2_dir, device="cpu"))
    report_local = local.add_many(inputs, engine="local", progress=False)
    report_ray = on_ray.add_many(inputs, engine="ray", progress=False)

    assert sorted(report_ray.done) == sorted(report_local.done) == ["v0", "v1", "v2"]
    assert [p for p, _ in report_ray.failed] == [str(bad)] and "VideoDecodeError" in report_ray.failed[0][1]
    for vid in local.videos():
        a, b = local.info(vid), on_ray.info(vid)
        assert (a.frames, a.duration, a.fps, a.encoder, a.source) == (b.frames, b.duration, b.fps, b.encoder, b.source)
        stored_local = np.asarray(local._open_tokens(a))
        stored_ray = np.asarray(on_ray._open_tokens(b))
        assert stored_local.dtype == stored_ray.dtype == np.float16
        np.testing.assert_array_equal(stored_ray, stored_local)
    assert local.stats()["coarse_index_bytes"] == on_ray.stats()["coarse_index_bytes"]
    assert [h.video for h in on_ray.search("a dog jumps", top_k=3)] == [h.video for h in local.search("a dog jumps", top_k=3)]
    # a re-run on Ray skips what is there
    again = on_ray.add_many(paths, engine="ray", progress=False)
    assert again.done == [] and len(again.skipped) == 3


def test_cli_index_and_extract_with_ray(tiny_blip2_dir, tmp_path, local_ray, capsys):
    from tfvtg.cli import main

    paths = [make_video(tmp_path / f"w{i}.mp4", n_frames=30, fps=10) for i in range(2)]
    assert main(["index", *paths, "--library", str(tmp_path / "lib"), "--encoder", tiny_blip2_dir, "--ray", "--actors", "1"]) == 0
    assert "done 2, skipped 0, failed 0" in capsys.readouterr().out
    assert main(["extract", *paths, "--out", str(tmp_path / "f"), "--encoder", tiny_blip2_dir, "--ray", "--actors", "1"]) == 0
    assert "done 2, skipped 0, failed 0" in capsys.readouterr().out
    assert np.load(tmp_path / "f" / "w0.npy").shape == (9, 8, 16)
