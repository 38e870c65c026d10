"""The ``numpro`` command: ground a sentence in a video with a video MLLM."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numpro", description="Numbered-frame prompting: ask a video MLLM which "
                                "numbered frames show QUERY in VIDEO and print the span in seconds, with the "
                                "settings that decided it.")
    p.add_argument("video")
    p.add_argument("query")
    p.add_argument("--model", default="Qwen/Qwen2-VL-7B-Instruct",
                   help="Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint (name or directory), or a served model "
                        "with --base-url/--api")
    p.add_argument("--api", action="store_true", help="use an OpenAI-compatible vision server (OPENAI_API_KEY)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL (implies --api)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a served model (default 120)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second shown to the model (default 1)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="most pixels per image (default: the model's own setting)")
    p.add_argument("--layout", choices=["frames", "grid"], default="frames",
                   help="numbers painted on frames (default), or frames tiled into captioned grids (T2SGrid)")
    p.add_argument("--rows", type=int, default=3, help="grid rows (default 3)")
    p.add_argument("--cols", type=int, default=4, help="grid columns (default 4)")
    p.add_argument("--grid-stride", type=int, default=None, help="frames between grids (default: a whole grid)")
    p.add_argument("--tile-size", type=int, default=None, help="longest tile side in pixels (T2SGrid: 336)")
    p.add_argument("--refine", action="store_true", help="ask again around the first answer at a higher rate")
    p.add_argument("--refine-fps", type=float, default=None, help="second pass rate (default 4 x --fps)")
    p.add_argument("--refine-margin", type=float, default=None,
                   help="seconds around the first answer (default 2 / --fps)")
    p.add_argument("--highlights", action="store_true",
                   help="print per-clip saliency (2 s clips, QVHighlights) instead of a span")
    p.add_argument("--font-size", type=float, default=40, help="pixels, or a fraction of the height if < 1")
    p.add_argument("--color", default="red")
    p.add_argument("--position", default="bottom_right",
                   choices=["bottom_right", "bottom_left", "top_right", "top_left", "center"])
    p.add_argument("--sheet", default=None, help="save a contact sheet of what the model saw (PNG)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def format_settings(settings: dict[str, Any]) -> str:
    """The settings that decided an answer, one line each."""
    font = settings.get("font") or {}
    grid = settings.get("grid")
    lines = [f"model:          {settings.get('model')} ({(settings.get('mllm') or {}).get('backend', '?')})",
             f"prompt version: {settings.get('prompt_version')}",
             f"prompt:         {settings.get('prompt')}",
             f"fps:            {settings.get('fps')}",
             f"frames:         {settings.get('n_frames')}",
             f"max pixels:     {settings.get('max_pixels')}",
             f"layout:         {settings.get('layout')}"
             + (f" ({grid['rows']} x {grid['cols']} tiles of {grid['tile'][1]} x {grid['tile'][0]} px, "
                f"stride {grid['stride']}, {grid['images']} images)" if grid else ""),
             "font:           " + ", ".join(f"{k} {v}" for k, v in font.items())]
    refine = settings.get("refine")
    if refine:
        used = "used" if refine.get("used") else f"not used: {refine.get('reason', '')}"
        window = refine.get("window")
        where = f"{window[0]:.2f}-{window[1]:.2f} s, " if window else ""
        lines.append(f"refine:         {where}{refine.get('fps', 0):.3g} fps, {used}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfvtg.errors import TfvtgError
    from tfvtg.io import dumps_strict

    from .grounding import NumProSettings, _run
    from .mllm import OpenAIVisionMLLM, QwenVL

    try:
        mllm: Any
        if args.api or args.base_url:
            mllm = OpenAIVisionMLLM(args.model, base_url=args.base_url, timeout=args.timeout,
                                    max_pixels=args.max_pixels)
        else:
            mllm = QwenVL(args.model, max_pixels=args.max_pixels)
        font = args.font_size if args.font_size < 1 else int(args.font_size)
        display = dict(font_size=font, color=args.color, position=args.position, layout=args.layout,
                       rows=args.rows, cols=args.cols, grid_stride=args.grid_stride, tile_size=args.tile_size,
                       max_pixels=args.max_pixels)
        if args.highlights:
            from .saliency import highlights

            hl = highlights(args.video, args.query, mllm, **display)
            if args.json:
                print(dumps_strict(hl.to_dict()))
            else:
                print(" ".join(f"{x:g}" for x in hl.scores))
                print(f"best clip: {hl.top(1)[0]} ({hl.top(1)[0] * hl.clip:g}-{(hl.top(1)[0] + 1) * hl.clip:g} s)"
                      + (f"; {hl.error}" if hl.error else ""))
                print(format_settings(hl.settings))
            return 0 if hl.scores.any() else 1
        settings = NumProSettings.make(fps=args.fps, refine=args.refine, refine_fps=args.refine_fps,
                                       refine_margin=args.refine_margin, **display)
        res = _run(args.video, args.query, mllm, settings)
        if args.sheet:
            res.contact_sheet(args.sheet)
    except (TfvtgError, OSError) as exc:
        print(f"numpro: {exc}", file=sys.stderr)
        return 2
    raw = res.answer.raw if res.answer is not None else ""
    if args.json:
        print(dumps_strict(res.to_dict()))
    elif res.moment is None:
        reason = res.answer.reason if res.answer is not None else res.error
        print(f"numpro: no answer ({reason or res.error}): {raw[:200]!r}", file=sys.stderr)
    else:
        print(f"{res.moment.start:.2f} s - {res.moment.end:.2f} s   (model said: {raw!r})")
        print(format_settings(res.settings))
    return 0 if res.moment is not None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
