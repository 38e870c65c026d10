"""numpro: overlay, parser, prompt, API backend on a local server, tiny Qwen2-VL."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from chat_server import ChatServer, Reply

import numpro
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


# ---------------------------------------------------------------- parser: tests/test_numpro_parse.py

# ---------------------------------------------------------------- prompt

def test_prompt_template():
    text = numpro.DEFAULT_PROMPT.render("A person opens the door.")
    assert "red" in text and "bottom right" in text and "a person opens the door" in text
    assert "From Frame x to Frame y" in text
    custom = numpro.PromptTemplate(instruction="Numbers are {color}.", question="When does {query} happen?")
    assert custom.render("x", color="blue") == "Numbers are blue. When does x happen?"


# ---------------------------------------------------------------- API backend

def _images(request):
    return [part["image_url"]["url"] for part in request["messages"][0]["content"] if part["type"] == "image_url"]


def test_openai_backend_sends_every_numbered_frame_and_maps_answer(tmp_path):
    from PIL import Image

    video = make_video(tmp_path / "v.mp4", n_frames=80, fps=10, size=(160, 96))  # 8 s -> 8 frames at 1 fps
    with ChatServer(lambda req, n: Reply("The answer: From Frame 2 to Frame 5.")) as server:
        mllm = numpro.OpenAIVisionMLLM("served-qwen", base_url=server.url, api_key="sk-test-SECRET-9")
        moment = numpro.ground(video, "a green bar moves", mllm=mllm, fps=1.0)
    assert moment == Moment(2.0, 5.0, 1.0)
    req = server.requests[0]
    text = req["messages"][0]["content"][0]["text"]
    assert "a green bar moves" in text and "frame number" in text
    urls = _images(req)
    assert len(urls) == 8
    for i, url in enumerate(urls):
        assert url.startswith("data:image/jpeg;base64,")
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
        corner = img[img.shape[0] // 2:, img.shape[1] // 2:]
        assert len(_ink(corner, (255, 0, 0))) > 5, i  # a red number in the bottom-right corner
    assert server.headers[0]["authorization"] == "Bearer sk-test-SECRET-9"


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
        with pytest.raises(numpro.MLLMError, match="timed out") as info:
            numpro.ground(video, "x", mllm=mllm)
    assert "SECRET" not in str(info.value)


def test_numpro_cli_and_contact_sheet(tmp_path, capsys, monkeypatch):
    from numpro.cli import main

    video = make_video(tmp_path / "v.mp4", n_frames=50, fps=10)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-9")
    with ChatServer(lambda req, n: Reply("from frame 1 to frame 3")) as server:
        code = main([video, "a bar", "--base-url", server.url, "--model", "m", "--json",
                     "--sheet", str(tmp_path / "sheet.png")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["moment"] == {"start": 1.0, "end": 3.0, "score": 1.0}
    assert (tmp_path / "sheet.png").stat().st_size > 5_000


# ---------------------------------------------------------------- tiny Qwen2-VL

@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from numpro.testing import build_tiny_qwen2_vl

    try:
        return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen"))
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"tiny Qwen2-VL cannot be built here: {exc}")


def test_tiny_qwen2_vl_through_from_pretrained(tiny_qwen_dir, tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=40, fps=10, size=(64, 64))
    mllm = numpro.QwenVL(tiny_qwen_dir, device="cpu", max_new_tokens=4)
    results = numpro.ground_many([(video, "a person opens the door")], mllm=mllm, progress=False)
    (res,) = results
    assert res.answer is not None and isinstance(res.answer.raw, str)  # nonsense, but an answer
    assert res.moment is None or 0 <= res.moment.start <= res.moment.end <= 4.0
    assert mllm._loaded is not None


def test_missing_qwen_model_says_how_to_point_at_local_weights(tmp_path):
    with pytest.raises(numpro.MLLMError, match="QwenVL\\(model=DIR\\)"):
        numpro.QwenVL(str(tmp_path / "nowhere")).answer([np.zeros((8, 8, 3), np.uint8)] * 2, "x")
