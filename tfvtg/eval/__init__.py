"""Benchmarks: the dataset registry and readers, the resumable evaluation
runner, the results file and the metrics.

    registry.py  datasets by name (aliases, reader, default preset, splits)
    datasets.py  annotation readers (hardened: each bad entry skipped, counted)
    methods.py   grounding methods: tfvtg, tag, plug-ins (entry points)
    runner.py    evaluate(): one input per video, failures reported, resumable
    records.py   the results file: settings line, lock, strict JSON records
    metrics.py   R1/R5/mIoU, QVHighlights MR/HL, Metrics
    jsonsafe.py  JSON and text from outside, read without crashing
"""
from __future__ import annotations

from .datasets import Query, QueryList, load_charades_sta, load_qvhighlights, load_tfvtg_json
from .jsonsafe import read_json
from .methods import MethodError, VideoMethod, method_names
from .metrics import (
    Metrics,
    format_metrics,
    grounding_metrics,
    metrics_from_results,
    qvhighlights_metrics,
    temporal_iou,
)
from .records import ResultsFileLockedError, SettingsMismatchError, read_results
from .registry import (
    DATASETS,
    DatasetSpec,
    Split,
    list_datasets,
    load_dataset,
    register_dataset,
    resolve_dataset,
)
from .runner import evaluate, pad_features

__all__ = ["DATASETS", "DatasetSpec", "Split", "register_dataset", "resolve_dataset", "list_datasets",
           "Query", "QueryList", "load_dataset", "load_tfvtg_json", "load_charades_sta", "load_qvhighlights",
           "grounding_metrics", "qvhighlights_metrics", "temporal_iou", "Metrics", "metrics_from_results",
           "format_metrics", "evaluate", "pad_features", "read_results", "SettingsMismatchError",
           "ResultsFileLockedError", "VideoMethod", "MethodError", "method_names", "read_json"]
