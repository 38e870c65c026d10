"""The ``numpro`` command: ground a sentence in a video with a video MLLM."""
from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numpro", description="Numbered-frame prompting: ask a video MLLM which "
                                "numbered frames show QUERY in VIDEO and print the span in seconds.")
    p.add_argument("video")
    p.add_argument("query")
    p.add_argument("--model", default="Qwen/Qwen2-VL-7B-Instruct",
                   help="transformers model (name or directory), or a served model with --base-url/--api")
    p.add_argument("--api", action="store_true", help="use an OpenAI-compatible vision server (OPENAI_API_KEY)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL (implies --api)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second shown to the model (default 1)")
    p.add_argument("--font-size", type=float, default=40, help="pixels, or a fraction of the height if < 1")
    p.add_argument("--color", default="red")
    p.add_argument("--position", default="bottom_right",
                   choices=["bottom_right", "bottom_left", "top_right", "top_left", "center"])
    p.add_argument("--sheet", default=None, help="save a contact sheet of the numbered frames (PNG)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .grounding import _run
    from .mllm import MLLMError, OpenAIVisionMLLM, QwenVL
    from .prompt import DEFAULT_PROMPT

    try:
        if args.api or args.base_url:
            mllm = OpenAIVisionMLLM(args.model, base_url=args.base_url)
        else:
            mllm = QwenVL(args.model)
        font = args.font_size if args.font_size < 1 else int(args.font_size)
        res = _run(args.video, args.query, mllm, args.fps, DEFAULT_PROMPT, font, args.color, args.position)
    except (MLLMError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"numpro: {exc}", file=sys.stderr)
        return 2
    if args.sheet:
        res.contact_sheet(args.sheet)
    answer = res.answer  # set by _run; an Answer is truthy whether or not it holds a span
    raw, reason = (answer.raw, answer.reason) if answer is not None else ("", "no reply")
    if args.json:
        print(json.dumps({"query": args.query, "moment": None if res.moment is None else res.moment.to_dict(),
                          "answer": raw, "reason": reason,
                          "frames": [answer.first, answer.last] if answer is not None and answer.ok else None}))
    elif res.moment is None:
        print(f"numpro: no answer ({reason}): {raw[:200]!r}", file=sys.stderr)
    else:
        print(f"{res.moment.start:.2f} s - {res.moment.end:.2f} s   (model said: {raw!r})")
    return 0 if res.moment is not None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
