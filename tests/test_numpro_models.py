"""numpro.QwenVL on tiny random Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints,
built offline and loaded through from_pretrained, end to end."""
from __future__ import annotations

import numpy as np
import pytest

import numpro
from tfvtg.testing import make_video

pytest.importorskip("torch")
pytest.importorskip("transformers")

FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request, tmp_path_factory):
    from numpro import testing

    build = {"qwen2_vl": testing.build_tiny_qwen2_vl, "qwen2_5_vl": testing.build_tiny_qwen2_5_vl,
             "qwen3_vl": testing.build_tiny_qwen3_vl}[request.param]
    return request.param, build(tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "v.mp4", n_frames=40, fps=10, size=(64, 64))


def _frames(seed, n=3, size=(64, 80)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, size + (3,), dtype=np.uint8) for _ in range(n)]


def test_each_family_grounds_end_to_end_and_records_its_settings(tiny, clip):
    kind, path = tiny
    mllm = numpro.QwenVL(path, device="cpu", max_new_tokens=6)
    res = numpro.run(clip, "a person opens the door", mllm, fps=1.0)
    assert res.answer is not None and isinstance(res.answer.raw, str)  # nonsense, but an answer
    assert res.moment is None or 0 <= res.moment.start <= res.moment.end <= 4.0
    assert res.moment is not None or res.error  # no moment always says why
    st = res.settings
    assert st["model"] == path and st["mllm"]["family"] == FAMILIES[kind] == mllm.family
    assert st["mllm"]["input"] == "images"  # no torchvision here: frames go in as images
    assert st["max_pixels"] == mllm.max_pixels > 0 and st["n_frames"] == 4 and st["fps"] == 1.0
    assert st["mllm"]["device"] == "cpu" and st["mllm"]["dtype"] == "float32"
    assert st["prompt"].endswith("'From Frame x to Frame y'.")
    # grid images (still images, no fps) go through the same model
    grid = numpro.run(clip, "a person opens the door", mllm, layout="grid", rows=2, cols=2)
    assert grid.answer is not None
    h, w = grid.settings["grid"]["grid_size"]
    # the tiny models take 56 x 56 pixels at most: tiles shrank, then one tile per image
    assert h * w <= mllm.max_pixels and grid.settings["grid"]["reduced"] and grid.settings["grid"]["images"] == 4


def test_the_model_sees_the_frames(tiny):
    import torch

    kind, path = tiny
    mllm = numpro.QwenVL(path, device="cpu")
    _, model = mllm._load()

    def last_logits(frames):
        inputs = mllm._image_inputs(frames, "which frames show a person", 1.0)
        pads = int((inputs["input_ids"] == mllm._tokenizer().convert_tokens_to_ids("<|image_pad|>")).sum())
        assert pads == int(inputs["image_grid_thw"].prod(dim=1).sum()) // 4  # one token per merged patch
        assert int(inputs["mm_token_type_ids"].sum()) == pads
        with torch.inference_mode():
            return model(**inputs).logits[0, -1]

    a, b = last_logits(_frames(0)), last_logits(_frames(1))
    assert not torch.allclose(a, b)  # different pictures, different answer
    assert torch.allclose(a, last_logits(_frames(0)))  # deterministic


def test_qwen3_frames_carry_text_timestamps_and_max_pixels_is_honoured(tiny):
    kind, path = tiny
    mllm = numpro.QwenVL(path, device="cpu")
    seen = []
    chat_text = mllm._chat_text
    mllm._chat_text = lambda parts: seen.append(parts) or chat_text(parts)  # type: ignore[method-assign]
    mllm._image_inputs(_frames(0, n=3), "q", 2.0)
    texts = [p["text"] for p in seen[0] if p["type"] == "text"]
    if kind == "qwen3_vl":
        assert texts == ["<0.0 seconds>", "<0.5 seconds>", "<1.0 seconds>", "q"]
    else:
        assert texts == ["q"]
    seen.clear()
    mllm._image_inputs(_frames(0, n=2), "q", None)  # still images: no times
    assert [p["text"] for p in seen[0] if p["type"] == "text"] == ["q"]
    small = numpro.QwenVL(path, device="cpu", max_pixels=(2 * mllm._image_processor().patch_size) ** 2)
    assert small.max_pixels < mllm.max_pixels and small.describe()["max_pixels"] == small.max_pixels
    big_inputs = mllm._image_inputs(_frames(0, n=1, size=(256, 256)), "q", None)
    small_inputs = small._image_inputs(_frames(0, n=1, size=(256, 256)), "q", None)
    assert small_inputs["image_grid_thw"].prod() < big_inputs["image_grid_thw"].prod()


def test_missing_qwen_model_says_how_to_point_at_local_weights(tmp_path):
    with pytest.raises(numpro.MLLMConfigurationError, match="QwenVL\\(model=DIR\\)"):
        numpro.QwenVL(str(tmp_path / "nowhere")).answer([np.zeros((8, 8, 3), np.uint8)] * 2, "x")


def test_a_checkpoint_that_is_not_qwen_vl_is_named(tiny_blip2_dir):
    with pytest.raises(numpro.MLLMConfigurationError, match="not Qwen2-VL, Qwen2.5-VL or Qwen3-VL"):
        numpro.QwenVL(tiny_blip2_dir).answer([np.zeros((8, 8, 3), np.uint8)], "x")
