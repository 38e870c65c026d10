"""A tiny, randomly initialised Qwen2-VL saved to disk, for examples and tests.

It answers nonsense, but loads through the real
``from_pretrained(path)`` code with a real processor and chat template.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_qwen2_vl"]

_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
_WORDS = ("from frame to the a which frames show person opens door every this video has its number painted "
          "in red bottom right corner answer only format x y user assistant system 0 1 2 3 4 5 6 7 8 9 "
          ". , ' ? : \n").split(" ")

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2_vl(directory: str | os.PathLike[str], seed: int = 0) -> str:
    """Save a tiny Qwen2-VL (2 text layers of 32 dims, a 1-layer vision tower
    of 32 dims, 14-pixel patches) with a word-level tokenizer, image and video
    processors and a chat template into ``directory``; returns the path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(_SPECIAL + ["[UNK]"] + [w for w in dict.fromkeys(_WORDS) if w])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="removed")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=_SPECIAL[1:])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]},
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         bos_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    Qwen2VLForConditionalGeneration(config).eval().save_pretrained(d)
    pixels = dict(min_pixels=28 * 28, max_pixels=56 * 56)
    image_processor = Qwen2VLImageProcessorPil(**pixels)
    try:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    except ImportError:
        # no torchvision, so no video processor and no Qwen2VLProcessor: save
        # the parts; numpro.QwenVL then passes frames as images
        tokenizer.chat_template = _CHAT_TEMPLATE
        tokenizer.save_pretrained(d)
        image_processor.save_pretrained(d)
        return str(d)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=_CHAT_TEMPLATE)
    processor.save_pretrained(d)
    return str(d)
