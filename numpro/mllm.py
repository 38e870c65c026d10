"""Video MLLM backends behind one small interface.

An MLLM is anything with ``answer(frames, prompt, fps=1.0) -> str``:
``frames`` are RGB images ((H, W, 3) uint8 arrays) in order; ``fps`` is
their sampling rate when they are a video's frames, or None when they are
still images (grid images, for instance). Optionally it has ``max_pixels``
(the most pixels one image may have before the model shrinks it) and
``describe() -> dict`` (the settings that decide its answers, recorded with
every result).

Backends: :class:`QwenVL` (Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints
through transformers) and :class:`OpenAIVisionMLLM` (any OpenAI-compatible
vision server: vLLM, SGLang, llama.cpp, hosted APIs).
"""
from __future__ import annotations

import base64
import functools
import io
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tfvtg.errors import InvalidInputError, InvalidTypeError

from .errors import MLLMConfigurationError, MLLMError, MLLMTimeoutError, require

__all__ = ["MLLM", "QwenVL", "OpenAIVisionMLLM", "MLLMError", "load_mllm", "backend_class", "describe_mllm", "mllm_max_pixels",
           "QWEN_FAMILIES"]

#: transformers ``model_type`` -> family name recorded with results
QWEN_FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL",
                 "qwen3_vl_moe": "Qwen3-VL"}


class MLLM(Protocol):
    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float | None = 1.0) -> str:
        ...


def describe_mllm(mllm: Any) -> dict[str, Any]:
    """The settings of ``mllm`` that decide its answers (its ``describe()``,
    else its class and model name)."""
    describe = getattr(mllm, "describe", None)
    if callable(describe):
        return dict(describe())
    name = getattr(mllm, "model", None) or getattr(mllm, "model_name", None) or type(mllm).__name__
    return {"model": str(name), "backend": type(mllm).__name__, "max_pixels": mllm_max_pixels(mllm)}


def mllm_max_pixels(mllm: Any) -> int | None:
    """The most pixels one image may have before ``mllm`` shrinks it, or
    None when it does not say."""
    value = getattr(mllm, "max_pixels", None)
    return int(value) if value else None


def backend_class(spec: Any, base_url: str | None = None) -> type[QwenVL] | type[OpenAIVisionMLLM]:
    """The backend :func:`load_mllm` builds for ``spec``."""
    if isinstance(spec, (str, os.PathLike)) and (str(spec).startswith("openai:") or base_url):
        return OpenAIVisionMLLM
    return QwenVL


def load_mllm(spec: Any, base_url: str | None = None, **options: Any) -> Any:
    """An MLLM from a model name or directory (:class:`QwenVL`;
    :class:`OpenAIVisionMLLM` when ``base_url`` is given or the name starts
    with "openai:"), or the object itself when it already has ``answer``.
    ``options`` go to the backend's constructor."""
    if callable(getattr(spec, "answer", None)):
        return spec
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise InvalidTypeError(
            f"mllm must be a model name or directory, or an object with answer(frames, prompt, fps); got {spec!r}")
    import inspect

    cls = backend_class(spec, base_url)
    accepted = set(inspect.signature(cls).parameters) - {"model", "base_url"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InvalidInputError(f"{cls.__name__} takes no option(s) {', '.join(unknown)}; it takes "
                                f"{', '.join(sorted(accepted))}")
    name = str(spec)
    if cls is OpenAIVisionMLLM:
        return OpenAIVisionMLLM(name[len("openai:"):] if name.startswith("openai:") else name, base_url=base_url,
                                **options)
    return QwenVL(name, **options)


@functools.lru_cache(maxsize=1)
def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401  (transformers builds Qwen's video processors on it)
    except ImportError:
        return False
    return True


class QwenVL:
    """Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints through transformers.

    Frames go in as one video through the checkpoint's video processor
    (with the sampling rate, which Qwen2.5-VL turns into absolute-time
    positions and Qwen3-VL into text timestamps) when transformers can build
    it, which needs torchvision; otherwise, and for still images (``fps``
    None), as a sequence of images through the image processor. In that
    image path Qwen3-VL checkpoints get each frame's time as text before it
    ("<1.0 seconds>"), as its video processor writes them
    (``text_timestamps``).

    Args:
        model: hub name or local directory (default "Qwen/Qwen2-VL-7B-Instruct").
        device: "cuda", "mps" or "cpu" (default: :func:`tfvtg.pick_device`).
        dtype: "bfloat16", "float16" or "float32" (default bf16 on CUDA, else float32).
        max_new_tokens: answer length limit (tokens).
        max_pixels: most pixels per image (and per video frame) before the
            processor shrinks it (default: the checkpoint's own setting).
        min_pixels: fewest pixels per image.
        text_timestamps: write frame times as text in the image path
            (default: for Qwen3-VL checkpoints only).
    """

    def __init__(self, model: str = "Qwen/Qwen2-VL-7B-Instruct", device: str | None = None,
                 dtype: str | None = None, max_new_tokens: int = 64, max_pixels: int | None = None,
                 min_pixels: int | None = None, text_timestamps: bool | None = None):
        if dtype not in (None, "bfloat16", "float16", "float32"):
            raise InvalidInputError(f"dtype must be 'bfloat16', 'float16' or 'float32', got {dtype!r}")
        self.model_name = str(model)
        self._device_request = device
        self._device: str | None = None
        self._dtype = dtype
        self.max_new_tokens = int(max_new_tokens)
        self._max_pixels = max_pixels
        self._min_pixels = min_pixels
        self._text_timestamps = text_timestamps
        self._processor: Any = None
        self._model: Any = None
        self._family: str | None = None
        self._as_images = True

    def __repr__(self) -> str:
        return f"QwenVL(model={self.model_name!r})"

    # ------------------------------------------------------------ loading

    def _load_error(self, exc: BaseException) -> MLLMConfigurationError:
        return MLLMConfigurationError(
            f"cannot load {self.model_name!r} ({type(exc).__name__}: {exc}). Without network access, "
            f"download it elsewhere (huggingface-cli download {self.model_name} --local-dir DIR) and "
            f"pass QwenVL(model=DIR).")

    def _load_processor(self) -> Any:
        """The processor: ``(tokenizer, image_processor)`` for the image path,
        or transformers' full processor when its video processor can be built."""
        if self._processor is not None:
            return self._processor
        transformers = require("transformers")
        try:
            config = transformers.AutoConfig.from_pretrained(self.model_name)
        except (OSError, ValueError) as exc:
            raise self._load_error(exc) from None
        model_type = getattr(config, "model_type", "")
        if model_type not in QWEN_FAMILIES:
            raise MLLMConfigurationError(
                f"{self.model_name!r} is a {model_type or 'unknown'} checkpoint, not Qwen2-VL, Qwen2.5-VL or "
                f"Qwen3-VL ({', '.join(sorted(QWEN_FAMILIES))}); serve other models behind an OpenAI-compatible "
                "server and use OpenAIVisionMLLM")
        self._family = model_type
        sizes = {}
        if self._max_pixels:
            sizes["longest_edge"] = int(self._max_pixels)
        if self._min_pixels:
            sizes["shortest_edge"] = int(self._min_pixels)
        try:
            processor: Any = None
            if _has_torchvision():
                try:
                    processor = transformers.AutoProcessor.from_pretrained(self.model_name)
                    if getattr(processor, "video_processor", None) is None:
                        processor = None
                except (OSError, ValueError, ImportError):
                    processor = None  # a checkpoint saved without a video processor
            if processor is None:
                # no video processor: frames go in as a sequence of images
                processor = (transformers.AutoTokenizer.from_pretrained(self.model_name),
                             transformers.AutoImageProcessor.from_pretrained(self.model_name))
                self._as_images = True
                image_processors = [processor[1]]
            else:
                self._as_images = False
                image_processors = [processor.image_processor, processor.video_processor]
        except (OSError, ValueError) as exc:
            raise self._load_error(exc) from None
        for part in image_processors:
            if sizes:
                part.size = {**dict(part.size), **sizes}
        self._processor = processor
        return processor

    def _image_processor(self) -> Any:
        processor = self._load_processor()
        return processor[1] if isinstance(processor, tuple) else processor.image_processor

    def _tokenizer(self) -> Any:
        processor = self._load_processor()
        return processor[0] if isinstance(processor, tuple) else processor.tokenizer

    def _load(self) -> tuple[Any, Any]:
        processor = self._load_processor()
        if self._model is not None:
            return processor, self._model
        import torch
        from transformers import AutoModelForImageTextToText

        from tfvtg import pick_device

        device = self._device or pick_device(self._device_request)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[
            self._dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")]
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.model_name, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise self._load_error(exc) from None
        self._device = str(device)
        self._model = model.eval().to(device)
        return processor, self._model

    # ------------------------------------------------------------ settings

    @property
    def family(self) -> str:
        """"Qwen2-VL", "Qwen2.5-VL" or "Qwen3-VL" (reads the checkpoint's config)."""
        self._load_processor()
        return QWEN_FAMILIES[self._family or ""]

    @property
    def max_pixels(self) -> int | None:
        """Most pixels of one image before the processor shrinks it."""
        size = getattr(self._image_processor(), "size", None) or {}
        value = dict(size).get("longest_edge") or getattr(self._image_processor(), "max_pixels", None)
        return int(value) if value else None

    @property
    def text_timestamps(self) -> bool:
        if self._text_timestamps is not None:
            return bool(self._text_timestamps)
        self._load_processor()
        return bool(self._family and self._family.startswith("qwen3"))

    def describe(self) -> dict[str, Any]:
        """The settings that decide this model's answers."""
        image_processor = self._image_processor()
        size = dict(getattr(image_processor, "size", None) or {})
        if self._device is None:  # not loaded yet: the device it will load on
            from tfvtg import pick_device

            self._device = str(pick_device(self._device_request))
        return {"model": self.model_name, "backend": "transformers", "family": self.family,
                "input": "images" if self._as_images else "video", "max_pixels": self.max_pixels,
                "min_pixels": size.get("shortest_edge"), "text_timestamps": self.text_timestamps,
                "dtype": self._dtype or ("bfloat16" if str(self._device or "").startswith("cuda") else "float32"),
                "device": self._device, "max_new_tokens": self.max_new_tokens, "do_sample": False}

    # ------------------------------------------------------------ asking

    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float | None = 1.0) -> str:
        import torch

        processor, model = self._load()
        images = [np.ascontiguousarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        if not images:
            raise InvalidInputError("the MLLM needs at least one frame")
        if self._as_images or fps is None:
            inputs = self._image_inputs(images, prompt, fps)
        else:
            inputs = self._video_inputs(np.stack(images), prompt, float(fps))
        inputs = inputs.to(model.device)
        try:
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            raise MLLMError(f"{self.model_name} ran out of GPU memory on {len(images)} images; lower fps or "
                            f"max_pixels ({exc})") from None
        new = out[:, inputs["input_ids"].shape[1]:]
        return str(self._tokenizer().batch_decode(new, skip_special_tokens=True)[0]).strip()

    def _chat_text(self, parts: list[dict[str, Any]]) -> str:
        """The user turn in the checkpoint's own chat template (Qwen's
        im_start format when it has none)."""
        tokenizer = self._tokenizer()
        messages = [{"role": "user", "content": parts}]
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        body = "".join("<|vision_start|><|image_pad|><|vision_end|>" if p["type"] == "image" else
                       "<|vision_start|><|video_pad|><|vision_end|>" if p["type"] == "video" else p["text"]
                       for p in parts)
        return f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"

    def _image_inputs(self, images: list[np.ndarray], prompt: str, fps: float | None) -> Any:
        """Qwen's chat format with one image placeholder per frame, each
        expanded to its number of merged patches; Qwen3-VL frames of a video
        are preceded by their time in text, as its video processor writes it."""
        import torch

        tokenizer, image_processor = self._tokenizer(), self._image_processor()
        pixels = image_processor(images=images, return_tensors="pt")
        parts: list[dict[str, Any]] = []
        for k in range(len(images)):
            if fps and self.text_timestamps:
                parts.append({"type": "text", "text": f"<{k / fps:.1f} seconds>"})
            parts.append({"type": "image"})
        parts.append({"type": "text", "text": prompt})
        text = self._chat_text(parts)
        merge = int(getattr(image_processor, "merge_size", 2)) ** 2
        pieces = text.split("<|image_pad|>")
        if len(pieces) != len(images) + 1:
            raise MLLMConfigurationError(
                f"the chat template of {self.model_name} wrote {len(pieces) - 1} image placeholders for "
                f"{len(images)} images")
        counts = [int(g.prod()) // merge for g in pixels["image_grid_thw"]]
        text = pieces[0] + "".join("<|image_pad|>" * n + rest for n, rest in zip(counts, pieces[1:]))
        tokens = tokenizer([text], return_tensors="pt")
        image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        tokens["pixel_values"] = pixels["pixel_values"]
        tokens["image_grid_thw"] = pixels["image_grid_thw"]
        # which tokens are image tokens, for the models' 3-D rotary positions
        tokens["mm_token_type_ids"] = (tokens["input_ids"] == image_id).to(torch.int32)
        return tokens

    def _video_inputs(self, video: np.ndarray, prompt: str, fps: float) -> Any:
        """One video through the checkpoint's processor, frames already
        sampled at ``fps`` (so the processor samples none itself)."""
        processor = self._processor
        if len(video) % 2:  # Qwen groups frames in pairs (temporal patch 2)
            video = np.concatenate([video, video[-1:]], axis=0)
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}],
            tokenize=False, add_generation_prompt=True)
        n = len(video)
        metadata = {"fps": fps, "total_num_frames": n, "frames_indices": list(range(n)), "duration": n / fps}
        return processor(text=[text], videos=[video], video_metadata=[metadata], do_sample_frames=False,
                         return_tensors="pt", return_mm_token_type_ids=True)


# ---------------------------------------------------------------- OpenAI-compatible servers

def _jpeg_data_url(frame: np.ndarray, quality: int, max_side: int | None, max_pixels: int | None) -> str:
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    if max_pixels and img.size[0] * img.size[1] > max_pixels:
        scale = (max_pixels / (img.size[0] * img.size[1])) ** 0.5
        img = img.resize((max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIVisionMLLM:
    """Any OpenAI-compatible vision chat server (GPT-4o, vLLM or SGLang
    serving Qwen2.5-VL, llama.cpp, ...).

    Frames are sent as JPEG data URLs in one user message after the prompt
    (still images and video frames alike; each frame is shrunk to
    ``max_side`` pixels on its longer side and ``max_pixels`` in all).
    Retries and backoff are the openai client's (``max_retries``). No answer
    within ``timeout`` seconds raises :class:`MLLMTimeoutError`; a refused
    key or unknown model (HTTP 401/403/404) raises
    :class:`MLLMConfigurationError`, which stops a batch. The key (argument
    or OPENAI_API_KEY) never appears in errors or logs.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, jpeg_quality: int = 85, max_side: int | None = 768,
                 max_tokens: int = 64, max_pixels: int | None = None):
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not self.base_url:
            raise InvalidInputError("no API key: pass api_key=... or set OPENAI_API_KEY "
                                    "(or give base_url=... for a local server that needs none)")
        self._key = key or "not-needed"
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.jpeg_quality, self.max_side, self.max_tokens = jpeg_quality, max_side, max_tokens
        if max_pixels is None and max_side:
            max_pixels = max_side * max_side
        self.max_pixels = max_pixels
        self._client: Any = None

    def __repr__(self) -> str:
        return f"OpenAIVisionMLLM(model={self.model!r}, base_url={self.base_url!r})"

    def describe(self) -> dict[str, Any]:
        """The settings that decide this model's answers (never the key)."""
        return {"model": self.model, "backend": "openai", "base_url": self.base_url or "https://api.openai.com/v1",
                "max_pixels": self.max_pixels, "max_side": self.max_side, "jpeg_quality": self.jpeg_quality,
                "max_tokens": self.max_tokens, "temperature": 0.0}

    def _hide_key(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key != "not-needed" else text

    def answer(self, frames: Sequence[np.ndarray], prompt: str, fps: float | None = 1.0) -> str:
        openai = require("openai")
        if self._client is None:
            self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=self.timeout,
                                         max_retries=self.max_retries)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        content += [{"type": "image_url",
                     "image_url": {"url": _jpeg_data_url(f, self.jpeg_quality, self.max_side, self.max_pixels)}}
                    for f in frames]
        where = self.base_url or "api.openai.com"
        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], max_tokens=self.max_tokens,
                temperature=0.0)
        except openai.APITimeoutError:
            raise MLLMTimeoutError(f"the MLLM server at {where} timed out "
                                   f"(no answer within {self.timeout:g} s)") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise MLLMConfigurationError(self._hide_key(
                f"the MLLM server at {where} refused the request ({type(exc).__name__}, HTTP "
                f"{getattr(exc, 'status_code', '?')}): check the key and the model name {self.model!r}")) from None
        except openai.OpenAIError as exc:
            raise MLLMError(self._hide_key(f"MLLM request failed: {type(exc).__name__}: {exc}")) from None
        try:
            return resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise MLLMError(f"the MLLM server at {where} sent a reply without a message") from None
