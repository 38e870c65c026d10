"""numpro's errors: all are :class:`tfvtg.TfvtgError` too."""
from __future__ import annotations

from typing import Any

from tfvtg.errors import TfvtgError

__all__ = ["NumProError", "MLLMError", "NoAnswerError"]


class NumProError(TfvtgError):
    """Base of numpro's own errors."""


class MLLMError(NumProError, RuntimeError):
    """The multimodal model could not be loaded or did not answer."""


class NoAnswerError(NumProError, ValueError):
    """The model's reply names no usable frame span; ``.answer`` keeps the
    parsed answer with its ``reason`` and ``raw`` text."""

    def __init__(self, answer: Any):
        reason = getattr(answer, "reason", "") or "no span"
        raw = str(getattr(answer, "raw", ""))
        super().__init__(f"no frame span in the model's answer ({reason}): {raw[:200]!r}")
        self.answer = answer
