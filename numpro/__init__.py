"""numpro: numbered-frame prompting (NumPro, CVPR 2025) for zero-shot grounding.

Paint each sampled frame's number on it and ask a video MLLM which frames
show the event::

    import numpro
    mllm = numpro.QwenVL("Qwen/Qwen2-VL-7B-Instruct")      # or numpro.OpenAIVisionMLLM("gpt-4o")
    moment = numpro.ground("clip.mp4", "a person opens the door", mllm=mllm, fps=1.0)
"""
from __future__ import annotations

from tfvtg._lazy import lazy_exports

_EXPORTS = {
    "sample_frames": "ground", "ground": "ground", "ground_many": "ground", "NumProResult": "ground",
    "NoAnswerError": "ground",
    "number_frames": "overlay", "contact_sheet": "overlay", "write_video": "overlay",
    "parse_answer": "parse", "Answer": "parse",
    "PromptTemplate": "prompt", "DEFAULT_PROMPT": "prompt",
    "MLLM": "mllm", "QwenVL": "mllm", "OpenAIVisionMLLM": "mllm", "MLLMError": "mllm",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
