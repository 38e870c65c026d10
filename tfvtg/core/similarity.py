"""Stage 2: frame-text similarity curves.

A curve holds, for every frame, the best cosine similarity between the text
and any of the frame's Q query tokens. Frame tokens are normalised once per
:class:`~tfvtg.features.VideoFeatures`; texts are normalised here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .errors import InvalidInputError
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
        raise InvalidInputError(f"the text encoder must return an (n, D) array, got shape {emb.shape}")
    if emb.shape[1] != dim:
        raise InvalidInputError(
            f"text embedding dimension {emb.shape[1]} does not match the frame features' D={dim}: "
            "use the text encoder of the model that produced the features"
        )
    if not np.isfinite(emb).all():
        raise InvalidInputError("the text encoder returned NaN or inf embeddings")
    norms = np.sqrt((emb * emb).sum(axis=1, keepdims=True))
    return emb / np.maximum(norms, np.float32(1e-12))


@njit(cache=True)
def _max_over_tokens(sims: np.ndarray, t: int, q: int) -> np.ndarray:
    # (T*Q,) -> (T,): numpy's reduction over a short last axis costs more
    # than the product itself on a Charades-sized video
    out = np.empty(t, np.float32)
    for i in range(t):
        best = sims[i * q]
        for j in range(1, q):
            if sims[i * q + j] > best:
                best = sims[i * q + j]
        out[i] = best
    return out


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
    if text.shape[0] <= 16:
        # a few texts: matrix-vector products (BLAS's matrix-matrix path is
        # several times slower for so few columns), then a compiled max
        return np.stack([_max_over_tokens(tokens @ vec, t, q) for vec in text])
    sims = text @ tokens.T  # (n, T*Q): one matrix product for many texts
    return np.stack([_max_over_tokens(row, t, q) for row in sims])
