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
                    "answers already in --out are kept (empty ones and fallbacks are asked again), and every "
                    "answer is cached.")
    p.add_argument("annotations", help="annotation JSON file")
    p.add_argument("--out", required=True, help="output JSON file (llm_outputs.json format)")
    p.add_argument("--model", default="gpt-4o-mini", help="chat model (default: %(default)s)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL (default: OpenAI)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    p.add_argument("--max-retries", type=int, default=3, help="client retries (default: %(default)s)")
    p.add_argument("--cache", default=None, help="sqlite cache file (default: the user cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _needs_answer(response: object) -> bool:
    # TFVTG writes {} for a failed query; ours are None (never asked) or fallbacks.
    return not isinstance(response, dict) or not response or bool(response.get("fallback"))


def run(args: argparse.Namespace) -> int:
    import time

    from ..errors import DecompositionError
    from ..io import write_json
    from ..llm import OpenAIDecomposer

    try:
        data = json.loads(Path(args.annotations).read_text())
    except (OSError, ValueError) as exc:
        print(f"tfvtg decompose: cannot read {args.annotations}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("tfvtg decompose: annotations must be a JSON object {video: {sentences: [...]}}", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("tfvtg decompose: --concurrency must be at least 1", file=sys.stderr)
        return 2
    out_path = Path(args.out)
    done: dict = {}
    if out_path.exists():
        try:
            done = json.loads(out_path.read_text())
        except ValueError as exc:
            print(f"tfvtg decompose: {out_path} exists but is not valid JSON ({exc}); "
                  "move it away or pick another --out", file=sys.stderr)
            return 2
    try:
        decomposer = OpenAIDecomposer(model=args.model, base_url=args.base_url, timeout=args.timeout,
                                      max_retries=args.max_retries, cache=args.cache or True)
    except ValueError as exc:
        print(f"tfvtg decompose: {exc}", file=sys.stderr)
        return 2
    result: dict = {}
    pending: list[tuple[str, int, str]] = []
    for vid, ann in data.items():
        sentences = ann.get("sentences") if isinstance(ann, dict) else None
        if not isinstance(sentences, list):
            print(f"tfvtg decompose: skipping {vid!r}: no 'sentences' list", file=sys.stderr)
            continue
        prev = done.get(vid) if isinstance(done.get(vid), dict) else {}
        # Resume answer by answer; answers to sentences that have since changed are dropped.
        kept = prev.get("response") if prev.get("sentences") == sentences else None
        responses = list(kept) if isinstance(kept, list) else []
        responses = (responses + [None] * len(sentences))[:len(sentences)]
        result[vid] = {**ann, "response": responses}
        for i, sentence in enumerate(sentences):
            if not _needs_answer(responses[i]):
                continue
            if isinstance(sentence, str) and sentence.strip():
                pending.append((vid, i, sentence))
            else:
                print(f"tfvtg decompose: {vid!r} sentence {i} is empty; left unanswered", file=sys.stderr)

    last_write = [time.monotonic()]
    fallbacks = [0]

    def on_result(index: int, dec) -> None:
        vid, i, _ = pending[index]
        result[vid]["response"][i] = dec.to_tfvtg()
        fallbacks[0] += dec.fallback
        if time.monotonic() - last_write[0] > 10.0:  # an interrupted run keeps its answers
            write_json(out_path, result, indent=None)
            last_write[0] = time.monotonic()

    try:
        decomposer.decompose_many([s for _, _, s in pending], concurrency=args.concurrency,
                                  progress=not args.no_progress, on_result=on_result)
    except DecompositionError as exc:
        print(f"tfvtg decompose: {exc}. Answers so far are in {out_path}; run again to continue.",
              file=sys.stderr)
        return 1
    finally:
        write_json(out_path, result, indent=None)
    total = sum(len(v["response"]) for v in result.values())
    print(f"decomposed {len(pending)} queries ({fallbacks[0]} fell back to the query alone; a re-run retries "
          f"them), kept {total - len(pending)}; wrote {out_path}")
    return 0
