"""Shared test fixtures: tiny randomly initialised models and generated videos.

Nothing here reaches the network: models are built from small configs,
saved to a temporary directory and loaded back through from_pretrained.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("a person opens the door sits on chair turns light on off walks dog jumps runs man woman "
         "holds cup drinks water eats food looks out window red green blue frame video which show").split()


def make_video(path, n_frames: int = 30, fps: int = 10, size=(64, 48), codec: str = "mpeg4") -> str:
    """Write a small video whose frames differ (a moving bar, a changing tint)."""
    import av

    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        container.start_encoding()  # write the header even when no frame follows
        for i in range(n_frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i * 7) % 256
            x = (i * 3) % max(1, w - 6)
            img[:, x:x + 6, 1] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory):
    """A tiny Blip2ForImageTextRetrieval with tokenizer and image processor on disk."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import BertTokenizerFast, Blip2Config, Blip2ForImageTextRetrieval, BlipImageProcessor

    d = tmp_path_factory.mktemp("tiny-blip2")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + list(WORDS)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=len(tokenizer), max_position_embeddings=64,
                            cross_attention_frequency=1, use_qformer_text_input=True),
        num_query_tokens=8,
        image_text_hidden_size=16,
    )
    torch.manual_seed(0)
    model = Blip2ForImageTextRetrieval(config).eval()
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return str(d)


@pytest.fixture()
def video_file(tmp_path):
    return make_video(tmp_path / "clip.mp4")
