"""Video MLLM backends behind one small interface.

An MLLM is anything with ``answer(frames, prompt) -> str`` where ``frames``
are the numbered RGB frames ((H, W, 3) uint8 arrays) in order and ``fps``
their sampling rate.
"""
from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tfvtg.errors import InvalidInputError

from .errors import MLLMError

__all__ = ["MLLM", "QwenVL", "OpenAIVisionMLLM", "MLLMError"]




class MLLM(Protocol):
    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float = 1.0) -> str:
        ...


class QwenVL:
    """Qwen2-VL / Qwen2.5-VL through transformers; frames go in as one video.

    Args:
        model: hub name or local directory (default "Qwen/Qwen2-VL-7B-Instruct").
        device: "cuda", "mps" or "cpu" (default: best available).
        dtype: "bfloat16", "float16" or "float32" (default bf16 on CUDA, else float32).
        max_new_tokens: answer length limit.
    """

    def __init__(self, model: str = "Qwen/Qwen2-VL-7B-Instruct", device: str | None = None,
                 dtype: str | None = None, max_new_tokens: int = 64):
        self.model_name = str(model)
        self._device = device
        self._dtype = dtype
        self.max_new_tokens = max_new_tokens
        self._loaded: tuple[Any, Any] | None = None
        self._as_images = False

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is not None:
            return self._loaded
        import torch
        from transformers import AutoModelForImageTextToText

        from tfvtg import pick_device

        device = pick_device(self._device)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(
            self._dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
        try:
            processor = self._load_processor()
            model = AutoModelForImageTextToText.from_pretrained(self.model_name, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise MLLMError(
                f"cannot load {self.model_name!r} ({type(exc).__name__}: {exc}). Without network access, "
                f"download it elsewhere (huggingface-cli download {self.model_name} --local-dir DIR) and "
                f"pass QwenVL(model=DIR).") from exc
        self._device = device
        self._loaded = (processor, model.eval().to(device))
        return self._loaded

    def _load_processor(self) -> Any:
        try:
            import torchvision  # noqa: F401  (transformers builds Qwen2-VL's video processor on it)
        except ImportError:
            # Without torchvision the video processor cannot exist: frames go
            # in as a sequence of images through the PIL image processor.
            from transformers import AutoImageProcessor, AutoTokenizer

            self._as_images = True
            return (AutoTokenizer.from_pretrained(self.model_name),
                    AutoImageProcessor.from_pretrained(self.model_name))
        from transformers import AutoProcessor

        self._as_images = False
        return AutoProcessor.from_pretrained(self.model_name)

    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float = 1.0) -> str:
        import torch

        processor, model = self._load()
        video = np.stack([np.asarray(f) for f in frames])
        if self._as_images:
            inputs = self._image_inputs(processor, video, prompt)
        else:
            if len(video) % 2:  # Qwen2-VL groups frames in pairs (temporal patch 2)
                video = np.concatenate([video, video[-1:]], axis=0)
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            inputs = processor(text=[text], videos=[video], return_tensors="pt")
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        tokenizer = processor[0] if self._as_images else processor
        return tokenizer.batch_decode(new, skip_special_tokens=True)[0].strip()

    @staticmethod
    def _image_inputs(processor: Any, video: np.ndarray, prompt: str) -> Any:
        """Qwen's chat format with one image placeholder per frame, each
        expanded to its number of merged patches."""
        tokenizer, image_processor = processor
        images = image_processor(images=list(video), return_tensors="pt")
        merge = getattr(image_processor, "merge_size", 2) ** 2
        pads = "".join("<|vision_start|>" + "<|image_pad|>" * (int(g.prod()) // merge) + "<|vision_end|>"
                       for g in images["image_grid_thw"])
        text = f"<|im_start|>user\n{pads}{prompt}<|im_end|>\n<|im_start|>assistant\n"
        tokens = tokenizer([text], return_tensors="pt")
        tokens["pixel_values"] = images["pixel_values"]
        tokens["image_grid_thw"] = images["image_grid_thw"]
        return tokens


def _jpeg_data_url(frame: np.ndarray, quality: int, max_side: int | None) -> str:
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIVisionMLLM:
    """Any OpenAI-compatible vision chat server (GPT-4o, vLLM serving Qwen2-VL, ...).

    Frames are sent as JPEG data URLs in one user message after the prompt.
    Retries and backoff are the openai client's (``max_retries``); no answer
    within ``timeout`` seconds raises :class:`MLLMError` saying it timed out.
    The key (argument or OPENAI_API_KEY) never appears in errors or logs.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, jpeg_quality: int = 85, max_side: int | None = 768,
                 max_tokens: int = 64):
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not self.base_url:
            raise InvalidInputError("no API key: pass api_key=... or set OPENAI_API_KEY "
                             "(or give base_url=... for a local server that needs none)")
        self._key = key or "not-needed"
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.jpeg_quality, self.max_side, self.max_tokens = jpeg_quality, max_side, max_tokens
        self._client = None

    def __repr__(self) -> str:
        return f"OpenAIVisionMLLM(model={self.model!r}, base_url={self.base_url!r})"

    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float = 1.0) -> str:
        import openai

        if self._client is None:
            self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=self.timeout,
                                         max_retries=self.max_retries)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        content += [{"type": "image_url", "image_url": {"url": _jpeg_data_url(f, self.jpeg_quality, self.max_side)}}
                    for f in frames]
        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], max_tokens=self.max_tokens,
                temperature=0.0)
        except openai.APITimeoutError:
            raise MLLMError(f"the MLLM server at {self.base_url or 'api.openai.com'} timed out "
                            f"(no answer within {self.timeout:g} s)") from None
        except openai.OpenAIError as exc:
            text = f"MLLM request failed: {type(exc).__name__}: {exc}"
            raise MLLMError(text.replace(self._key, "***") if self._key != "not-needed" else text) from None
        return resp.choices[0].message.content or ""
