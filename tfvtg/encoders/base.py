"""What an encoder is: the protocol every image-text model implements, and
the device choice shared by every torch-backed model (tfvtg's and numpro's)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder", "TextEncoder", "pick_device"]


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that embeds sentences into the frame features' space."""

    def encode_text(self, texts: list[str]) -> Any:  # (n, D)
        ...


@runtime_checkable
class Encoder(Protocol):
    """An image-text model that grounding can use end to end.

    Attributes:
        name: what the model is (a hub name or a local path).
        space: the embedding-space id (e.g. "blip2-coco"); features record
            it and grounding refuses text from another space.
        mask_threshold: similarity below which a frame is background, on
            this model's cosine scale (BLIP-2's Q-Former: 0.2).
    """

    name: str
    space: str
    mask_threshold: float

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) text embeddings."""
        ...

    def encode_frames(self, frames: Any) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames -> (N, Q, D) (or (N, D)) features."""
        ...

    def encode_video(self, path: str | os.PathLike[str], fps: float = 3.0) -> Any:
        """A video file -> :class:`tfvtg.VideoFeatures` sampled at ``fps``."""
        ...


def pick_device(device: str | None = None) -> str:
    """``device`` when given, else the first available of "cuda", "mps", "cpu"
    (needs torch: ``pip install "tfvtg[vision]"``)."""
    if device:
        return str(device)
    from .._extras import require_torch

    torch = require_torch()
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """Why the model hub cannot be reached (one request, ``timeout``
    seconds), or None when it answers. Offline mode (HF_HUB_OFFLINE) counts
    as unreachable. Used to fail in seconds instead of after a minute of
    download retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
            os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session
    except ImportError as exc:
        return f"huggingface_hub cannot be imported ({exc})"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not reachable"
        return f"{constants.ENDPOINT} unreachable: {type(exc).__name__}: {exc}"
    return None
