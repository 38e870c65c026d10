"""Small stand-ins for examples and tests: a generated video and a tiny,
randomly initialised BLIP-2 saved to disk. They run anywhere, offline, in
seconds; their answers are meaningless, their plumbing is the real one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TfvtgError

__all__ = ["make_video", "build_tiny_blip2"]

_WORDS = ("a person opens the door sits on chair turns light on off walks dog jumps runs man woman "
          "holds cup drinks water eats food looks out window red green blue frame video which show").split()


def make_video(path: str | os.PathLike[str], n_frames: int = 30, fps: int = 10, size: tuple[int, int] = (64, 48),
               codec: str = "mpeg4") -> str:
    """Write a small video (a moving green bar on a changing red tint) with PyAV."""
    import av

    w, h = size
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=fps)
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


def _word_tokenizer(cls: Any, vocab: Path) -> Any:
    """A word-level BERT tokenizer over ``vocab``. transformers 5 takes the
    vocabulary as ``vocab=`` and silently ignores 4.x's ``vocab_file=``
    (every word then becomes [UNK]); try both and keep the one that knows
    the words."""
    words = vocab.read_text().split()
    probe = words[-1]
    for kwargs in ({"vocab": {w: i for i, w in enumerate(words)}}, {"vocab_file": str(vocab)}):
        try:
            tokenizer = cls(do_lower_case=True, **kwargs)
        except TypeError:
            continue
        if tokenizer.convert_tokens_to_ids(probe) == len(words) - 1:
            return tokenizer
    raise TfvtgError("cannot build a word-level BERT tokenizer with this transformers version")


def build_tiny_blip2(directory: str | os.PathLike[str], seed: int = 0) -> str:
    """Save a tiny random ``Blip2ForImageTextRetrieval`` (8 query tokens of
    16 dims, 32x32 images) with a word-level BERT tokenizer and an image
    processor into ``directory``; load it with ``Blip2Encoder(directory)``."""
    import torch
    import transformers
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, BlipImageProcessor

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + list(_WORDS)) + "\n")
    tokenizer = _word_tokenizer(transformers.BertTokenizerFast, vocab)  # type: ignore[attr-defined]
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8,
                           # BLIP-2's vision default (1e-10) would make every frame embed alike
                           initializer_range=0.2),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=len(tokenizer), max_position_embeddings=64,
                            cross_attention_frequency=1, use_qformer_text_input=True),
        num_query_tokens=8,
        image_text_hidden_size=16,
    )
    torch.manual_seed(seed)
    model = Blip2ForImageTextRetrieval(config).eval()
    with torch.no_grad():
        # With the usual 0.02 initialisation every sentence embeds almost
        # identically (cosine > 0.9999) and no test could notice texts being
        # mixed up: large word embeddings and attention weights make the CLS
        # output depend on the words (cosine well below 0.95 between sentences).
        model.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
        for layer in model.qformer.encoder.layer:
            for proj in (layer.attention.attention.query, layer.attention.attention.key,
                         layer.attention.attention.value, layer.attention.output.dense):
                proj.weight.normal_(0.0, 0.3)
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return str(d)
