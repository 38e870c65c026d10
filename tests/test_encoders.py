"""Encoders: the registry, refusing the wrong checkpoint, failing fast offline,
and a tiny test model that tells sentences apart."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tfvtg
from tfvtg.errors import IncompatibleModelError, InvalidInputError, ModelUnavailableError

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_registry_lists_the_papers_encoder_and_takes_new_ones():
    assert "blip2-coco" in tfvtg.list_encoders()

    class Fake:
        name, space, mask_threshold = "fake", "fake-space", 0.1

        def __init__(self, scale=1.0):
            self.scale = scale

        def encode_text(self, texts):
            return np.ones((len(texts), 4)) * self.scale

    tfvtg.register_encoder("fake-encoder", Fake, space="fake-space", mask_threshold=0.1)
    try:
        enc = tfvtg.load_encoder("fake-encoder", scale=2.0)
        assert isinstance(enc, Fake) and enc.scale == 2.0
        assert "fake-encoder" in tfvtg.list_encoders()
        with pytest.raises(InvalidInputError, match="registered already"):
            tfvtg.register_encoder("fake-encoder", Fake)
    finally:
        from tfvtg.encoders import _REGISTRY

        _REGISTRY.pop("fake-encoder", None)


def test_a_local_blip2_directory_loads_through_the_registry_entry_point(tiny_blip2_dir):
    enc = tfvtg.load_encoder(tiny_blip2_dir)
    assert isinstance(enc, tfvtg.Blip2Encoder) and enc.name == tiny_blip2_dir
    assert enc.space.startswith("blip2:") and enc.mask_threshold == 0.2
    assert tfvtg.Blip2Encoder("x/blip2-itm-vit-g-coco").space == "blip2-coco"


def test_tiny_blip2_tells_sentences_apart(tiny_blip2_dir):
    enc = tfvtg.Blip2Encoder(tiny_blip2_dir)
    texts = ["a person opens the door", "a dog jumps", "man drinks water", "woman eats food"]
    emb = enc.encode_text(texts)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cosine = emb @ emb.T
    off_diagonal = cosine[~np.eye(len(texts), dtype=bool)]
    assert off_diagonal.max() < 0.95, cosine


def test_features_from_a_video_carry_the_encoder_space(tiny_blip2_dir, video_file, tmp_path):
    enc = tfvtg.Blip2Encoder(tiny_blip2_dir)
    feats = enc.encode_video(video_file)
    assert feats.encoder == enc.space
    back = tfvtg.VideoFeatures.load(feats.save(tmp_path / "f.npy"))
    assert back.encoder == enc.space


def _without_itc_heads(src: str, dst) -> str:
    """A copy of the tiny checkpoint lacking the contrastive projections, as a
    generation checkpoint (e.g. blip2-opt-2.7b) would."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items()
               if not k.startswith(("text_projection", "vision_projection"))}
    save_file(tensors, weights, metadata={"format": "pt"})
    return str(dst)


def test_a_checkpoint_without_the_itc_heads_is_refused(tiny_blip2_dir, tmp_path):
    broken = _without_itc_heads(tiny_blip2_dir, tmp_path / "gen")
    with pytest.raises(IncompatibleModelError, match="text_projection and vision_projection.*blip2-itm-vit-g-coco"):
        tfvtg.Blip2Encoder(broken).encode_text(["a dog"])


def test_a_directory_of_another_model_type_is_refused_clearly(tmp_path):
    other = tmp_path / "qwen"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(IncompatibleModelError, match="qwen2_vl"):
        tfvtg.load_encoder(other)
    with pytest.raises(IncompatibleModelError, match="qwen2_vl"):
        tfvtg.Blip2Encoder(str(other)).encode_text(["a dog"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="config.json"):
        tfvtg.Blip2Encoder(str(empty)).encode_text(["a dog"])


def test_an_unreachable_hub_fails_at_once_without_download_retries(monkeypatch):
    import tfvtg.encoders.blip2 as blip2

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(blip2, "hub_unreachable_reason", lambda: "https://hub.invalid unreachable: ConnectError")
    attempts = []
    monkeypatch.setattr(blip2.Blip2Encoder, "_from_pretrained", lambda self, *a, **k: attempts.append(k))
    with pytest.raises(ModelUnavailableError, match=r"unreachable.*hf download"):
        blip2.Blip2Encoder("Salesforce/blip2-itm-vit-g-coco").encode_text(["x"])
    assert attempts == []  # neither the cache (empty) nor the network was tried


def test_offline_mode_counts_as_unreachable(monkeypatch):
    from tfvtg.encoders.base import hub_unreachable_reason

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE" in hub_unreachable_reason()


def test_tiny_blip2_tells_frames_apart(tiny_blip2_dir):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    tokens = tfvtg.Blip2Encoder(tiny_blip2_dir).encode_frames(frames).reshape(4, -1)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    cosine = tokens @ tokens.T
    assert cosine[~np.eye(4, dtype=bool)].max() < 0.95, cosine


def test_int8_quantization_keeps_the_similarity_curves(tiny_blip2_dir):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    frames[4:] //= 3
    texts = ["a person opens the door", "a dog jumps", "man drinks water"]
    curves = {}
    for mode in (None, "int8"):
        enc = tfvtg.Blip2Encoder(tiny_blip2_dir, device="cpu", quantize=mode)
        feats = tfvtg.VideoFeatures(enc.encode_frames(frames), duration=8 / 3)
        curves[mode] = tfvtg.similarity_curves(feats, enc.encode_text(texts))
    assert curves[None].std() > 0.05  # the frames differ, or the comparison would say nothing
    for a, b in zip(curves[None], curves["int8"]):
        assert np.corrcoef(a, b)[0, 1] > 0.95
    with pytest.raises(InvalidInputError, match="CPU"):
        tfvtg.Blip2Encoder(tiny_blip2_dir, device="cuda", quantize="int8")
    with pytest.raises(InvalidInputError, match="quantize"):
        tfvtg.Blip2Encoder(tiny_blip2_dir, quantize="int4")


def test_a_long_encoding_is_announced_with_its_estimate_and_the_ways_to_go_faster(tiny_blip2_dir, video_file,
                                                                                monkeypatch):
    import tfvtg.encoders.blip2 as blip2

    monkeypatch.setattr(blip2, "LONG_ENCODING_S", 0.0)
    enc = tfvtg.Blip2Encoder(tiny_blip2_dir, device="cpu")
    with pytest.warns(RuntimeWarning, match=r"will take about .*GPU.*quantize='int8'.*fps=1") as record:
        feats = enc.encode_video(video_file, progress=False)
    assert feats.num_frames == 9  # 30 frames at 10 fps sampled at 3 fps
    assert record[0].filename == __file__  # points at the caller, not at the library


def test_cli_quantize_flag_reaches_the_encoder(tiny_blip2_dir, video_file, capsys):
    from tfvtg.cli import main

    assert main(["ground", video_file, "a person opens the door", "--encoder", tiny_blip2_dir,
                 "--quantize", "int8", "--no-llm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["moments"] and all(0 <= m["start"] <= m["end"] <= out["duration"] for m in out["moments"])
