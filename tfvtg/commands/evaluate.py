"""``tfvtg eval``: reproduce a benchmark table."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

_PROG = "tfvtg eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate on Charades-STA, ActivityNet Captions or QVHighlights",
        description="Ground every query of a dataset, append per-query results to --out as they come "
                    "(a re-run with the same settings resumes; other settings need --overwrite), and print "
                    "R1/R5@0.3/0.5/0.7 and mIoU (and QVHighlights' MR/HL metrics). Exit status 1 when some "
                    "queries failed, 2 when the run could not start.")
    p.add_argument("--dataset", required=True,
                   help="charades, activitynet, qvhighlights, an alias (charades-sta, anet, qvh) or a split: "
                        "charades-ood-1 / -ood-2 (10 / 15 s of noise before each video), activitynet-ood-1 / "
                        "-ood-2 (30 / 60 s)")
    p.add_argument("--annotations", required=True, help="annotation file (JSON, Charades-STA .txt or JSONL)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="folder of <video>.npy feature files")
    src.add_argument("--videos", help="folder of video files (encoded with --encoder and cached; plug-in "
                                      "methods read them directly)")
    p.add_argument("--method", default="tfvtg",
                   help="tfvtg (default), tag (preset tag-<dataset>), or an installed plug-in such as numpro "
                        "(entry-point group tfvtg.methods; needs --videos)")
    p.add_argument("--mllm", default=None, help="plug-in methods: the video MLLM, a hub name or local directory")
    llm = p.add_mutually_exclusive_group()
    llm.add_argument("--llm-outputs", help="TFVTG llm_outputs.json with decompositions")
    llm.add_argument("--model", help="decompose queries with this LLM (OpenAI-compatible; see --base-url)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server for --model, or for a plug-in's --mllm")
    p.add_argument("--encoder", "--blip2", dest="encoder", default=None,
                   help="image-text encoder: a registered name (blip2-coco) or a local BLIP-2 directory; with "
                        "--features only its text side is used (default: blip2-coco, or TFVTG_BLIP2_MODEL)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 dynamic quantization of the encoder on the CPU (several times faster, close curves)")
    p.add_argument("--config", "--preset", dest="config", default=None,
                   help="grounding preset (default: the dataset's)")
    p.add_argument("--durations", default=None, help="CSV of video durations for Charades-STA .txt annotations")
    p.add_argument("--pad-sec", type=float, default=None,
                   help="seconds of noise features before each video (OOD setting; default: the split's, else 0)")
    p.add_argument("--seed", type=int, default=0, help="noise seed for --pad-sec")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--top-k", type=int, default=10, help="moments kept per query in --out (default: %(default)s)")
    p.add_argument("--out", required=True, help="per-query results, JSON lines (resumed when its settings match)")
    p.add_argument("--overwrite", action="store_true", help="start --out over even if it holds other results")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first malformed annotation entry instead of skipping it")
    p.add_argument("--metrics-json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{_PROG}: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _encoder_advice(exc: BaseException, args: argparse.Namespace) -> str:
    """A model that cannot be loaded, with what to do on the command line."""
    from ..encoders.blip2 import DEFAULT_MODEL

    cause = exc.__cause__
    why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    why = " ".join(why.split())
    if len(why) > 240:
        why = why[:237] + "..."
    which = args.encoder or os.environ.get("TFVTG_BLIP2_MODEL") or f"blip2-coco = {DEFAULT_MODEL}"
    text_only = "With --features only its text side is used, but that still needs the weights. " \
        if args.features else ""
    return (f"cannot load the encoder {which}: {why}. {text_only}Download the model where there is network "
            f"access (hf download {DEFAULT_MODEL} --local-dir /path/blip2), copy it here and pass "
            f"--encoder /path/blip2 (or set TFVTG_BLIP2_MODEL=/path/blip2)")


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"{_PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..errors import ModelUnavailableError, TfvtgError
    from ..eval.records import SettingsMismatchError

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            metrics = _evaluate(args)
        except ModelUnavailableError as exc:
            return _fail(_encoder_advice(exc, args))
        except SettingsMismatchError as exc:
            return _fail(f"{exc.reason}; pass --overwrite to start it over, or choose another --out")
        except (TfvtgError, OSError, ValueError) as exc:
            return _fail(str(exc))
        except Exception as exc:  # a bug: still one line, with what to report
            return _fail(f"unexpected {type(exc).__name__}: {exc} (please report this)")
    from ..io import dumps_strict, write_json

    print(metrics)
    print(dumps_strict(metrics.to_dict()))
    if args.metrics_json:
        write_json(args.metrics_json, metrics.to_dict())
    return 1 if metrics.failed else 0


def _evaluate(args: argparse.Namespace) -> Any:
    from ..eval.methods import BUILTIN_METHODS
    from ..eval.runner import evaluate

    builtin = args.method in BUILTIN_METHODS
    options: dict[str, Any] = {}
    if args.mllm is not None:
        options["mllm"] = args.mllm
    if args.base_url is not None and not builtin:
        options["base_url"] = args.base_url
    decomposer = None
    if args.model:
        from ..llm import OpenAIDecomposer

        decomposer = OpenAIDecomposer(model=args.model, base_url=args.base_url)
    encoder = None
    if builtin:
        from ..encoders import load_encoder

        encoder = load_encoder(args.encoder, **({"quantize": args.quantize} if args.quantize else {}))
    return evaluate(args.dataset, args.annotations, features=args.features, videos=args.videos,
                    method=args.method, method_options=options, llm_outputs=args.llm_outputs,
                    decomposer=decomposer, text_encoder=encoder, config=args.config, out=args.out,
                    overwrite=args.overwrite, pad_sec=args.pad_sec, seed=args.seed, top_k=args.top_k,
                    limit=args.limit, durations=args.durations, strict=args.strict,
                    progress=not args.no_progress)
