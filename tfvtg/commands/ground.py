"""``tfvtg ground VIDEO QUERY``: ground one sentence in one video."""
from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

_DEFAULT_CHECKPOINT = "Salesforce/blip2-itm-vit-g-coco"
# where a library message starts its advice (Python advice: Blip2Encoder(model=...)),
# replaced by command-line advice here
_ADVICE = re.compile(r"[.;,]\s+(?:pass|download|set|use|give)\b", re.IGNORECASE)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ground", help="find the moment a sentence describes in a video",
        description="Ground QUERY in VIDEO (a video file, or a TFVTG .npy feature file with --duration) "
                    "and print the ranked moments in seconds. An LLM configured through the environment "
                    "(OPENAI_API_KEY or TFVTG_LLM_BASE_URL) decomposes the query unless --no-llm; when it "
                    "fails, grounding goes on with the query alone and says so.")
    p.add_argument("video", help="video file, or (T, 32, 256) .npy features")
    p.add_argument("query", help="the sentence to ground")
    p.add_argument("--preset", default="default",
                   help="charades | activitynet | qvhighlights | default (default: %(default)s)")
    p.add_argument("--duration", type=float, default=None,
                   help="video length in seconds, for .npy features (default: the sidecar's, else frames / 3 fps)")
    p.add_argument("--decomposition", default=None,
                   help="JSON file with a TFVTG-format LLM decomposition of the query (no LLM is asked)")
    p.add_argument("--encoder", "--model", dest="encoder", default=None, metavar="NAME_OR_PATH",
                   help="image-text encoder: a registered name (blip2-coco, ...), a local checkpoint directory "
                        "or a hub name (default: blip2-coco, or TFVTG_BLIP2_MODEL); --model is an alias")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 dynamic quantization of the encoder on the CPU (several times faster, close curves)")
    p.add_argument("--no-llm", action="store_true", help="never ask an LLM; ground with the query alone")
    p.add_argument("--top", type=int, default=5, help="how many moments to print (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as (strict) JSON")
    p.set_defaults(func=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"tfvtg ground: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _cli_model_advice(exc: BaseException, encoder: str | None) -> str:
    """A model that cannot be loaded, with command-line advice instead of the
    library's Python advice."""
    text = " ".join(str(exc).split())
    advice = _ADVICE.search(text)
    if advice is not None:
        text = text[: advice.start()]
    text = text.rstrip(" .;,") + "."
    which = f"--encoder {encoder}" if encoder else "the default encoder"
    return (f"cannot load {which}: {text} Pass --encoder PATH with a local copy of {_DEFAULT_CHECKPOINT} "
            f"(fetch it where there is network with `hf download {_DEFAULT_CHECKPOINT} --local-dir PATH`), "
            "a registered encoder name, or set TFVTG_BLIP2_MODEL=PATH.")


def _read_decomposition(path: Path) -> Any:
    from ..core.decomposition import Decomposition
    from ..errors import InvalidInputError, MissingFileError

    if not path.is_file():
        raise MissingFileError(f"--decomposition file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InvalidInputError(f"--decomposition {path} is nested too deeply to be a decomposition") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"--decomposition {path} is not JSON ({exc})") from None
    try:
        return Decomposition.from_tfvtg(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInputError(
            f"--decomposition {path} is not a TFVTG decomposition ({exc}); expected "
            '{"relationship": "single-query" | "simultaneously" | "sequentially", '
            '"query_json": [{"descriptions": [...]}, ...]}') from None


def run(args: argparse.Namespace) -> int:
    from ..errors import IncompatibleModelError, ModelUnavailableError, TfvtgError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code = _run(args)
            finally:
                for w in caught:  # one line each, e.g. "the LLM could not decompose the query (...)"
                    if not issubclass(w.category, DeprecationWarning):
                        print(f"tfvtg ground: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        return code
    except (ModelUnavailableError, IncompatibleModelError) as exc:
        return _fail(_cli_model_advice(exc, args.encoder))
    except (TfvtgError, ValueError, OSError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # never a traceback; this is a bug to report
        return _fail(f"unexpected error ({type(exc).__name__}: {exc}); please report it", 1)


def _run(args: argparse.Namespace) -> int:
    from ..api import ground
    from ..core.decomposition import sanitize_text
    from ..core.features import VideoFeatures
    from ..errors import MissingFileError
    from ..io import dumps_strict

    query = sanitize_text(args.query)  # undecodable argv bytes arrive as lone surrogates
    if not query.strip():
        return _fail("the query is empty; give the sentence to ground")
    if args.top < 1:
        return _fail("--top must be at least 1")
    decomposition = _read_decomposition(Path(args.decomposition)) if args.decomposition else None
    path = Path(args.video)
    if not path.exists():
        what = "feature file" if path.suffix.lower() == ".npy" else "video file"
        raise MissingFileError(f"{what} not found: {path}")
    if path.is_dir():
        return _fail(f"{path} is a folder; give one video file or .npy feature file")
    video: VideoFeatures | Path = path
    if path.suffix.lower() == ".npy":
        video = VideoFeatures.load(path, duration=args.duration)
    encoder = None
    if args.encoder or args.quantize:
        from ..encoders import load_encoder

        encoder = load_encoder(args.encoder, **({"quantize": args.quantize} if args.quantize else {}))
    result = ground(video, query, text_encoder=encoder, config=args.preset, decomposition=decomposition,
                    use_llm=not args.no_llm)
    if args.json:
        print(dumps_strict(result.to_dict(), indent=2))
    else:
        note = " (no usable LLM decomposition: grounded with the query alone)" if (
            result.decomposition is not None and result.decomposition.fallback) else ""
        print(f"{query!r} in {sanitize_text(str(args.video))} ({result.duration:.2f} s){note}:")
        for i, m in enumerate(result.moments[: args.top]):
            print(f"  {i + 1}. {m.start:8.2f} s - {m.end:8.2f} s   score {m.score:.3f}")
    return 0
