"""numpro: numbered-frame prompting (NumPro, CVPR 2025) for zero-shot grounding.

Paint each sampled frame's number on it and ask a video MLLM which frames
show the event::

    import numpro
    mllm = numpro.QwenVL("Qwen/Qwen2.5-VL-7B-Instruct")    # or numpro.OpenAIVisionMLLM("gpt-4o")
    moment = numpro.ground("clip.mp4", "a person opens the door", mllm=mllm, fps=1.0)
    res = numpro.run("clip.mp4", "a person opens the door", mllm, layout="grid", refine=True)
    res.moment, res.settings                                # the span and what decided it
    numpro.highlights("clip.mp4", "a person opens the door", mllm=mllm).scores   # per 2 s clip
    numpro.ensemble("clip.mp4", "a person opens the door", mllm=mllm)          # MLLM picks a TFVTG proposal

Built on tfvtg's public API only; its errors are :class:`tfvtg.TfvtgError`.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> submodule defining it; no submodule shares a public name,
# so importing a submodule never replaces a function on this package
_HOME = {
    "sample_frames": "grounding", "ground": "grounding", "run": "grounding", "ground_many": "grounding",
    "NumProResult": "grounding", "NumProSettings": "grounding",
    "InMemoryVideo": "source", "VideoFile": "source",
    "number_frames": "overlay", "contact_sheet": "overlay", "write_video": "overlay",
    "tile_frames": "grid", "grid_geometry": "grid", "Grid": "grid", "GridGeometry": "grid",
    "parse_answer": "parse", "Answer": "parse",
    "PromptTemplate": "prompt", "DEFAULT_PROMPT": "prompt",
    "MLLM": "mllm", "QwenVL": "mllm", "OpenAIVisionMLLM": "mllm", "load_mllm": "mllm",
    "highlights": "saliency", "Highlights": "saliency", "HighlightPrompt": "saliency",
    "rerank": "reranking", "ensemble": "reranking", "Reranked": "reranking", "ChoicePrompt": "reranking",
    "NumProError": "errors", "MLLMError": "errors", "MLLMTimeoutError": "errors",
    "MLLMConfigurationError": "errors", "NoAnswerError": "errors",
    "plot_numpro_answer": "plot",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'numpro' has no attribute {name!r}")
    value = getattr(import_module(f"numpro.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
