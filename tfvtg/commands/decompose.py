"""``tfvtg decompose ANNOTATIONS --out FILE``: LLM decompositions for a dataset."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompose", help="decompose every query of a dataset with an LLM",
        description="Read TFVTG-style annotations ({video: {duration, timestamps, sentences}}) and write the "
                    "same file with a 'response' list per video (TFVTG's llm_outputs.json format). Resumable: "
                    "videos already complete in --out are kept, and every answer is cached.")
    p.add_argument("annotations", help="annotation JSON file")
    p.add_argument("--out", required=True, help="output JSON file (llm_outputs.json format)")
    p.add_argument("--model", default="gpt-4o-mini", help="chat model (default: %(default)s)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL (default: OpenAI)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    p.add_argument("--max-retries", type=int, default=3, help="client retries (default: %(default)s)")
    p.add_argument("--cache", default=None, help="sqlite cache file (default: the user cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..llm import DecompositionError, OpenAIDecomposer

    try:
        data = json.loads(Path(args.annotations).read_text())
    except (OSError, ValueError) as exc:
        print(f"tfvtg decompose: cannot read {args.annotations}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("tfvtg decompose: annotations must be a JSON object {video: {sentences: [...]}}", file=sys.stderr)
        return 2
    out_path = Path(args.out)
    done: dict = {}
    if out_path.exists():
        done = json.loads(out_path.read_text())
    try:
        decomposer = OpenAIDecomposer(model=args.model, base_url=args.base_url, timeout=args.timeout,
                                      max_retries=args.max_retries, cache=args.cache or True)
    except ValueError as exc:
        print(f"tfvtg decompose: {exc}", file=sys.stderr)
        return 2
    result: dict = {}
    pending: list[tuple[str, int, str]] = []
    for vid, ann in data.items():
        sentences = ann.get("sentences", []) if isinstance(ann, dict) else []
        prev = done.get(vid, {})
        if isinstance(prev.get("response"), list) and len(prev["response"]) == len(sentences):
            result[vid] = prev
            continue
        result[vid] = {**ann, "response": [None] * len(sentences)}
        pending += [(vid, i, s) for i, s in enumerate(sentences)]
    try:
        decs = decomposer.decompose_many([s for _, _, s in pending], concurrency=args.concurrency)
    except DecompositionError as exc:
        print(f"tfvtg decompose: {exc}", file=sys.stderr)
        return 1
    fallbacks = 0
    for (vid, i, _), dec in zip(pending, decs):
        result[vid]["response"][i] = dec.to_tfvtg()
        fallbacks += dec.fallback
    write_json(out_path, result)
    print(f"decomposed {len(pending)} queries ({fallbacks} fell back to the query alone), "
          f"kept {sum(len(v.get('sentences', [])) for v in result.values()) - len(pending)}; wrote {out_path}")
    return 0
