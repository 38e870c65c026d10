"""Stage 1: BLIP-2 Q-Former features through transformers.

``Blip2Encoder`` wraps ``Blip2ForImageTextRetrieval`` (the checkpoint
``Salesforce/blip2-itm-vit-g-coco`` is LAVIS' ``blip2_image_text_matching``
"coco" model) and computes exactly what its image-text-contrastive head
compares: the 32 query tokens of a frame through ``vision_projection``
((T, 32, 256) per video) and a sentence's CLS token through
``text_projection`` ((n, 256)). Cosine similarity of the two, maximised over
the query tokens, is the model's ITC score.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require
from ..core._warnings import warn_user
from ..core.features import VideoFeatures
from ..errors import IncompatibleModelError, InvalidInputError, ModelUnavailableError
from .base import hub_unreachable_reason, pick_device

__all__ = ["Blip2Encoder", "DEFAULT_MODEL", "BLIP2_COCO_SPACE"]

DEFAULT_MODEL = "Salesforce/blip2-itm-vit-g-coco"
# the embedding space of the paper's checkpoint (and of any local copy of it)
BLIP2_COCO_SPACE = "blip2-coco"




# an encoding estimated to take longer than this (seconds) is announced with
# its estimate and the ways to go faster
LONG_ENCODING_S = 30.0


def _duration_words(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# weights that only the image-text retrieval checkpoint trains
_ITC_HEADS = frozenset({"text_projection", "vision_projection"})


def _quantize_int8(model: Any, device: str) -> Any:
    """Dynamic int8 quantization of the vision tower's and the Q-Former's
    linear layers (weights int8, activations quantized on the fly); the
    small contrastive projections stay float32."""
    if not device.startswith("cpu"):
        raise InvalidInputError(f"quantize='int8' runs on the CPU only, but the encoder is on {device}")
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its eager quantization API deprecated, still supported
        for part in ("vision_model", "qformer"):
            quantized = torch.ao.quantization.quantize_dynamic(getattr(model, part), {torch.nn.Linear},
                                                               dtype=torch.qint8)
            setattr(model, part, quantized)
    return model


def _in_hub_cache(repo_id: str) -> bool:
    """True when the hub cache holds this repository's config.json."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return False


def _check_local_checkpoint(directory: Path) -> None:
    """Refuse, before loading anything, a directory that holds another model type."""
    import json

    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelUnavailableError(
            f"{directory} has no config.json: pass the directory of a local copy of {DEFAULT_MODEL} "
            "(config.json, weights, tokenizer and preprocessor files)") from None
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read {directory / 'config.json'}: {exc}") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in ("blip-2", "blip_2"):
        raise IncompatibleModelError(
            f"{directory} holds a {model_type!r} model, not BLIP-2: pass a local copy of {DEFAULT_MODEL}")


def _offline_help(model: str, why_detail: str) -> ModelUnavailableError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or \
        os.environ.get("TRANSFORMERS_OFFLINE") in ("1", "true", "True")
    why = "HF_HUB_OFFLINE is set" if offline else "the model hub could not be reached or has no such model"
    return ModelUnavailableError(
        f"cannot load BLIP-2 model {model!r}: {why} ({why_detail}). "
        f"Download it on a machine with network access (e.g. `hf download {DEFAULT_MODEL} "
        f"--local-dir /path/blip2`), copy it here and pass Blip2Encoder(model='/path/blip2') "
        f"or set TFVTG_BLIP2_MODEL=/path/blip2."
    )


def _space_of(model_name: str) -> str:
    """The paper's checkpoint, by hub name or as a local copy named like it,
    is "blip2-coco"; any other checkpoint is its own space."""
    if model_name == DEFAULT_MODEL or Path(model_name).name == DEFAULT_MODEL.split("/")[1]:
        return BLIP2_COCO_SPACE
    return f"blip2:{Path(model_name).name or model_name}"


class Blip2Encoder:
    """BLIP-2 frame and text encoder.

    Args:
        model: hub name or local directory of a ``Blip2ForImageTextRetrieval``
            checkpoint with its tokenizer and image processor (default: the
            environment variable TFVTG_BLIP2_MODEL, else
            "Salesforce/blip2-itm-vit-g-coco").
        device: "cuda", "mps", "cpu" or a torch device string; default: the
            first available of cuda, mps, cpu.
        dtype: autocast dtype for the vision transformer on a GPU
            ("float16" or "bfloat16"; default float16 on CUDA, as LAVIS).
            On the CPU everything runs in float32.
        batch_size: frames per forward pass (default 64 on a GPU, 16 on CPU);
            halved automatically whenever the GPU runs out of memory.
        space: the embedding-space id recorded in the features (default
            "blip2-coco" for the paper's checkpoint or a copy named like it,
            else "blip2:<directory or repository name>").
        quantize: "int8" applies dynamic int8 quantization to the linear
            layers on the CPU (several times faster on a CPU; the similarity
            curves stay close to float32's, see benchmarks/README.md).

    The model loads once, on first use, and is reused for every call.
    """

    #: similarity below which a frame is background (TFVTG's value for BLIP-2's ITC scale)
    mask_threshold: float = 0.2

    def __init__(self, model: str | os.PathLike[str] | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int | None = None, *, space: str | None = None,
                 quantize: str | None = None):
        if quantize not in (None, "int8"):
            raise InvalidInputError(f"quantize must be None or 'int8', got {quantize!r}")
        if quantize == "int8" and device is not None and not str(device).startswith("cpu"):
            raise InvalidInputError("quantize='int8' (dynamic quantization) runs on the CPU only; on a GPU the "
                                    "vision tower already runs in float16")
        self.quantize = quantize
        self.model_name = str(model or os.environ.get("TFVTG_BLIP2_MODEL") or DEFAULT_MODEL)
        self.space = space or _space_of(self.model_name)
        self._device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self._loaded: tuple[Any, Any, Any] | None = None

    # -- loading ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The checkpoint: a hub name or a local directory."""
        return self.model_name

    @property
    def device(self) -> str:
        return pick_device(self._device)

    @property
    def batch_size(self) -> int:
        if self._batch_size:
            return int(self._batch_size)
        return 64 if self.device.startswith("cuda") else 16

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is not None:
            return self._loaded
        require("torch")
        transformers = require("transformers")
        classes = (transformers.AutoTokenizer, transformers.AutoImageProcessor,
                   transformers.Blip2ForImageTextRetrieval)

        name = self.model_name
        local = Path(name).expanduser()
        if local.exists():
            name = str(local)
            _check_local_checkpoint(local)
        elif name.startswith((".", "/", "~")):
            raise ModelUnavailableError(
                f"BLIP-2 model directory not found: {local}; pass the directory of a local copy of "
                f"{DEFAULT_MODEL} (config.json, weights, tokenizer and preprocessor files)")
        parts = None
        if local.exists() or _in_hub_cache(name):
            # the cache first: no network round trip when the weights are here
            try:
                parts = self._from_pretrained(*classes, name, local_files_only=True)
            except OSError as exc:
                if local.exists():
                    raise ModelUnavailableError(
                        f"cannot load the BLIP-2 checkpoint in {local}: {exc}. It needs config.json, the weights, "
                        "the tokenizer and the preprocessor files (save_pretrained of all three)") from exc
        if parts is None:
            # without this probe an unreachable hub costs about a minute of
            # retries before transformers gives up
            unreachable = hub_unreachable_reason()
            if unreachable is not None:
                raise _offline_help(self.model_name, unreachable) from None
            try:
                parts = self._from_pretrained(*classes, name, local_files_only=False)
            except (OSError, ValueError) as exc:
                raise _offline_help(self.model_name, f"{type(exc).__name__}: {exc}") from exc
        tokenizer, processor, model = parts
        model.eval().to(self.device)
        if self.quantize == "int8":
            model = _quantize_int8(model, self.device)
        self._loaded = (tokenizer, processor, model)
        return self._loaded

    def _from_pretrained(self, tok_cls: Any, proc_cls: Any, model_cls: Any, name: str,
                         local_files_only: bool) -> tuple[Any, Any, Any]:
        tokenizer = tok_cls.from_pretrained(name, local_files_only=local_files_only)
        processor = proc_cls.from_pretrained(name, local_files_only=local_files_only)
        model, info = model_cls.from_pretrained(name, local_files_only=local_files_only, dtype="float32",
                                                output_loading_info=True)
        # a checkpoint without the contrastive heads (e.g. a generation model
        # such as blip2-opt-2.7b) would load with random projections and
        # answer from noise
        missing = sorted({key.split(".")[0] for key in info.get("missing_keys", [])
                          if key.split(".")[0] in _ITC_HEADS})
        if missing:
            raise IncompatibleModelError(
                f"{name} has no trained {' and '.join(missing)} weights: it is not a BLIP-2 image-text "
                f"retrieval checkpoint, and its similarities would be noise; use {DEFAULT_MODEL} "
                "(or a local copy of it)")
        return tokenizer, processor, model

    def _autocast(self):
        import contextlib

        import torch

        device = self.device
        if device.startswith("cuda"):
            dtype = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16}.get(str(self._dtype), torch.float16)
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    # -- encoding ---------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) float32 text features: CLS token through ``text_projection``
        (not normalised)."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InvalidInputError("encode_text needs a non-empty list of non-empty strings")
        tokenizer, _, model = self._load()
        # LAVIS pads to 35 tokens and truncates; the CLS output ignores padding
        tok = tokenizer(texts, padding=True, truncation=True, max_length=35, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            embeds = model.embeddings(input_ids=tok.input_ids)
            out = model.qformer(query_embeds=embeds, query_length=0, attention_mask=tok.attention_mask,
                                return_dict=True)
            cls = out.last_hidden_state[:, 0, :].to(model.text_projection.weight.dtype)
            feats = model.text_projection(cls)
        return feats.float().cpu().numpy()

    def _pixel_values(self, frames: np.ndarray | Sequence[Any]) -> Any:
        _, processor, _ = self._load()
        return processor(images=list(frames), return_tensors="pt")["pixel_values"]

    def _encode_pixels(self, pixel_values: Any, keep_on_device: bool = False) -> Any:
        import torch

        _, _, model = self._load()
        pixel_values = pixel_values.to(self.device, dtype=torch.float32)
        with torch.inference_mode():
            with self._autocast():
                image_embeds = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
            image_embeds = image_embeds.float()  # the Q-Former runs in float32, as LAVIS does
            attn = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
            out = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                                encoder_attention_mask=attn, return_dict=True)
            tokens = model.vision_projection(out.last_hidden_state.to(model.vision_projection.weight.dtype))
        return tokens if keep_on_device else tokens.float().cpu().numpy()

    def _encode_batch(self, frames: Any, keep_on_device: bool = False) -> Any:
        """Encode one batch; when the GPU runs out of memory, halve the batch
        (for this call and every later one) instead of failing."""
        import torch

        try:
            return self._encode_pixels(self._pixel_values(frames), keep_on_device)
        except torch.cuda.OutOfMemoryError:
            if len(frames) <= 1:
                raise
            torch.cuda.empty_cache()
            half = len(frames) // 2
            self._batch_size = max(1, half)
            parts = [self._encode_batch(frames[:half], keep_on_device),
                     self._encode_batch(frames[half:], keep_on_device)]
            return torch.cat(parts) if keep_on_device else np.concatenate(parts)

    def encode_frames(self, frames: np.ndarray | Sequence[Any]) -> np.ndarray:
        """(T, 32, D) float32 query-token features of RGB frames ((T, H, W, 3)
        uint8 array or a list of PIL images), in batches of ``batch_size``."""
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise InvalidInputError(f"frames must be a (T, H, W, 3) RGB array, got shape {frames.shape}")
        if len(frames) == 0:
            raise InvalidInputError("encode_frames got no frames")
        outs = []
        i = 0
        while i < len(frames):
            n = self.batch_size  # may shrink after an out-of-memory error
            outs.append(self._encode_batch(frames[i:i + n]))
            i += n
        return np.concatenate(outs, axis=0)

    def encode_video(self, path: str | os.PathLike[str], fps: float = 3.0, backend: str = "auto",
                     progress: bool | None = None, on_device: bool = False) -> VideoFeatures:
        """Decode ``path`` at ``fps`` (TFVTG's sampling) and encode every
        sampled frame. Returns VideoFeatures with duration = frames / avg fps.

        With ``on_device=True`` the features stay a torch tensor on the
        encoder's device (a GPU), so similarity curves are computed there.
        ``progress``: see :meth:`encode_video_array` (auto by default).
        """
        if not on_device:
            raw, info = self.encode_video_array(path, fps=fps, backend=backend, progress=progress)
            return VideoFeatures(raw, duration=info.duration, fps=fps, source=str(path), encoder=self.space)
        import torch

        from ..video.decode import iter_frame_batches

        info, _, batches = iter_frame_batches(path, fps=fps, batch_size=self.batch_size,
                                              backend=backend)  # type: ignore[arg-type]
        tokens = torch.cat([self._encode_batch(b, keep_on_device=True).float() for b in batches])
        return VideoFeatures(tokens, duration=info.duration, fps=fps, source=str(path), encoder=self.space)

    def encode_video_array(self, path: str | os.PathLike[str], fps: float = 3.0, backend: str = "auto",
                           progress: bool | None = None) -> tuple[np.ndarray, Any]:
        """Like :meth:`encode_video` but returns the raw (T, 32, D) float16
        array (TFVTG's file layout) and the video's info.

        ``progress``: True shows a progress bar, False never; None (default)
        shows one when the encoding is estimated to take more than a few
        seconds. The estimate comes from timing the first frame; when it
        exceeds half a minute a warning says how long and how to go faster.
        """
        import time

        from ..video.decode import iter_frame_batches

        info, indices, batches = iter_frame_batches(path, fps=fps, batch_size=self.batch_size,
                                                    backend=backend)  # type: ignore[arg-type]
        total = len(indices)
        outs: list[np.ndarray] = []
        bar = None
        for batch in batches:
            if not outs and total > 1:
                # time one frame before committing to the whole video
                started = time.perf_counter()
                outs.append(self._encode_batch(batch[:1]).astype(np.float16))
                estimate = (time.perf_counter() - started) * total
                bar = self._progress_bar(Path(path).name, total, estimate, progress)
                if bar is not None:
                    bar.update(1)
                batch = batch[1:]
                if len(batch) == 0:
                    continue
            outs.append(self._encode_batch(batch).astype(np.float16))
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return np.concatenate(outs, axis=0), info

    def _progress_bar(self, name: str, total: int, estimate_s: float, progress: bool | None) -> Any:
        if estimate_s > LONG_ENCODING_S:
            faster = ["fewer frames (fps=1)", "features extracted once with `tfvtg extract` and reused"]
            if self.device == "cpu":
                faster.insert(0, "a GPU (device='cuda')")
                if self.quantize is None:
                    faster.insert(1, "quantize='int8' on the CPU (--quantize int8)")
            warn_user(f"encoding {total} frames of {name} with {self.model_name} on {self.device} will take about "
                      f"{_duration_words(estimate_s)} ({estimate_s / total:.2g} s a frame); faster: "
                      + "; ".join(faster), RuntimeWarning)
        if progress is False or (progress is None and estimate_s < 3.0):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="frame", desc=name, leave=False)

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not loaded"
        return f"Blip2Encoder(model={self.model_name!r}, device={self.device!r}, {state})"
