"""``tfvtg decompose``: LLM decompositions for a whole annotation file.

Reads TFVTG/ActivityNet-style annotations ``{video_id: {duration, timestamps,
sentences}}`` and writes the same dict with a ``response`` list per video, one
decomposition per sentence, in TFVTG's ``llm_outputs.json`` format.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompose",
        help="decompose every annotated sentence with an LLM (writes TFVTG's llm_outputs.json format)",
        description=(
            "Ask an OpenAI-compatible LLM to split each sentence of ANNOTATIONS into sub-events. "
            "The API key is read from OPENAI_API_KEY. Resumable: entries already in --out are kept, "
            "and answers are cached, so a re-run only asks for what is missing."
        ),
    )
    p.add_argument("annotations", metavar="ANNOTATIONS",
                   help="JSON file {video_id: {duration, timestamps, sentences}}")
    p.add_argument("--out", required=True, metavar="FILE", help="output JSON (TFVTG llm_outputs.json format)")
    p.add_argument("--model", default=None, help="model name (default: $TFVTG_LLM_MODEL or gpt-4o-mini)")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server URL, e.g. http://localhost:8000/v1 (default: OpenAI)")
    p.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests in flight (default 8)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--max-retries", type=int, default=3, help="client retries on 429/5xx/timeouts (default 3)")
    p.add_argument("--cache", default="default", metavar="PATH",
                   help="sqlite cache file (default ~/.cache/tfvtg/llm_cache.sqlite); 'none' disables it")
    p.add_argument("--import-tfvtg", default=None, metavar="FILE",
                   help="first import an existing TFVTG llm_outputs.json into the cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load_json(path: str, what: str) -> dict:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"tfvtg decompose: {what} file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"tfvtg decompose: {what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"tfvtg decompose: {what} file {path} must hold a JSON object keyed by video id")
    return data


def _write_atomic(path: str, data: dict) -> None:
    import json
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".decompose-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _needs_work(entry: object) -> bool:
    # TFVTG leaves {} for failed queries; our fallbacks are retried as well.
    return not entry or not isinstance(entry, dict) or bool(entry.get("fallback"))


def run(args: argparse.Namespace) -> int:
    from ..llm import DEFAULT_MODEL, DecompositionError, OpenAIDecomposer

    if args.concurrency < 1:
        print("tfvtg decompose: --concurrency must be >= 1", file=sys.stderr)
        return 2
    annotations = _load_json(args.annotations, "annotations")
    out = _load_json(args.out, "output") if os.path.exists(args.out) else {}

    todo: list[tuple[str, int, str]] = []
    for vid, ann in annotations.items():
        if not isinstance(ann, dict) or not isinstance(ann.get("sentences"), list):
            print(f"tfvtg decompose: skipping {vid!r}: no 'sentences' list", file=sys.stderr)
            continue
        entry = dict(ann)
        previous = out.get(vid) if isinstance(out.get(vid), dict) else {}
        responses = list(previous.get("response") or [])
        if previous.get("sentences") != ann["sentences"]:
            responses = []  # the annotation changed: old answers no longer line up
        responses = (responses + [{}] * len(ann["sentences"]))[:len(ann["sentences"])]
        entry["response"] = responses
        out[vid] = entry
        for i, sentence in enumerate(ann["sentences"]):
            if _needs_work(responses[i]):
                if isinstance(sentence, str) and sentence.strip():
                    todo.append((vid, i, sentence))
                else:
                    print(f"tfvtg decompose: {vid!r} sentence {i} is empty; left as {{}}", file=sys.stderr)

    try:
        decomposer = OpenAIDecomposer(
            model=args.model or os.environ.get("TFVTG_LLM_MODEL") or DEFAULT_MODEL,
            base_url=args.base_url or os.environ.get("TFVTG_LLM_BASE_URL"),
            cache=None if str(args.cache).lower() == "none" else args.cache,
            timeout=args.timeout, max_retries=args.max_retries,
        )
    except ValueError as exc:
        print(f"tfvtg decompose: {exc}", file=sys.stderr)
        return 2
    if args.import_tfvtg:
        n = decomposer.import_tfvtg_outputs(args.import_tfvtg)
        print(f"imported {n} decompositions from {args.import_tfvtg} into the cache", file=sys.stderr)

    state = {"last_write": time.monotonic(), "fallbacks": 0}

    def on_result(index: int, decomposition) -> None:
        vid, i, _ = todo[index]
        out[vid]["response"][i] = decomposition.to_tfvtg()
        state["fallbacks"] += int(decomposition.fallback)
        # Write periodically so an interrupted run keeps its progress.
        if time.monotonic() - state["last_write"] > 5.0:
            _write_atomic(args.out, out)
            state["last_write"] = time.monotonic()

    try:
        decomposer.decompose_many([s for _, _, s in todo], concurrency=args.concurrency,
                                  progress=not args.no_progress, on_result=on_result)
    except DecompositionError as exc:
        print(f"tfvtg decompose: {exc}; answers so far are in {args.out}, re-run to continue", file=sys.stderr)
        return 1
    finally:
        _write_atomic(args.out, out)
    total = sum(len(v.get("response", [])) for v in out.values() if isinstance(v, dict))
    print(f"wrote {args.out}: {total} sentences, {len(todo)} asked this run, "
          f"{state['fallbacks']} fell back to the query itself (re-run to retry them)", file=sys.stderr)
    return 0
