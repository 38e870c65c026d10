"""Stage 2: frame-text similarity curves.

A curve holds, for every frame, the best cosine similarity between the text
and any of the frame's Q query tokens. Frame tokens are normalised once per
:class:`~tfvtg.features.VideoFeatures`; texts are normalised here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .features import VideoFeatures

__all__ = ["similarity_curves", "normalise_text_embeddings"]


def normalise_text_embeddings(embeddings: Any, dim: int) -> np.ndarray:
    """Validate (n, D) text embeddings and L2-normalise them (float32).

    Raises ValueError when the shape does not match the features' D or values
    are not finite.
    """
    if _is_torch(embeddings):
        embeddings = embeddings.detach().float().cpu().numpy()
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2:
        raise ValueError(f"the text encoder must return an (n, D) array, got shape {emb.shape}")
    if emb.shape[1] != dim:
        raise ValueError(
            f"text embedding dimension {emb.shape[1]} does not match the frame features' D={dim}: "
            "use the text encoder of the model that produced the features"
        )
    if not np.isfinite(emb).all():
        raise ValueError("the text encoder returned NaN or inf embeddings")
    norms = np.sqrt(np.einsum("nd,nd->n", emb, emb))[:, None]
    return emb / np.maximum(norms, np.float32(1e-12))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def similarity_curves(features: VideoFeatures, text_embeddings: Any) -> np.ndarray:
    """Per-text similarity curves over the video.

    Args:
        features: the video's normalised frame tokens, (T, Q, D).
        text_embeddings: (n, D) raw text embeddings (normalised here).

    Returns:
        (n, T) float32: for text i and frame t, the max over the Q tokens of
        the cosine similarity. When the features are a torch tensor (e.g. on
        a GPU) the product runs there and only the curves come back.
    """
    t, q, d = features.shape
    text = normalise_text_embeddings(text_embeddings, d)
    if features.on_torch:
        import torch

        tokens = features.tokens
        text_t = torch.from_numpy(text).to(device=tokens.device, dtype=tokens.dtype)
        sims = tokens.reshape(t * q, d) @ text_t.T  # (T*Q, n)
        return sims.reshape(t, q, -1).amax(dim=1).T.contiguous().cpu().numpy()
    tokens = features.tokens.reshape(t * q, d)
    if text.shape[0] == 1:  # one text: a matrix-vector product, no transposes
        return (tokens @ text[0]).reshape(1, t, q).max(axis=2)
    sims = text @ tokens.T  # (n, T*Q)
    return sims.reshape(-1, t, q).max(axis=2)
