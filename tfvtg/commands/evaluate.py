"""``tfvtg eval``: reproduce a benchmark table."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate on Charades-STA, ActivityNet Captions or QVHighlights",
        description="Ground every query of a dataset, append per-query results to --out as they come "
                    "(a re-run resumes), and print R1/R5@0.3/0.5/0.7 and mIoU (and QVHighlights' MR/HL metrics).")
    p.add_argument("--dataset", required=True, choices=["charades", "activitynet", "qvhighlights"])
    p.add_argument("--annotations", required=True, help="annotation file (JSON, Charades-STA .txt or JSONL)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="directory of <video>.npy feature files")
    src.add_argument("--videos", help="directory of video files (encoded with BLIP-2 and cached)")
    llm = p.add_mutually_exclusive_group()
    llm.add_argument("--llm-outputs", help="TFVTG llm_outputs.json with decompositions")
    llm.add_argument("--model", help="decompose with this LLM (OpenAI-compatible; see --base-url)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server for --model")
    p.add_argument("--blip2", default=None, help="BLIP-2 model name or local directory")
    p.add_argument("--preset", default=None, help="grounding preset (default: the dataset's)")
    p.add_argument("--durations", default=None, help="CSV of video durations for Charades-STA .txt annotations")
    p.add_argument("--pad-sec", type=float, default=0.0, help="seconds of noise before each video (OOD setting)")
    p.add_argument("--seed", type=int, default=0, help="noise seed for --pad-sec")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--out", required=True, help="per-query results, JSON lines (resumed when present)")
    p.add_argument("--metrics-json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders.blip2 import Blip2Encoder
    from ..eval.runner import evaluate, format_metrics
    from ..io import write_json

    decomposer = None
    if args.model:
        from ..llm import OpenAIDecomposer

        decomposer = OpenAIDecomposer(model=args.model, base_url=args.base_url)
    try:
        metrics = evaluate(args.dataset, args.annotations, features=args.features, videos=args.videos,
                           llm_outputs=args.llm_outputs, decomposer=decomposer,
                           text_encoder=Blip2Encoder(args.blip2) if (args.blip2 or args.videos) else None,
                           preset=args.preset, out=args.out, pad_sec=args.pad_sec, seed=args.seed,
                           limit=args.limit, durations=args.durations)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"tfvtg eval: {exc}", file=sys.stderr)
        return 2
    print(format_metrics(metrics))
    print(json.dumps(metrics))
    if args.metrics_json:
        write_json(args.metrics_json, metrics)
    return 1 if metrics.get("failed") else 0
