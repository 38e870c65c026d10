"""Torch tensors in the scoring core, kept out of it.

``VideoFeatures`` accepts torch tensors (kept on their device, e.g. a GPU)
and ``similarity_curves`` then computes there; core may not import torch, so
it asks for these operations through :mod:`tfvtg.core.hooks` and the
package root provides them from here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .core.errors import InvalidInputError
from .core.features import _CHECK_CHUNK_VALUES, _norm_outlier, _sample_positions

__all__ = ["normalise", "keep", "curves"]


def normalise(cls: Any, tensor: Any) -> Any:
    """(T, Q, D) float32 unit-length tokens of a raw tensor, on its device."""
    import torch

    cls._check_torch_dtype(tensor)
    t, q, d = cls._check_shape(tuple(tensor.shape))
    tokens = tensor.detach().reshape(t, q, d).to(torch.float32)
    if not bool(torch.isfinite(tokens).all()):
        raise InvalidInputError("features contain NaN or inf; re-extract that video")
    return torch.nn.functional.normalize(tokens, dim=-1).contiguous()


def keep(cls: Any, tensor: Any) -> Any:
    """An already normalised tensor as it is (dtype and device kept), after
    a chunked finiteness check and a sample of its norms."""
    import torch

    if not tensor.is_floating_point() or tensor.is_complex():
        raise InvalidInputError(
            f"normalized features must be floating point, got a torch tensor of dtype {tensor.dtype}; "
            "pass normalized=False to have them converted and normalised")
    t, q, d = cls._check_shape(tuple(tensor.shape))
    tokens = tensor.detach().reshape(t, q, d).contiguous()
    step = max(1, _CHECK_CHUNK_VALUES // (q * d))
    for first in range(0, t, step):  # chunked: the check's boolean copy stays small
        if not bool(torch.isfinite(tokens[first:first + step]).all()):
            raise InvalidInputError("features contain NaN or inf; re-extract that video")
    frames, slots = _sample_positions(t, q)
    # copies: the cached sample positions are read-only, which torch warns about
    index = (torch.tensor(frames, device=tokens.device), torch.tensor(slots, device=tokens.device))
    norms = torch.linalg.vector_norm(tokens[index].double(), dim=-1)
    bad = _norm_outlier(norms.cpu().numpy())
    if bad >= 0:
        raise InvalidInputError(
            f"features passed as normalized are not unit-length: token {slots[bad]} of frame {frames[bad]} "
            f"has norm {float(norms[bad]):.4g}; pass normalized=False to have them normalised")
    return tokens


def curves(tokens: Any, text: np.ndarray, chunk_values: int) -> np.ndarray:
    """(n, T) float32 curves computed where the tokens are, in float32
    whatever their dtype, ``chunk_values`` token values at a time (a float16
    video never gets a whole float32 copy on the device either)."""
    import torch

    t, q, d = tokens.shape
    text_t = torch.from_numpy(text).to(device=tokens.device)
    step = max(1, chunk_values // (q * d))
    out = torch.empty((text.shape[0], t), dtype=torch.float32, device=tokens.device)
    for first in range(0, t, step):
        chunk = tokens[first:first + step]
        sims = chunk.reshape(-1, d).to(torch.float32) @ text_t.T  # (frames*Q, n)
        out[:, first:first + chunk.shape[0]] = sims.reshape(chunk.shape[0], q, -1).amax(dim=1).T
    return out.cpu().numpy()
