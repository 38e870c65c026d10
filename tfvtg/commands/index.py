"""``tfvtg index PATHS... --library DIR``: add videos (or feature files) to a library."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .extract import add_encoder_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index", help="add videos to a searchable library",
        description="Decode, encode and store each video in the library DIR (created if missing), so that "
                    "`tfvtg search DIR QUERY` finds moments across all of them. Videos already in the library "
                    "(same content and fps) are skipped; one that cannot be read is reported and the rest go on. "
                    ".npy feature files (from `tfvtg extract`) are stored as they are. Ends with done/skipped/"
                    "failed counts; exits 1 when any failed.")
    p.add_argument("paths", nargs="+", help="video files, .npy feature files, or directories of videos")
    p.add_argument("--library", "-l", required=True, metavar="DIR", help="the library directory")
    p.add_argument("--fps", type=float, default=None, help="feature frames per second (default: the library's, else 3)")
    add_encoder_arguments(p)
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and encode on a Ray cluster (ADDRESS, else RAY_ADDRESS, else a local Ray); "
                        "this process alone writes the library")
    p.add_argument("--actors", type=int, default=None, help="encoder actors on Ray (default: GPUs, else CPUs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..errors import TfvtgError
    from ..library import AddReport, Library
    from .extract import check_ray_address, expand, load_cli_encoder

    try:
        address = check_ray_address(args)
    except TfvtgError as exc:
        print(f"tfvtg index: {exc}", file=sys.stderr)
        return 2
    paths = expand(args.paths)
    features = [p for p in paths if p.suffix.lower() == ".npy"]
    videos = [p for p in paths if p.suffix.lower() != ".npy"]
    try:
        encoder = load_cli_encoder(args) if (args.encoder or videos) else None
        lib = Library(args.library, encoder=encoder, fps=args.fps)
    except (TfvtgError, OSError, ValueError, ImportError) as exc:
        print(f"tfvtg index: {exc}", file=sys.stderr)
        return 2
    report = AddReport()
    try:
        for f in tqdm(features, unit="file", desc="features", disable=not features):
            try:
                before = len(lib)
                vid = lib.add_feature_file(f)
                (report.done.append(vid) if len(lib) > before else report.skipped.append(str(f)))
            except (TfvtgError, OSError, ValueError) as exc:
                report.failed.append((str(f), f"{type(exc).__name__}: {exc}"))
                tqdm.write(f"failed: {f}: {exc}", file=sys.stderr)
        if videos:
            engine = "ray" if args.ray is not None else "local"
            part = lib.add_many([str(v) for v in videos], engine=engine, progress=True, address=address,
                                num_actors=args.actors)
            report.done += part.done
            report.skipped += part.skipped
            report.failed += part.failed
    except (TfvtgError, OSError, ImportError) as exc:  # the model or Ray cannot be used: nothing can succeed
        print(f"tfvtg index: {exc}", file=sys.stderr)
        return 2
    finally:
        lib.close()
    print(report)
    for path, why in report.failed:
        print(f"  failed: {path}: {why}", file=sys.stderr)
    return 1 if report.failed else 0


def existing_library(directory: str, command: str):
    """Open a library that must exist already (search and library never create one)."""
    from ..library import Library

    path = Path(directory)
    if not (path / "library.json").exists():
        from ..errors import MissingFileError

        raise MissingFileError(f"no tfvtg library at {path}; build one with `tfvtg index VIDEOS --library {path}`")
    return Library(path)
