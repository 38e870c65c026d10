"""numpro's errors: all are :class:`tfvtg.TfvtgError` too."""
from __future__ import annotations

from typing import Any

from tfvtg.errors import TfvtgError
from tfvtg.errors import require_extra as require

__all__ = ["NumProError", "MLLMError", "MLLMTimeoutError", "MLLMConfigurationError", "NoAnswerError", "require"]


class NumProError(TfvtgError):
    """Base of numpro's own errors."""


class MLLMError(NumProError, RuntimeError):
    """The multimodal model could not be loaded or did not answer."""


class MLLMTimeoutError(MLLMError, TimeoutError):
    """The multimodal model gave no answer within the timeout."""


class MLLMConfigurationError(MLLMError):
    """The model cannot be used at all (weights missing, not a supported
    checkpoint, a server refusing the key or the model): no retry helps, so
    a batch stops instead of failing every query."""


class NoAnswerError(NumProError, ValueError):
    """The model's reply names no usable frame span; ``.answer`` keeps the
    parsed answer with its ``reason`` and ``raw`` text."""

    def __init__(self, answer: Any, reason: str = ""):
        reason = reason or getattr(answer, "reason", "") or "no span"
        raw = str(getattr(answer, "raw", "") or "")
        super().__init__(f"no frame span in the model's answer ({reason}): {raw[:200]!r}")
        self.answer = answer
        self.reason = reason

