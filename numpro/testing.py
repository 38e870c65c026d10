"""Tiny, randomly initialised Qwen2-VL, Qwen2.5-VL and Qwen3-VL saved to
disk, and scripted vision models, for examples and tests.

The tiny models answer nonsense, but load through the real
``from_pretrained(path)`` code with a real tokenizer, image processor and
chat template, built offline. The scripted models (:class:`ScriptedMLLM`)
answer from what a test tells them, so the plumbing around a model can be
checked exactly.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_tiny_qwen2_vl", "build_tiny_qwen2_5_vl", "build_tiny_qwen3_vl", "ScriptedMLLM",
           "encode_time", "decode_time"]

_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
_WORDS = ("from frame to the a which frames show person opens door every this video has its number painted "
          "in red bottom right corner answer only format x y user assistant system 0 1 2 3 4 5 6 7 8 9 "
          "candidate grid image images seconds time rate score . , ' ? : \n").split(" ")

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer() -> tuple[Any, dict[str, int]]:  # (tokenizer, special token ids)
    """A word-level tokenizer holding Qwen's special tokens and a few words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_SPECIAL + ["[UNK]"] + [w for w in dict.fromkeys(_WORDS) if w])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="removed")
    tokenizer: Any = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=_SPECIAL[1:])
    return tokenizer, {t: int(tokenizer.convert_tokens_to_ids(t)) for t in _SPECIAL}


def _token_ids(ids: dict[str, int]) -> dict[str, Any]:
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _text_ids(ids: dict[str, int]) -> dict[str, Any]:
    return dict(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])


def _full_processor(processor_class: str, image_processor: Any, tokenizer: Any, size: dict[str, int],
                    patch_size: int) -> Any:
    """The model family's processor with its video processor, or None where
    this transformers cannot build one."""
    try:
        import transformers

        video_class = "Qwen3VLVideoProcessor" if processor_class == "Qwen3VLProcessor" else "Qwen2VLVideoProcessor"
        video_processor = getattr(transformers, video_class)(size=size, patch_size=patch_size)
        return getattr(transformers, processor_class)(image_processor=image_processor, tokenizer=tokenizer,
                                                      video_processor=video_processor, chat_template=_CHAT_TEMPLATE)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def _save(directory: Path, model: Any, tokenizer: Any, patch_size: int, processor_class: str, seed: int) -> str:
    """Save the model, then the tokenizer and processors: the full processor
    where transformers can build it (it needs torchvision for the video
    processor), else the tokenizer with its chat template and the PIL image
    processor, which :class:`numpro.QwenVL` reads as a sequence of images."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model.eval().save_pretrained(directory)
    factor = patch_size * 2  # patch x spatial merge
    size = {"shortest_edge": factor * factor, "longest_edge": 4 * factor * factor}
    image_processor = Qwen2VLImageProcessorPil(size=size, patch_size=patch_size)
    from .mllm import _has_torchvision

    processor = _full_processor(processor_class, image_processor, tokenizer, size, patch_size) \
        if _has_torchvision() else None  # the video processor needs torchvision
    if processor is None:
        tokenizer.chat_template = _CHAT_TEMPLATE
        tokenizer.save_pretrained(directory)
        image_processor.save_pretrained(directory)
        return str(directory)
    processor.save_pretrained(directory)
    return str(directory)


def build_tiny_qwen2_vl(directory: str | os.PathLike[str], seed: int = 0) -> str:
    """Save a tiny Qwen2-VL (2 text layers of 32 dims, a 1-layer vision tower
    of 32 dims, 14-pixel patches) with a word-level tokenizer, image
    processor (56 x 56 pixels at most) and chat template into
    ``directory``; returns the path."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = _tokenizer()
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}, **_text_ids(ids)),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        **_token_ids(ids),
    )
    torch.manual_seed(seed)
    return _save(d, Qwen2VLForConditionalGeneration(config), tokenizer, 14, "Qwen2VLProcessor", seed)


def build_tiny_qwen2_5_vl(directory: str | os.PathLike[str], seed: int = 0) -> str:
    """Save a tiny Qwen2.5-VL (2 text layers of 32 dims; a 2-block window
    attention vision tower of 32 dims, 14-pixel patches, block 1 full
    attention) with the same tokenizer and processors as
    :func:`build_tiny_qwen2_vl`; returns the path."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = _tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 4], "rope_theta": 1e6},
                         **_text_ids(ids)),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, out_hidden_size=32,
                           fullatt_block_indexes=[1], tokens_per_second=2),
        **_token_ids(ids),
    )
    torch.manual_seed(seed)
    return _save(d, Qwen2_5_VLForConditionalGeneration(config), tokenizer, 14, "Qwen2_5_VLProcessor", seed)


def build_tiny_qwen3_vl(directory: str | os.PathLike[str], seed: int = 0) -> str:
    """Save a tiny Qwen3-VL (2 text layers of 32 dims with interleaved
    multimodal rotary positions; a 2-block vision tower of 32 dims, 16-pixel
    patches, deep-stack features from block 0) with the same tokenizer as
    :func:`build_tiny_qwen2_vl` and a 16-pixel-patch image processor;
    returns the path."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = _tokenizer()
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2],
                                          "mrope_interleaved": True, "rope_theta": 5e6},
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]),
        **_token_ids(ids),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return _save(d, model, tokenizer, 16, "Qwen3VLProcessor", seed)


# ---------------------------------------------------------------- scripted models

def encode_time(frames: np.ndarray, seconds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Paint each (H, W, 3) frame one flat colour that encodes its time
    (seconds, in 0.01 s steps up to 655 s: red and green hold the code,
    blue is 77), so a scripted model can tell which moment of the video a
    frame or grid tile it is shown comes from, whatever numbers are painted
    on it or however it is scaled. Returns ``frames`` (changed in place)."""
    code = np.round(np.asarray(seconds, dtype=np.float64) * 100).astype(np.int64)
    frames[..., 0] = (code // 256)[:, None, None]
    frames[..., 1] = (code % 256)[:, None, None]
    frames[..., 2] = 77
    return frames


def decode_time(region: np.ndarray) -> float | None:
    """The time :func:`encode_time` painted on ``region`` (a frame or a
    tile; its median colour, so painted digits do not matter), or None when
    the region is no code (blue far from 77)."""
    pixels = np.asarray(region).reshape(-1, 3)
    if len(pixels) == 0:
        return None
    r, g, b = (int(v) for v in np.median(pixels, axis=0))
    if abs(b - 77) > 2:
        return None
    return (r * 256 + g) / 100.0


class ScriptedMLLM:
    """A vision model whose answer a test writes: ``script(frames, prompt,
    fps)`` returns the reply text (or raises, to play a failing server).
    Every call is kept in ``calls`` as (frames, prompt, fps)."""

    def __init__(self, script: Callable[[Sequence[np.ndarray], str, float | None], str] | str,
                 name: str = "scripted", max_pixels: int | None = None):
        self.script = script
        self.name = name
        self.max_pixels = max_pixels
        self.calls: list[tuple[list[np.ndarray], str, float | None]] = []

    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float | None = 1.0) -> str:
        self.calls.append((list(frames), prompt, fps))
        if isinstance(self.script, str):
            return self.script
        return self.script(frames, prompt, fps)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "backend": "scripted", "max_pixels": self.max_pixels}
