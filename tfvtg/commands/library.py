"""``tfvtg library DIR``: what is in a library."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "library", help="show what is in a library",
        description="Print the library's videos, hours of video, encoder and size on disk.")
    p.add_argument("library", metavar="DIR", help="the library directory")
    p.add_argument("--list", action="store_true", help="also list every video (id, duration, source)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def run(args: argparse.Namespace) -> int:
    from ..errors import TfvtgError
    from ..io import dumps_strict
    from .index import existing_library

    try:
        lib = existing_library(args.library, "library")
        stats = lib.stats()
        records = list(lib.iter_records()) if args.list else []
        lib.close()
    except (TfvtgError, OSError, ValueError) as exc:
        print(f"tfvtg library: {exc}", file=sys.stderr)
        return 2
    if args.json:
        if args.list:
            stats["list"] = [{"id": r.id, "duration": r.duration, "fps": r.fps, "frames": r.frames,
                              "source": r.source} for r in records]
        print(dumps_strict(stats, indent=2))
        return 0
    print(f"library   {stats['path']}")
    print(f"videos    {stats['videos']}")
    print(f"hours     {stats['hours']:.2f} ({stats['frames']} feature frames at {stats['fps']:g} fps)")
    print(f"encoder   {stats['encoder'] or '(unknown: pass --encoder when searching)'}"
          f"{'  space ' + stats['space'] if stats['space'] else ''}")
    ratio = f" (1/{1 / stats['coarse_ratio']:.0f} of the features)" if stats["coarse_ratio"] else ""
    print(f"on disk   {_size(stats['bytes'])}: features {_size(stats['feature_bytes'])}, "
          f"catalogue {_size(stats['catalogue_bytes'])} incl. coarse index {_size(stats['coarse_index_bytes'])}{ratio}")
    for r in records:
        print(f"  {r.id}  {r.duration:8.1f} s  {r.source or ''}")
    return 0
