"""``tfvtg ground VIDEO QUERY``: ground one sentence in one video."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ground", help="find the moment a sentence describes in a video",
        description="Ground QUERY in VIDEO (a video file, or a TFVTG .npy feature file with --duration) "
                    "and print the ranked moments in seconds.")
    p.add_argument("video", help="video file, or (T, 32, 256) .npy features")
    p.add_argument("query", help="the sentence to ground")
    p.add_argument("--preset", default="default",
                   help="charades | activitynet | qvhighlights | default (default: %(default)s)")
    p.add_argument("--duration", type=float, default=None,
                   help="video length in seconds, for .npy features (default: frames / 3 fps)")
    p.add_argument("--decomposition", default=None,
                   help="JSON file with a TFVTG-format LLM decomposition of the query")
    p.add_argument("--model", default=None, help="BLIP-2 model name or local directory")
    p.add_argument("--top", type=int, default=5, help="how many moments to print (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..api import ground

    decomposition = None
    if args.decomposition:
        decomposition = json.loads(Path(args.decomposition).read_text())
    video: object = args.video
    encoder = None
    if args.model:
        from ..encoders.blip2 import Blip2Encoder

        encoder = Blip2Encoder(args.model)
    if str(args.video).endswith(".npy"):
        from ..core.features import VideoFeatures

        video = VideoFeatures.load(args.video, duration=args.duration)
    try:
        result = ground(video, args.query, text_encoder=encoder, config=args.preset, decomposition=decomposition)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"tfvtg ground: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{args.query!r} in {args.video} ({result.duration:.2f} s):")
        for i, m in enumerate(result.moments[: args.top]):
            print(f"  {i + 1}. {m.start:8.2f} s - {m.end:8.2f} s   score {m.score:.3f}")
    return 0
