"""numpro: overlay, prompt, API backend on a local server, time mapping, tiny Qwen2-VL.

(The answer parser's own tests are in test_numpro_parse.py.)"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from chat_server import ChatServer, Reply

import numpro
from numpro.testing import ScriptedMLLM
from tfvtg import Moment
from tfvtg.testing import make_video

SIZES = [(160, 90), (320, 180), (640, 360), (1280, 720), (1920, 1080), (3840, 2160)]


# ---------------------------------------------------------------- overlay

def _ink(frame: np.ndarray, rgb) -> np.ndarray:
    diff = np.abs(frame.astype(int) - np.array(rgb)).sum(axis=-1)
    return np.argwhere(diff < 60)


@pytest.mark.parametrize("w,h", SIZES)
@pytest.mark.parametrize("position", ["bottom_right", "bottom_left", "top_right", "top_left", "center"])
def test_digits_land_where_asked_in_the_colour_asked(w, h, position):
    frames = np.zeros((2, h, w, 3), np.uint8)
    for color, rgb in (("red", (255, 0, 0)), ((0, 200, 255), (0, 200, 255))):
        out = numpro.number_frames(frames, font_size=0.12, color=color, position=position, start=7)
        ys, xs = np.argwhere(out[1].sum(axis=-1) > 0).T  # on black, every painted pixel is ink
        assert len(ys) > 10, (w, h, position)
        brightest = out[1][ys, xs][np.argmax(out[1][ys, xs].sum(axis=-1))]
        assert np.abs(brightest.astype(int) - rgb).max() <= 40  # in the colour asked
        cy, cx = ys.mean() / h, xs.mean() / w
        if "bottom" in position:
            assert cy > 0.6
        if "top" in position:
            assert cy < 0.4
        if "right" in position:
            assert cx > 0.6
        if "left" in position:
            assert cx < 0.4
        if position == "center":
            assert 0.3 < cy < 0.7 and 0.3 < cx < 0.7
        assert ys.max() - ys.min() <= 0.2 * h  # about the size asked
    assert frames.max() == 0  # input untouched


def test_default_is_the_papers_setting_and_kinds_round_trip():
    from PIL import Image

    frame = np.full((360, 640, 3), 40, np.uint8)
    out = numpro.number_frames([frame, frame])  # list of arrays in, list out
    assert isinstance(out, list) and len(out) == 2
    ys, xs = _ink(out[1], (255, 0, 0)).T
    assert ys.min() > 360 - 60 and xs.min() > 640 - 40  # bottom right, 40 px font
    assert 20 <= ys.max() - ys.min() <= 40
    pil = numpro.number_frames([Image.fromarray(frame)])
    assert isinstance(pil[0], Image.Image)
    arr = np.zeros((3, 50, 80, 3), np.uint8)
    assert numpro.number_frames(arr, inplace=True) is arr and arr.max() > 0
    with pytest.raises(ValueError, match="position"):
        numpro.number_frames(arr, position="middle")
    with pytest.raises(ValueError, match="colour"):
        numpro.number_frames(arr, color="not-a-colour")


def test_contact_sheet_and_write_video(tmp_path):
    frames = numpro.number_frames(np.zeros((10, 90, 160, 3), np.uint8))
    sheet = numpro.contact_sheet(frames, columns=4)
    assert sheet.size[0] > 4 * 100 and sheet.size[1] > 3 * 50
    path = numpro.write_video(frames, tmp_path / "n.mp4", fps=1)
    from tfvtg.video.decode import read_frames

    back = read_frames(path, fps=1.0)
    assert back.frames.shape[0] == 10 and back.frames.shape[1:3] == (90, 160)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp" or p.name.startswith("tmp")]


# ---------------------------------------------------------------- prompt

def test_prompt_template():
    text = numpro.DEFAULT_PROMPT.render("A person opens the door.")
    assert "red" in text and "bottom right" in text and "a person opens the door" in text
    assert "From Frame x to Frame y" in text
    assert numpro.DEFAULT_PROMPT.label == "numpro-1"
    custom = numpro.PromptTemplate(instruction="Numbers are {color}.", question="When does {query} happen?")
    assert custom.render("x", color="blue") == "Numbers are blue. When does x happen?"
    assert custom.label.startswith("custom-") and custom.label != numpro.PromptTemplate(question="{query}?").label
    grid = numpro.DEFAULT_PROMPT.render("x", layout="grid", grids=[(0, 11, 0.0, 11.0), (12, 15, 12.0, 15.5)])
    assert "Image 1: frames 0 to 11 (0.0s to 11.0s)." in grid and "Image 2: frames 12 to 15 (12.0s to 15.5s)." in grid
    with pytest.raises(ValueError, match="layout"):
        numpro.DEFAULT_PROMPT.render("x", layout="mosaic")


# ---------------------------------------------------------------- time mapping

def test_frame_numbers_map_to_the_time_each_sampled_frame_was_decoded_at(tmp_path):
    # 80 frames at 10 fps sampled at 1 fps: indices linspace(0, 79, 8) rounded,
    # so frame k is at 0, 1.1, 2.3, 3.4, 4.5, 5.6, 6.8, 7.9 s (not k / fps)
    video = make_video(tmp_path / "v.mp4", n_frames=80, fps=10, size=(64, 48))
    frames, times, duration = numpro.sample_frames(video, 1.0)
    assert len(frames) == 8 and duration == 8.0
    assert np.allclose(times, [0, 1.1, 2.3, 3.4, 4.5, 5.6, 6.8, 7.9])
    mllm = ScriptedMLLM("From Frame 2 to Frame 5")
    assert numpro.ground(video, "x", mllm=mllm) == Moment(2.3, 5.6, 1.0)
    mllm.script = "frame 7"  # one frame spans one sample interval, clipped to the video
    assert numpro.ground(video, "x", mllm=mllm) == Moment(7.9, 8.0, 1.0)
    # an array is frames already sampled at fps: frame k at k / fps
    assert numpro.ground(np.zeros((6, 32, 32, 3), np.uint8), "x", mllm=ScriptedMLLM("from 1 to 4"), fps=2.0) == \
        Moment(0.5, 2.0, 1.0)


# ---------------------------------------------------------------- API backend

def _images(request):
    return [part["image_url"]["url"] for part in request["messages"][0]["content"] if part["type"] == "image_url"]


def _decode(url):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_openai_backend_sends_every_numbered_frame_and_maps_answer(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=80, fps=10, size=(160, 96))  # 8 s -> 8 frames at 1 fps
    with ChatServer(lambda req, n: Reply("The answer: From Frame 2 to Frame 5.")) as server:
        mllm = numpro.OpenAIVisionMLLM("served-qwen", base_url=server.url, api_key="sk-test-SECRET-9")
        res = numpro.run(video, "a green bar moves", mllm, fps=1.0)
    assert res.moment == Moment(2.3, 5.6, 1.0)
    req = server.requests[0]
    text = req["messages"][0]["content"][0]["text"]
    assert "a green bar moves" in text and "frame number" in text
    urls = _images(req)
    assert len(urls) == 8
    for i, url in enumerate(urls):
        assert url.startswith("data:image/jpeg;base64,")
        img = _decode(url)
        corner = img[img.shape[0] // 2:, img.shape[1] // 2:]
        assert len(_ink(corner, (255, 0, 0))) > 5, i  # a red number in the bottom-right corner
    assert server.headers[0]["authorization"] == "Bearer sk-test-SECRET-9"
    # the settings that decided the answer, never the key
    st = res.settings
    assert st["model"] == "served-qwen" and st["mllm"]["backend"] == "openai"
    assert st["mllm"]["base_url"] == server.url and st["max_pixels"] == 768 * 768
    assert st["prompt"] == text and st["prompt_version"] == "numpro-1"
    assert (st["fps"], st["n_frames"], st["layout"]) == (1.0, 8, "frames")
    assert st["font"]["size"] == 40 and st["font"]["color"] == "red" and st["font"]["position"] == "bottom_right"
    assert "SECRET" not in json.dumps(res.to_dict())


def test_openai_backend_grid_layout_respects_max_pixels(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=300, fps=10, size=(320, 180))  # 30 frames at 1 fps
    with ChatServer(lambda req, n: Reply("From Frame 12 to Frame 20")) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, max_pixels=400 * 300, max_side=None)
        res = numpro.run(video, "a bar", mllm, layout="grid", rows=3, cols=4)
    urls = _images(server.requests[0])
    assert len(urls) == res.settings["grid"]["images"] == 3  # 30 frames in grids of 12
    for url in urls:
        h, w = _decode(url).shape[:2]
        assert h * w <= 400 * 300  # tiles shrank to fit: the server never had to
    assert res.settings["grid"]["shrunk"] and res.settings["max_pixels"] == 400 * 300
    assert res.moment is not None and abs(res.moment.start - res.timestamps[12]) < 1e-9
    assert "Image 3: frames 24 to 29" in server.requests[0]["messages"][0]["content"][0]["text"]


def test_openai_backend_no_answer_timeout_and_batch(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=30, fps=10)
    with ChatServer(lambda req, n: Reply("I am not sure what you mean.")) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, api_key="sk-test-SECRET-9")
        with pytest.raises(numpro.NoAnswerError) as info:
            numpro.ground(video, "x", mllm=mllm)
        assert info.value.answer.raw == "I am not sure what you mean."
        results = numpro.ground_many([(video, "x"), (str(tmp_path / "missing.mp4"), "y")], mllm=mllm,
                                     progress=False)
    assert [r.moment for r in results] == [None, None]
    assert "MissingFileError" in results[1].error and results[0].answer.raw.startswith("I am")
    with ChatServer(lambda req, n: Reply("From Frame 1 to Frame 2", delay=3)) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, api_key="sk-test-SECRET-9", timeout=0.5,
                                       max_retries=0)
        with pytest.raises(numpro.MLLMTimeoutError, match="timed out") as info:
            numpro.ground(video, "x", mllm=mllm)
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, numpro.MLLMError)
        # run() and batches fall back: no answer, the reason kept
        res = numpro.run(video, "x", mllm)
        assert res.moment is None and "timed out" in res.error
    assert "SECRET" not in str(info.value) and "SECRET" not in res.error


def test_openai_backend_server_errors_fall_back_and_a_refused_key_stops_the_batch(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=30, fps=10)

    def flaky(req, n):
        return Reply(body={"error": {"message": "overloaded"}}, status=500) if n == 0 else Reply("frames 0-1")

    with ChatServer(flaky) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, max_retries=0)
        results = numpro.ground_many([(video, "x"), (video, "y")], mllm=mllm, progress=False)
    assert results[0].moment is None and "InternalServerError" in results[0].error
    assert results[1].moment is not None  # the batch went on
    refused = Reply(body={"error": {"message": "bad key sk-test-SECRET-9"}}, status=401)
    with ChatServer(lambda req, n: refused) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, api_key="sk-test-SECRET-9", max_retries=0)
        with pytest.raises(numpro.MLLMConfigurationError, match="check the key") as info:
            numpro.ground_many([(video, "x"), (video, "y")], mllm=mllm, progress=False)
        assert len(server.requests) == 1  # stopped at once instead of failing every query
    assert "SECRET" not in str(info.value)


def test_numpro_cli_prints_the_settings_and_saves_a_contact_sheet(tmp_path, capsys, monkeypatch):
    from numpro.cli import main

    video = make_video(tmp_path / "v.mp4", n_frames=50, fps=10)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-9")
    with ChatServer(lambda req, n: Reply("from frame 1 to frame 3")) as server:
        code = main([video, "a bar", "--base-url", server.url, "--model", "m", "--json",
                     "--sheet", str(tmp_path / "sheet.png")])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert out["moment"] == {"start": 1.2, "end": 3.7, "score": 1.0}
        assert out["settings"]["model"] == "m" and out["settings"]["n_frames"] == 5
        assert (tmp_path / "sheet.png").stat().st_size > 5_000
        code = main([video, "a bar", "--base-url", server.url, "--model", "m", "--layout", "grid", "--rows", "2",
                     "--cols", "2", "--refine", "--max-pixels", "90000"])
        text = capsys.readouterr().out
    assert code == 0
    for line in ("model:          m (openai)", "prompt version: numpro-1", "fps:            1.0",
                 "max pixels:     90000", "layout:         grid (2 x 2 tiles", "refine:         "):
        assert line in text, line
    assert "SECRET" not in text
    with ChatServer(lambda req, n: Reply("Frame 0: 1\nFrame 1: 4")) as server:
        code = main([video, "a bar", "--base-url", server.url, "--model", "m", "--highlights"])
    lines = capsys.readouterr().out.splitlines()
    # 5 s: three 2 s clips; at 0.5 fps two frames, at 0 s and 4.9 s; clip 1 has none and takes the nearest's
    assert code == 0 and lines[0] == "1 4 4" and lines[1] == "best clip: 1 (2-4 s)"
    assert "prompt version: numpro-highlights-1" in lines
    code = main([str(tmp_path / "missing.mp4"), "a bar", "--base-url", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("numpro: ") and err.count("\n") == 1 and "Traceback" not in err
