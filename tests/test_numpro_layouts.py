"""numpro layouts (painted numbers, T2SGrid-style grids) and coarse-to-fine
refinement, with scripted vision models that read what they are shown."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpro
from numpro import grid as grid_module
from numpro.testing import ScriptedMLLM, decode_time, encode_time
from tfvtg import Moment
from tfvtg.testing import make_video

NATIVE_FPS = 8.0


def _timed_video(seconds: float, size=(48, 64)) -> numpro.InMemoryVideo:
    """A video whose every frame's colour encodes its time (numpro.testing.encode_time)."""
    n = int(round(seconds * NATIVE_FPS))
    frames = encode_time(np.zeros((n,) + size + (3,), np.uint8), np.arange(n) / NATIVE_FPS)
    return numpro.InMemoryVideo(frames, NATIVE_FPS)


class Reader:
    """A scripted vision model that reads the time of each frame or grid tile
    it is shown and answers the numbers of those inside the event.

    Grid tiles are found through a side channel: the grids numpro builds are
    recorded as tile_frames returns them (their tile boxes and numbers)."""

    def __init__(self, event: tuple[float, float], monkeypatch=None):
        self.event = event
        self.grids: list = []
        self.calls = 0
        if monkeypatch is not None:
            real = grid_module.tile_frames

            def recording(*args, **kwargs):
                out = real(*args, **kwargs)
                self.grids = out
                return out

            monkeypatch.setattr("numpro.grounding.tile_frames", recording)

    def seen(self, images, fps):
        """(painted number, time) of everything shown."""
        if fps is not None:  # frames of a video, numbered 0..n-1 in order
            return [(k, decode_time(img)) for k, img in enumerate(images)]
        out = []
        for grid, img in zip(self.grids, images):
            assert img is grid.image
            for number, (top, left, h, w) in zip(grid.numbers, grid.boxes):
                out.append((number, decode_time(img[top:top + h, left:left + w])))
        return out

    def answer(self, images, prompt, fps=1.0):
        self.calls += 1
        start, end = self.event
        inside = sorted(k for k, t in self.seen(images, fps) if t is not None and start <= t <= end)
        if not inside:
            return "The event is not shown."
        return f"From Frame {inside[0]} to Frame {inside[-1]}"


# ---------------------------------------------------------------- grid tiling

def test_tiles_hold_every_frame_in_order_captioned_with_number_and_time():
    video = _timed_video(30.0, size=(90, 160))
    sampled = video.sample(1.0)
    grids = numpro.tile_frames(sampled.frames, sampled.times, rows=3, cols=4, stride=6)  # T2SGrid's half-grid stride
    assert [g.numbers[0] for g in grids] == [0, 6, 12, 18]
    assert grids[-1].numbers == tuple(range(18, 30))
    cap = numpro.grid_geometry(90, 160).caption_height
    assert cap == 18
    for g in grids:
        assert g.image.shape == (3 * (90 + cap), 4 * 160, 3)
        for number, t, (top, left, h, w) in zip(g.numbers, g.times, g.boxes):
            assert t == sampled.times[number]
            assert decode_time(g.image[top:top + h, left:left + w]) == pytest.approx(sampled.times[number], abs=0.006)
            strip = g.image[top + h:top + h + cap, left:left + w]
            assert (strip.sum(axis=-1) > 600).sum() > 20  # white caption text on the black strip
    # a partial last grid: the missing tiles are black
    grids = numpro.tile_frames(sampled.frames[:14], sampled.times[:14], rows=3, cols=4)
    assert grids[1].numbers == (12, 13) and grids[1].image[90 + cap:, :].max() == 0


def test_captions_show_number_and_time_as_text():
    # the caption of tile 7 at 3.5 s is the text "7 | 3.5s", laid out from its characters
    from numpro.overlay import _char_mask, _line_mask

    frames = np.zeros((8, 60, 80, 3), np.uint8)
    g = numpro.tile_frames(frames, np.arange(8) * 0.5, rows=2, cols=4)[0]
    top, left, h, w = g.boxes[7]
    strip = g.image[top + h:, left:left + w, 0].astype(np.float32) / 255
    mask = _line_mask("7 | 3.5s", int(16 * 0.8))
    assert mask.shape[1] == sum(_char_mask(c, 12).shape[1] for c in "7 | 3.5s")
    ys, xs = np.nonzero(strip > 0.5)
    mys, mxs = np.nonzero(mask > 0.5)
    assert ys.size == mys.size and xs.max() - xs.min() == mxs.max() - mxs.min()  # that exact text


@settings(max_examples=60, deadline=None)
@given(h=st.integers(20, 400), w=st.integers(20, 400), rows=st.integers(1, 5), cols=st.integers(1, 5),
       max_pixels=st.integers(2_000, 600_000), n=st.integers(1, 40))
def test_grids_never_exceed_max_pixels_and_never_crop(h, w, rows, cols, max_pixels, n):
    geo = numpro.grid_geometry(h, w, rows, cols, max_pixels=max_pixels, min_tile=28)
    frames = np.full((n, h, w, 3), 200, np.uint8)
    grids = numpro.tile_frames(frames, np.arange(n, dtype=float), geometry=geo)
    assert sorted({k for g in grids for k in g.numbers}) == list(range(n))  # every frame is shown
    for g in grids:
        assert g.image.shape[0] * g.image.shape[1] == geo.pixels
        if geo.rows * geo.cols > 1 or min(geo.tile_height, geo.tile_width) >= 28:
            assert geo.pixels <= max_pixels
        for top, left, th, tw in g.boxes:
            # the whole frame, scaled (same aspect up to rounding), never cut
            assert abs(tw * h - th * w) <= 0.5 * h + 1e-9 or tw == 1  # tw = round(th * w / h)
            assert g.image[top:top + th, left:left + tw].min() >= 199
    if geo.reduced:
        assert geo.rows * geo.cols < rows * cols
        assert min(geo.tile_height, geo.tile_width) >= min(28, h, w) or (geo.rows, geo.cols) == (1, 1)


def test_too_many_pixels_means_smaller_tiles_then_more_grids():
    big = numpro.grid_geometry(360, 640, rows=3, cols=4, max_pixels=None)
    assert (big.tile_height, big.tile_width, big.shrunk, big.reduced) == (360, 640, False, False)
    shrunk = numpro.grid_geometry(360, 640, rows=3, cols=4, max_pixels=1_003_520)
    assert (shrunk.rows, shrunk.cols) == (3, 4) and shrunk.shrunk and shrunk.pixels <= 1_003_520
    assert shrunk.tile_width / shrunk.tile_height == pytest.approx(640 / 360, abs=0.02)
    fewer = numpro.grid_geometry(360, 640, rows=3, cols=4, max_pixels=60_000, min_tile=56)
    assert fewer.reduced and fewer.rows * fewer.cols < 12 and fewer.pixels <= 60_000
    assert min(fewer.tile_height, fewer.tile_width) >= 56
    assert fewer.stride == fewer.rows * fewer.cols  # no overlap asked: none given
    half = numpro.grid_geometry(360, 640, rows=3, cols=4, stride=6, max_pixels=60_000, min_tile=56)
    assert half.stride == max(1, round(half.rows * half.cols / 2))  # T2SGrid's half-grid overlap kept
    t2s = numpro.grid_geometry(360, 640, rows=3, cols=4, tile_size=336)
    assert (t2s.tile_height, t2s.tile_width) == (189, 336)
    with pytest.raises(ValueError, match="row"):
        numpro.grid_geometry(360, 640, rows=0)


# ---------------------------------------------------------------- both layouts map answers to seconds

@pytest.mark.parametrize("layout", ["frames", "grid"])
def test_answers_map_to_the_shown_frames_times_in_both_layouts(layout, monkeypatch):
    video = _timed_video(40.0)
    reader = Reader((10.2, 17.9), monkeypatch)
    res = numpro.run(video, "a person opens the door", reader, fps=1.0, layout=layout, rows=2, cols=3)
    times = video.sample(1.0).times  # linspace(0, 319, 40) / 8: 0, 1.0, 2.0, ..., 10.25, ...
    inside = np.flatnonzero((times >= 10.2) & (times <= 17.9))
    # the first and last shown frames inside the event
    assert res.moment == Moment(float(times[inside[0]]), float(times[inside[-1]]), 1.0)
    assert 10.2 <= res.moment.start < 11.3 and 16.8 < res.moment.end <= 17.9
    assert res.settings["layout"] == layout and res.settings["n_frames"] == 40
    if layout == "grid":
        assert res.settings["grid"]["images"] == 7 and len(reader.grids) == 7


# ---------------------------------------------------------------- coarse-to-fine

def _boundary_errors(moment, event):
    return abs(moment.start - event[0]), abs(moment.end - event[1])


@pytest.mark.parametrize("layout", ["frames", "grid"])
def test_refining_halves_the_boundary_error_at_1_fps(layout, monkeypatch):
    rng = np.random.default_rng(7)
    video = _timed_video(90.0)
    before, after = [], []
    for _ in range(40):
        start = float(rng.uniform(2, 60))
        event = (start, start + float(rng.uniform(3, 25)))
        reader = Reader(event, monkeypatch)
        res = numpro.run(video, "the event", reader, fps=1.0, layout=layout, refine=True)
        assert reader.calls == 2 and res.coarse is not None and res.settings["refine"]["used"]
        before += _boundary_errors(res.coarse.moment, event)
        after += _boundary_errors(res.moment, event)
        window = res.settings["refine"]["window"]
        assert window[0] <= res.moment.start <= res.moment.end <= window[1]
        assert 1.0 < res.settings["refine"]["fps"] <= 4.0  # 4 fps, or fewer to fit refine_max_frames
    assert np.mean(after) <= 0.5 * np.mean(before)
    assert 0.3 < np.mean(before) < 0.7  # about half a 1 s interval, as expected at 1 fps


def test_refine_settings_and_fallbacks():
    video = _timed_video(60.0)
    event = (20.3, 30.6)
    reader = Reader(event)
    res = numpro.run(video, "x", reader, refine=True, refine_fps=2.0, refine_margin=1.0)
    info = res.settings["refine"]
    assert info["used"] and info["fps"] == 2.0 and info["margin"] == 1.0
    assert info["window"] == pytest.approx([res.coarse.moment.start - 1.0, res.coarse.moment.end + 1.0])
    assert info["n_frames"] == pytest.approx((info["window"][1] - info["window"][0]) * 2, abs=1)
    # the second answer is unusable: the first stands, with the reason
    answers = iter(["From Frame 20 to Frame 30", "I cannot see it."])
    res = numpro.run(video, "x", ScriptedMLLM(lambda f, p, fps: next(answers)), refine=True)
    assert res.moment is not None and res.coarse is None and not res.settings["refine"]["used"]
    assert "first answer stands" in res.settings["refine"]["reason"]

    calls = []

    def times_out_second(frames, prompt, fps):
        calls.append(1)
        if len(calls) > 1:
            raise numpro.MLLMTimeoutError("the MLLM server timed out")
        return "From Frame 20 to Frame 30"

    res = numpro.run(video, "x", ScriptedMLLM(times_out_second), refine=True)
    assert res.moment is not None and "timed out" in res.settings["refine"]["reason"]
    # no first answer: nothing to refine
    res = numpro.run(video, "x", ScriptedMLLM("no idea"), refine=True)
    assert res.moment is None and res.settings["refine"] == {"used": False, "reason": "no first answer to refine"}
    # a window too long for refine_max_frames at a higher rate is not refined
    res = numpro.run(video, "x", ScriptedMLLM("From Frame 0 to Frame 59"), refine=True, refine_max_frames=40)
    assert res.moment is not None and not res.settings["refine"]["used"]
    assert "too long" in res.settings["refine"]["reason"]
    with pytest.raises(ValueError, match="unknown NumPro option"):
        numpro.run(video, "x", reader, refine_rate=2)


def test_refine_on_a_video_file_decodes_the_window_only(tmp_path):
    path = make_video(tmp_path / "v.mp4", n_frames=200, fps=10, size=(64, 48))  # 20 s
    source = numpro.VideoFile(path)
    whole = source.sample(4.0)
    part = source.sample(4.0, 6.0, 9.5)
    keep = (whole.times >= 6.0 - 1e-6) & (whole.times <= 9.5 + 1e-6)
    assert np.array_equal(part.times, whole.times[keep]) and np.array_equal(part.frames, whole.frames[keep])
    mllm = ScriptedMLLM(lambda frames, prompt, fps: "From Frame 5 to Frame 9" if len(frames) == 20 else
                        "From Frame 2 to Frame 6")
    res = numpro.run(path, "a bar", mllm, refine=True)
    assert [len(c[0]) for c in mllm.calls] == [20, len(source.sample(4.0, *res.settings["refine"]["window"]).times)]
    assert res.coarse.moment.start == pytest.approx(whole.times[0] + 5 * 199 / 19 / 10, abs=0.051)
    fine_times = source.sample(4.0, *res.settings["refine"]["window"]).times
    assert res.moment == Moment(float(fine_times[2]), float(fine_times[6]), 1.0)
