"""``tfvtg search DIR QUERY``: find moments across a library."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .extract import add_encoder_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="find the moments a sentence describes across a library",
        description="Search the library DIR for QUERY: the coarse index picks candidate videos, TFVTG grounds "
                    "the query in each, and the moments are ranked by their mean query-frame similarity "
                    "(comparable across videos). With --cut-dir each hit is also written as an MP4 clip.")
    p.add_argument("library", metavar="DIR", help="the library directory")
    p.add_argument("query", help="the sentence to search for")
    p.add_argument("--top", type=int, default=10, help="hits to show (default: %(default)s)")
    p.add_argument("--candidates", type=int, default=None,
                   help="videos the fine stage grounds (default: max(2 * top, 20))")
    p.add_argument("--per-video", type=int, default=3, help="at most this many hits per video (default: %(default)s)")
    p.add_argument("--preset", default="default", help="grounding preset (default: %(default)s)")
    p.add_argument("--decomposition", default=None, help="JSON file with a TFVTG-format LLM decomposition of the query")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.add_argument("--cut-dir", default=None, metavar="DIR", help="write each hit as an MP4 clip into DIR")
    p.add_argument("--pad", type=float, default=1.0, help="seconds of padding around each clip (default: %(default)s)")
    add_encoder_arguments(p)
    p.set_defaults(func=run)


def _clip_name(rank: int, hit) -> str:
    video = re.sub(r"[^A-Za-z0-9._-]+", "_", hit.video)[:80]
    return f"{rank:02d}-{video}-{hit.start:.1f}-{hit.end:.1f}.mp4"


def run(args: argparse.Namespace) -> int:
    from ..errors import TfvtgError
    from ..io import dumps_strict
    from .extract import load_cli_encoder
    from .index import existing_library

    for flag, value in (("--top", args.top), ("--candidates", args.candidates), ("--per-video", args.per_video)):
        if value is not None and value < 1:  # named as the command line names them, not as lib.search does
            print(f"tfvtg search: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    try:
        lib = existing_library(args.library, "search")
        lib.config = args.preset
        if args.encoder:
            from ..library import Library

            lib.close()
            lib = Library(args.library, encoder=load_cli_encoder(args), config=args.preset)
        decomposition = json.loads(Path(args.decomposition).read_text()) if args.decomposition else None
        hits = lib.search(args.query, top_k=args.top, candidates=args.candidates, per_video=args.per_video,
                          decomposition=decomposition)
    except (TfvtgError, OSError, ValueError, ImportError) as exc:
        print(f"tfvtg search: {exc}", file=sys.stderr)
        return 2
    failed = 0
    clips: list[dict | None] = []
    if args.cut_dir:
        for rank, hit in enumerate(hits, 1):
            try:
                clip = lib.cut(hit, Path(args.cut_dir) / _clip_name(rank, hit), pad=args.pad)
                clips.append({"path": clip.path, "start": clip.start, "end": clip.end, "method": clip.method})
            except (TfvtgError, OSError, ValueError) as exc:
                failed += 1
                clips.append(None)
                print(f"tfvtg search: no clip for hit {rank} ({hit.video}): {exc}", file=sys.stderr)
    lib.close()
    if args.json:
        rows = []
        for i, hit in enumerate(hits):
            row = hit.to_dict()
            if args.cut_dir:
                row["clip"] = clips[i]
            rows.append(row)
        print(dumps_strict({"query": args.query, "library": args.library, "hits": rows, "note": hits.note,
                            "candidates": hits.candidates}, indent=2))
    else:
        if hits.note:
            print(hits.note, file=sys.stderr)
        if hits:
            print(f"{args.query!r} in {args.library} ({hits.candidates} videos grounded):")
        for i, hit in enumerate(hits):
            where = f"  {hit.source}" if hit.source else ""
            line = f"  {i + 1:2d}. {hit.video}  {hit.start:8.2f} s - {hit.end:8.2f} s   score {hit.score:.3f}{where}"
            clip = clips[i] if args.cut_dir else None
            if clip:
                line += f"\n      clip: {clip['path']} ({clip['method']})"
            print(line)
    return 1 if failed else 0
