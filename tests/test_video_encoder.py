"""Video decoding, the BLIP-2 encoder, the feature cache and `tfvtg extract`."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import make_video

from tfvtg import VideoFeatures
from tfvtg.video.decode import VideoDecodeError, probe, read_frames, sample_frame_indices

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------- sampling

def test_sample_indices_follow_the_reference_rule():
    # 300 frames at 30 fps = 10 s -> 30 samples spread over 0..299
    idx = sample_frame_indices(300, 30.0, fps=3.0)
    assert len(idx) == 30 and idx[0] == 0 and idx[-1] == 299
    assert np.array_equal(idx, np.linspace(0, 299, 30).round().astype(int))
    # round(duration * fps) with Python's rounding: 25 frames at 10 fps = 2.5 s -> 7.5 -> 8
    assert len(sample_frame_indices(25, 10.0, 3.0)) == 8
    # shorter than one sample interval still gives one frame
    assert sample_frame_indices(2, 30.0, 3.0).tolist() == [0]
    assert sample_frame_indices(0, 30.0).size == 0
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(10, 0.0)


def test_decord_and_pyav_give_the_same_frames(tmp_path):
    pytest.importorskip("decord")
    path = make_video(tmp_path / "v.mp4", n_frames=40, fps=10)
    a = read_frames(path, fps=3.0, backend="decord")
    b = read_frames(path, fps=3.0, backend="pyav")
    assert a.info.num_frames == b.info.num_frames == 40
    assert a.info.avg_fps == b.info.avg_fps == 10.0
    assert np.array_equal(a.indices, b.indices)
    assert a.frames.shape == b.frames.shape == (12, 48, 64, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)


def test_auto_backend_falls_back_to_pyav(tmp_path, monkeypatch):
    import tfvtg.video.decode as video

    monkeypatch.setattr(video, "_has_decord", lambda: False)
    path = make_video(tmp_path / "v.mp4", n_frames=20, fps=10)
    assert probe(path).backend == "pyav"
    assert read_frames(path, fps=1.0).frames.shape[0] == 2


def test_bad_video_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_frames(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        read_frames(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    for backend in ("auto", "pyav"):
        with pytest.raises(VideoDecodeError):
            read_frames(junk, backend=backend)


def test_zero_frame_video(tmp_path):
    path = make_video(tmp_path / "zero.mp4", n_frames=0)
    for backend in ("auto", "pyav"):
        with pytest.raises(VideoDecodeError):
            read_frames(path, backend=backend)


def test_video_shorter_than_one_sample_interval(tmp_path):
    path = make_video(tmp_path / "short.mp4", n_frames=2, fps=30)  # 0.07 s
    assert read_frames(path, fps=3.0).frames.shape[0] == 1


# ---------------------------------------------------------------- encoder

@pytest.fixture(scope="module")
def encoder(tiny_blip2_dir):
    from tfvtg import Blip2Encoder

    return Blip2Encoder(tiny_blip2_dir, device="cpu", batch_size=4)


def test_encoder_shapes_and_dtypes(encoder, video_file):
    text = encoder.encode_text(["a person opens the door", "a dog jumps"])
    assert text.shape == (2, 16) and text.dtype == np.float32
    frames = read_frames(video_file).frames
    feats = encoder.encode_frames(frames)
    assert feats.shape == (len(frames), 8, 16) and feats.dtype == np.float32
    vf = encoder.encode_video(video_file)
    assert isinstance(vf, VideoFeatures) and vf.shape == (len(frames), 8, 16)
    kept = encoder.encode_video(video_file, on_device=True)  # a torch tensor on the encoder's device
    assert kept.on_torch and kept.shape == vf.shape
    np.testing.assert_allclose(kept.tokens.numpy(), vf.tokens, atol=2e-3)  # vf went through float16
    assert vf.duration == pytest.approx(3.0)  # 30 frames at 10 fps
    assert encoder._loaded is not None  # loaded once, reused


def test_out_of_memory_halves_the_batch(tiny_blip2_dir, video_file, monkeypatch):
    from tfvtg import Blip2Encoder

    enc = Blip2Encoder(tiny_blip2_dir, device="cpu", batch_size=8)
    frames = read_frames(video_file).frames
    want = enc.encode_frames(frames)
    original = enc._encode_pixels

    def picky(pixels, keep_on_device=False):
        if len(pixels) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(pixels, keep_on_device)

    monkeypatch.setattr(enc, "_encode_pixels", picky)
    got = enc.encode_frames(frames)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert enc.batch_size == 2


def test_cosine_scores_equal_the_models_itc_scores(encoder, tiny_blip2_dir, video_file):
    from transformers import AutoTokenizer, Blip2ForImageTextRetrieval, BlipImageProcessor

    frames = read_frames(video_file).frames[:3]
    texts = ["a person opens the door", "a dog jumps on the chair"]
    model = Blip2ForImageTextRetrieval.from_pretrained(tiny_blip2_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_blip2_dir)
    pix = BlipImageProcessor.from_pretrained(tiny_blip2_dir)(images=list(frames), return_tensors="pt")
    itc = []
    for text in texts:
        t = tok([text] * len(frames), return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(input_ids=t.input_ids, attention_mask=t.attention_mask,
                        pixel_values=pix["pixel_values"], use_image_text_matching_head=False)
        itc.append(np.diag(out.logits_per_image.numpy()))
    itc = np.stack(itc, axis=1)  # (frames, texts)
    img = encoder.encode_frames(frames)
    txt = encoder.encode_text(texts)
    img /= np.linalg.norm(img, axis=-1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=-1, keepdims=True)
    ours = np.einsum("tqd,nd->tqn", img, txt).max(axis=1)
    np.testing.assert_allclose(ours, itc, atol=1e-5)


def test_missing_model_says_how_to_point_at_local_weights(tmp_path):
    from tfvtg import Blip2Encoder, ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="not found.*local copy"):
        Blip2Encoder(str(tmp_path / "nowhere")).encode_text(["x"])
    with pytest.raises(ModelUnavailableError, match="Blip2Encoder\\(model="):
        Blip2Encoder("no-such-org/no-such-model").encode_text(["x"])


def test_ground_a_video_file_end_to_end_with_cache(encoder, tmp_path, monkeypatch):
    import tfvtg.encoders.blip2 as enc_mod
    from tfvtg import ground

    monkeypatch.setenv("TFVTG_CACHE_DIR", str(tmp_path / "cache"))
    path = make_video(tmp_path / "clip.mp4", n_frames=60, fps=10)
    calls = []
    original = enc_mod.Blip2Encoder.encode_video

    def counting(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(enc_mod.Blip2Encoder, "encode_video", counting)
    res = ground(path, "a person opens the door", text_encoder=encoder)
    assert res.moments and 0 <= res.best.start <= res.best.end <= 6.0 + 1e-6
    ground(path, "a dog jumps", text_encoder=encoder)
    assert len(calls) == 1  # second query: cache hit
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1
    # a changed file is extracted again
    make_video(path, n_frames=50, fps=10)
    os.utime(path, ns=(1, 1))
    ground(path, "a dog jumps", text_encoder=encoder)
    assert len(calls) == 2


# ---------------------------------------------------------------- files

def test_save_and_load_round_trip(tmp_path):
    arr = np.random.default_rng(0).standard_normal((12, 4, 8)).astype(np.float32)
    vf = VideoFeatures(arr, duration=4.0)
    path = vf.save(tmp_path / "v.npy")
    assert np.load(path).dtype == np.float16 and np.load(path).shape == (12, 4, 8)
    back = VideoFeatures.load(path)
    assert back.duration == 4.0 and back.shape == vf.shape
    np.testing.assert_allclose(back.tokens, vf.tokens, atol=2e-3)
    # a bare TFVTG .npy: 3 fps assumed unless a duration is given
    np.save(tmp_path / "bare.npy", arr.astype(np.float16))
    assert VideoFeatures.load(tmp_path / "bare.npy").duration == pytest.approx(4.0)
    assert VideoFeatures.load(tmp_path / "bare.npy", duration=6.0).duration == 6.0
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError):
        VideoFeatures.load(tmp_path / "nope.npy")


def test_atomic_write_leaves_no_half_file(tmp_path):
    from tfvtg.io import atomic_write

    target = tmp_path / "out.npy"

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_extract_cli(tiny_blip2_dir, tmp_path, capsys):
    from tfvtg.cli import main

    good = make_video(tmp_path / "a.mp4", n_frames=20, fps=10)
    good2 = make_video(tmp_path / "b.mp4", n_frames=10, fps=10)
    bad = tmp_path / "c.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "feats"
    argv = ["extract", good, good2, str(bad), "--out", str(out), "--model", tiny_blip2_dir, "--device", "cpu"]
    assert main(argv) == 1  # one failure -> non-zero exit, the rest done
    text = capsys.readouterr()
    assert "done 2, skipped 0, failed 1" in text.out and "c.mp4" in text.err
    assert np.load(out / "a.npy").shape == (6, 8, 16) and np.load(out / "a.npy").dtype == np.float16
    meta = json.loads((out / "a.json").read_text())
    assert meta["duration"] == pytest.approx(2.0) and meta["fps"] == 3.0
    assert main(argv[:3] + argv[4:]) == 0  # re-run: both skipped
    assert "done 0, skipped 2, failed 0" in capsys.readouterr().out
    assert VideoFeatures.load(out / "a.npy").duration == pytest.approx(2.0)


def test_ground_cli_on_extracted_features(tiny_blip2_dir, tmp_path, capsys):
    from tfvtg.cli import main

    video = make_video(tmp_path / "a.mp4", n_frames=60, fps=10)
    assert main(["extract", video, "--out", str(tmp_path / "f"), "--model", tiny_blip2_dir]) == 0
    capsys.readouterr()
    assert main(["ground", str(tmp_path / "f" / "a.npy"), "a dog jumps", "--model", tiny_blip2_dir, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == "a dog jumps" and out["duration"] == pytest.approx(6.0) and out["moments"]
    assert main(["ground", str(tmp_path / "missing.mp4"), "x", "--model", tiny_blip2_dir]) == 2
    assert "not found" in capsys.readouterr().err


def test_evaluate_from_video_files(tiny_blip2_dir, tmp_path, monkeypatch):
    from tfvtg import Blip2Encoder, evaluate

    monkeypatch.setenv("TFVTG_CACHE_DIR", str(tmp_path / "cache"))
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "v1.mp4", n_frames=60, fps=10)
    make_video(videos / "v2.mp4", n_frames=40, fps=10)
    ann = {"v1": {"duration": 6.0, "timestamps": [[1, 3], [2, 5]], "sentences": ["a dog jumps", "a man walks"]},
           "v2": {"duration": 4.0, "timestamps": [[0, 2]], "sentences": ["the door opens"]}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    m = evaluate("charades", tmp_path / "ann.json", videos=videos,
                 text_encoder=Blip2Encoder(tiny_blip2_dir, device="cpu"), out=tmp_path / "r.jsonl", progress=False)
    assert m["n"] == 3 and "failed" not in m
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 2  # each video encoded once
