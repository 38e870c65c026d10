"""``tfvtg decompose ANNOTATIONS --out FILE``: LLM decompositions for a dataset."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

_WRITE_EVERY_S = 2.0  # an interrupted run keeps everything answered up to this long ago


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompose", help="decompose every query of a dataset with an LLM",
        description="Read TFVTG-style annotations ({video: {duration, timestamps, sentences}}) and write the "
                    "same file with a 'response' list per video (TFVTG's llm_outputs.json format). Resumable: "
                    "answers already in --out are kept (empty ones and fallbacks are asked again), every "
                    "answer is cached, and --out is rewritten (atomically) every few seconds. Exits 1 when "
                    "any query could not be decomposed because the server failed or refused.")
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


def _fail(message: str, code: int = 2) -> int:
    print(f"tfvtg decompose: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _needs_answer(response: object) -> bool:
    # TFVTG writes {} for a failed query; ours are None (never asked) or fallbacks.
    return not isinstance(response, dict) or not response or bool(response.get("fallback"))


def _read_json(path: Path, what: str) -> Any:
    from ..errors import InvalidInputError, MissingFileError

    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InvalidInputError(f"{what} {path} is nested too deeply to be annotations") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {what} {path} as JSON ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from ..errors import TfvtgError

    try:
        return _run(args)
    except TfvtgError as exc:
        return _fail(str(exc))
    except OSError as exc:  # e.g. --out cannot be written
        return _fail(str(exc), 1)


def _run(args: argparse.Namespace) -> int:
    from ..core.decomposition import sanitize_text
    from ..errors import DecompositionError, LLMConfigurationError, TfvtgError
    from ..io import write_json
    from ..llm import OpenAIDecomposer

    data = _read_json(Path(args.annotations), "annotations")
    if not isinstance(data, dict):
        return _fail("annotations must be a JSON object {video: {sentences: [...]}}")
    if args.concurrency < 1:
        return _fail("--concurrency must be at least 1")
    out_path = Path(args.out)
    done: Any = {}
    if out_path.exists():
        try:
            done = _read_json(out_path, "--out file")
        except TfvtgError as exc:
            return _fail(f"{exc}; move it away or pick another --out")
        if not isinstance(done, dict):
            return _fail(f"{out_path} exists but is not an llm_outputs.json object; move it away or pick another --out")
    if not (args.base_url or os.environ.get("OPENAI_API_KEY", "").strip() or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("TFVTG_LLM_BASE_URL")):
        return _fail("no API key: set OPENAI_API_KEY, or give --base-url URL for a local server that needs none")
    decomposer = OpenAIDecomposer(model=args.model, base_url=args.base_url, timeout=args.timeout,
                                  max_retries=args.max_retries, cache=args.cache or True)

    # Text is sanitized at the door: a lone surrogate in a sentence or a
    # video id becomes U+FFFD here, so that what is sent, cached, written and
    # compared on resume is one and the same string.
    result: dict[str, Any] = {}
    pending: list[tuple[str, int, str]] = []
    for raw_vid, ann in data.items():
        vid = sanitize_text(str(raw_vid))
        sentences = ann.get("sentences") if isinstance(ann, dict) else None
        if not isinstance(sentences, list):
            print(f"tfvtg decompose: skipping {vid!r}: no 'sentences' list", file=sys.stderr)
            continue
        sentences = [sanitize_text(s) if isinstance(s, str) else s for s in sentences]
        prev = done.get(vid) if isinstance(done.get(vid), dict) else {}
        # Resume answer by answer; answers to sentences that have since changed are dropped.
        kept = prev.get("response") if prev.get("sentences") == sentences else None
        responses = list(kept) if isinstance(kept, list) else []
        responses = (responses + [None] * len(sentences))[:len(sentences)]
        result[vid] = {**ann, "sentences": sentences, "response": responses}
        for i, sentence in enumerate(sentences):
            if not _needs_answer(responses[i]):
                continue
            if isinstance(sentence, str) and sentence.strip():
                pending.append((vid, i, sentence))
            else:
                print(f"tfvtg decompose: {vid!r} sentence {i} is empty; left unanswered", file=sys.stderr)
    write_json(out_path, result, indent=None)  # an unwritable --out fails before any request is paid for

    last_write = [time.monotonic()]
    fallbacks: set[int] = set()
    failed: dict[int, DecompositionError] = {}

    def on_result(index: int, dec: Any) -> None:
        vid, i, _ = pending[index]
        result[vid]["response"][i] = dec.to_tfvtg()
        if dec.fallback:
            fallbacks.add(index)
        if time.monotonic() - last_write[0] >= _WRITE_EVERY_S:
            write_json(out_path, result, indent=None)
            last_write[0] = time.monotonic()

    def on_failure(index: int, error: DecompositionError) -> None:
        failed[index] = error

    refused: LLMConfigurationError | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decomposer.decompose_many([s for _, _, s in pending], concurrency=args.concurrency,
                                      progress=not args.no_progress, on_result=on_result,
                                      videos=[v for v, _, _ in pending], on_failure=on_failure)
        except LLMConfigurationError as exc:
            refused = exc
        finally:
            write_json(out_path, result, indent=None)
    for w in caught:
        if not issubclass(w.category, DeprecationWarning):
            print(f"tfvtg decompose: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
    if refused is not None:
        return _fail(f"{refused}. Answers so far are in {out_path}; run again to continue.", 1)
    total = sum(len(v["response"]) for v in result.values())
    unusable = len(fallbacks) - len(failed)
    print(f"decomposed {len(pending) - len(fallbacks)} of {len(pending)} queries ({unusable} with unusable "
          f"replies and {len(failed)} failed requests fell back to the query alone; a re-run retries them), "
          f"kept {total - len(pending)}; wrote {out_path}")
    if failed:
        first = failed[min(failed)]
        return _fail(f"{len(failed)} of {len(pending)} queries could not be decomposed because requests failed "
                     f"(first: {first}); run again to retry them", 1)
    return 0
