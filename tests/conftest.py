"""Shared test fixtures: tiny randomly initialised models and generated videos.

Nothing here reaches the network: models are built from small configs,
saved to a temporary directory and loaded back through from_pretrained.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("OPENAI_API_KEY", None)  # no test may reach a real LLM
os.environ.pop("TFVTG_LLM_BASE_URL", None)

from tfvtg.testing import build_tiny_blip2, make_video  # noqa: E402,F401

try:  # CI explores the same examples on every run; a new failing one shows up locally, not as a flaky CI
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis comes with the dev extra
    pass


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory):
    """A tiny Blip2ForImageTextRetrieval with tokenizer and image processor on disk."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return build_tiny_blip2(tmp_path_factory.mktemp("tiny-blip2"))


@pytest.fixture()
def video_file(tmp_path):
    return make_video(tmp_path / "clip.mp4")
