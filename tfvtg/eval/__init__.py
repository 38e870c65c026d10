"""Benchmarks: dataset readers, the resumable evaluation runner and the metrics."""
from __future__ import annotations

from .datasets import DATASETS, Query, load_dataset
from .metrics import grounding_metrics, qvhighlights_metrics, temporal_iou
from .runner import evaluate, format_metrics, read_results

__all__ = ["DATASETS", "Query", "load_dataset", "grounding_metrics", "qvhighlights_metrics", "temporal_iou",
           "evaluate", "format_metrics", "read_results"]
