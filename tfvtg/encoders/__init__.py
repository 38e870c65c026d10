"""Image-text encoders: the :class:`Encoder` protocol and a registry.

``load_encoder("blip2-coco")`` gives the paper's BLIP-2 checkpoint; a local
directory or hub name of a BLIP-2 retrieval checkpoint works too. Register
your own model with :func:`register_encoder`::

    tfvtg.register_encoder("my-siglip", lambda **kw: MySiglipEncoder(**kw),
                           space="siglip2-base", mask_threshold=0.05)
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IncompatibleModelError, InvalidInputError
from .base import Encoder, TextEncoder, pick_device

__all__ = ["Encoder", "TextEncoder", "EncoderEntry", "register_encoder", "list_encoders", "load_encoder",
           "encoder_entry", "pick_device"]


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder.

    Attributes:
        name: the registry name.
        factory: ``factory(**kwargs) -> Encoder``.
        space: the embedding-space id its features carry.
        mask_threshold: similarity below which a frame is background on this
            model's scale (grounding's mask; TFVTG uses 0.2 for BLIP-2).
        frame_mask_threshold: the same for TAG's one-vector-per-frame
            (CLIP-style) rule, when it differs.
        description: one line for ``list_encoders``.
    """

    name: str
    factory: Callable[..., Any]
    space: str
    mask_threshold: float = 0.2
    frame_mask_threshold: float | None = None
    description: str = ""


_REGISTRY: dict[str, EncoderEntry] = {}


def register_encoder(name: str, factory: Callable[..., Any], *, space: str | None = None,
                     mask_threshold: float = 0.2, frame_mask_threshold: float | None = None,
                     description: str = "", overwrite: bool = False) -> EncoderEntry:
    """Make ``load_encoder(name)`` (and ``--encoder NAME``) build ``factory(**kwargs)``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"an encoder name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise InvalidInputError(f"factory for encoder {name!r} must be callable")
    if name in _REGISTRY and not overwrite:
        raise InvalidInputError(f"an encoder named {name!r} is registered already; pass overwrite=True to replace it")
    entry = EncoderEntry(name, factory, space or name, float(mask_threshold), frame_mask_threshold, description)
    _REGISTRY[name] = entry
    return entry


def list_encoders() -> list[str]:
    """Registered encoder names."""
    return sorted(_REGISTRY)


def encoder_entry(name: str) -> EncoderEntry | None:
    """The registry entry of ``name``, or None."""
    return _REGISTRY.get(name)


def load_encoder(name_or_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """An encoder by registry name, local directory or hub name.

    None means the default ("blip2-coco", or TFVTG_BLIP2_MODEL when set).
    A local directory is inspected (its ``config.json``): a BLIP-2
    checkpoint becomes a :class:`~tfvtg.Blip2Encoder`; any other model type
    is refused with an error naming it. ``kwargs`` go to the encoder
    (``device``, ``dtype``, ``batch_size``, ``quantize``...).
    """
    if name_or_path is None:
        from .blip2 import Blip2Encoder

        return Blip2Encoder(**kwargs)
    key = os.fspath(name_or_path)
    entry = _REGISTRY.get(key)
    if entry is not None:
        return _with_frame_threshold(entry.factory(**kwargs), entry)
    local = Path(key).expanduser()
    if local.is_dir():
        model_type = _model_type(local)
        if model_type is not None and not model_type.startswith("blip-2") and model_type != "blip_2":
            raise IncompatibleModelError(
                f"{local} holds a {model_type!r} model, not a BLIP-2 image-text retrieval checkpoint; "
                f"pass a registered encoder ({', '.join(list_encoders())}) or a directory of one")
    from .blip2 import Blip2Encoder

    return Blip2Encoder(key, **kwargs)


def _with_frame_threshold(encoder: Any, entry: EncoderEntry) -> Any:
    # TAG's one-vector-per-frame mask reads the encoder's frame_mask_threshold:
    # an encoder that does not set one gets its registry entry's
    if entry.frame_mask_threshold is not None and getattr(encoder, "frame_mask_threshold", None) is None:
        try:
            encoder.frame_mask_threshold = float(entry.frame_mask_threshold)
        except AttributeError:  # a slotted or frozen encoder keeps what it has
            pass
    return encoder


def _model_type(directory: Path) -> str | None:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _blip2_coco(**kwargs: Any) -> Any:
    from .blip2 import DEFAULT_MODEL, Blip2Encoder

    return Blip2Encoder(kwargs.pop("model", None) or DEFAULT_MODEL, **kwargs)


register_encoder("blip2-coco", _blip2_coco, space="blip2-coco", mask_threshold=0.2,
                 description="BLIP-2 ViT-g Q-Former, ITC head (Salesforce/blip2-itm-vit-g-coco), the paper's")
