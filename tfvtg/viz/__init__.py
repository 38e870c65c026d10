"""Plots of grounding results (needs ``tfvtg[plot]``: matplotlib)."""
from __future__ import annotations

from .plot import plot_result, pyplot

__all__ = ["plot_result", "pyplot"]
