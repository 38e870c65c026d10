"""``tfvtg extract VIDEOS... --out DIR``: frame features for many videos."""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

NAMING_HELP = (
    "Each video's features go to DIR/<stem>.npy (TFVTG's layout) with a .json sidecar. When several videos "
    "given share a stem (a/clip.mp4 and b/clip.mp4, or x.avi and x.mp4), or DIR already holds <stem>.npy "
    "made from another file, each of them is named <stem>-<h>.npy instead, h being the first 12 hex digits "
    "of the SHA-256 of the video's absolute path, so no two videos can write the same file.")


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """--encoder NAME_OR_PATH (with --model as an alias), --device, --batch-size."""
    p.add_argument("--encoder", "--model", dest="encoder", default=None, metavar="NAME_OR_PATH",
                   help="encoder: a registry name (e.g. blip2-coco), a model directory or a hub name "
                        "(default: blip2-coco, or TFVTG_BLIP2_MODEL); --model is an alias")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward pass")


def check_ray_address(args: argparse.Namespace) -> str | None:
    """The --ray address, refusing one that is really an input file (``--ray a.mp4`` swallowed a path)."""
    if args.ray and Path(args.ray).exists():
        from ..errors import InvalidInputError

        raise InvalidInputError(f"--ray took {args.ray!r} as the cluster address; put --ray after the paths "
                                "or give the address (e.g. --ray auto)")
    return args.ray or None


def load_cli_encoder(args: argparse.Namespace) -> Any:
    """The encoder named on the command line (see :func:`add_encoder_arguments`)."""
    from ..encoders import load_encoder

    kwargs: dict[str, Any] = {}
    if getattr(args, "device", None):
        kwargs["device"] = args.device
    if getattr(args, "batch_size", None):
        kwargs["batch_size"] = args.batch_size
    return load_encoder(args.encoder, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract", help="extract frame features (BLIP-2 by default) to .npy files",
        description="Decode each video at --fps and write its (T, Q, D) float16 features (BLIP-2: (T, 32, 256) "
                    "Q-Former tokens). " + NAMING_HELP + " Videos already done are skipped; a video that fails "
                    "(unreadable, or so short that it gives fewer than 2 feature frames) is reported and the "
                    "rest go on; temporary files a killed run left in DIR are removed.")
    p.add_argument("videos", nargs="+", help="video files (or directories, searched for video files)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--fps", type=float, default=3.0, help="samples per second (default: %(default)s)")
    add_encoder_arguments(p)
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"], help="video decoder")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and encode on a Ray cluster (ADDRESS, else RAY_ADDRESS, else a local Ray); "
                        "this process writes the files")
    p.add_argument("--actors", type=int, default=None, help="encoder actors on Ray (default: GPUs, else CPUs)")
    p.set_defaults(func=run)


def expand(paths: list[str], suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Files given, with directories replaced by the video files under them (sorted)."""
    from ..video.decode import VIDEO_SUFFIXES

    wanted = suffixes or VIDEO_SUFFIXES
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in wanted))
        else:
            out.append(p)
    return out


def _path_tag(video: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(video))).hexdigest()[:12]


def _made_from(npy: Path, video: Path) -> bool | None:
    """Whether DIR's ``npy`` was extracted from ``video`` (None: no such file)."""
    if not npy.exists():
        return None
    from ..io import read_sidecar

    source = read_sidecar(npy).get("source")
    if not isinstance(source, str):
        return True  # a file of ours without a sidecar source: take it as this video's (older runs)
    return os.path.abspath(source) == os.path.abspath(video)


def output_names(videos: list[Path], out_dir: Path) -> dict[Path, Path]:
    """The feature file of each video (see NAMING_HELP): ``<stem>.npy``
    unless the stem is shared, then ``<stem>-<hash of the absolute path>.npy``."""
    by_stem: dict[str, list[Path]] = {}
    unique: list[Path] = []
    for v in videos:
        if os.path.abspath(v) in {os.path.abspath(u) for u in by_stem.get(v.stem, [])}:
            continue  # the same file given twice
        by_stem.setdefault(v.stem, []).append(v)
        unique.append(v)
    names: dict[Path, Path] = {}
    for stem, group in by_stem.items():
        plain = out_dir / f"{stem}.npy"
        for v in group:
            if len(group) == 1 and _made_from(plain, v) in (None, True):
                names[v] = plain
            else:
                names[v] = out_dir / f"{stem}-{_path_tag(v)}.npy"
    return {v: names[v] for v in unique}


def extract_task(encoder: Any, path: str, *, fps: float, backend: str) -> tuple[Any, float, str | None, str]:
    """Decode and encode one video: (raw (T, Q, D) float16 array, duration in
    seconds, embedding space, model name). Runs here or in a Ray actor."""
    import numpy as np

    from ..core.features import float16_copy

    if callable(getattr(encoder, "encode_video_array", None)):
        raw, info = encoder.encode_video_array(path, fps=fps, backend=backend, progress=False)
        duration = float(info.duration)
    else:
        feats = encoder.encode_video(path, fps=fps)
        raw, duration = float16_copy(np.asarray(feats.tokens)), float(feats.duration)
    if raw.shape[0] < 2:
        from ..errors import InvalidInputError

        raise InvalidInputError(
            f"too short: {duration:.2f} s gives {raw.shape[0]} feature frame at {fps:g} fps and grounding needs "
            f"at least 2 (a video of at least {1.5 / fps:.2f} s)")
    return raw, duration, getattr(encoder, "space", None), str(getattr(encoder, "name", type(encoder).__name__))


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..io import remove_orphans, save_npy, write_json

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(out_dir)  # .<name>.npy.*.tmp left by a killed run
    videos = expand(args.videos)
    targets = output_names(videos, out_dir)
    done = skipped = 0
    failed: list[tuple[Path, str]] = []
    todo = []
    for video, target in targets.items():
        if target.exists():
            skipped += 1
        else:
            todo.append(video)
    try:
        encoder = load_cli_encoder(args)
    except (OSError, ValueError, ImportError) as exc:
        print(f"tfvtg extract: {exc}", file=sys.stderr)
        return 2
    from ..library.engines import make_engine

    try:
        engine = make_engine("ray" if args.ray is not None else "local", address=check_ray_address(args),
                             num_actors=args.actors)
    except (OSError, ValueError, ImportError) as exc:
        print(f"tfvtg extract: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=len(todo), unit="video", desc="extract")
    by_name = {str(v): v for v in todo}
    try:
        for name, outcome in engine.run(encoder, list(by_name), extract_task, fps=args.fps, backend=args.backend):
            video = by_name[name]
            bar.update(1)
            if isinstance(outcome, str):
                failed.append((video, outcome))
                tqdm.write(f"failed: {video}: {outcome}", file=sys.stderr)
                continue
            raw, duration, space, model = outcome
            target = targets[video]
            write_json(target.with_suffix(".json"), {"duration": duration, "fps": args.fps, "source": str(video),
                                                     "encoder": space, "model": model})
            save_npy(target, raw)
            done += 1
    except (OSError, ImportError) as exc:  # the model or an extra cannot be loaded: no video can succeed
        bar.close()
        print(f"tfvtg extract: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()
    bar.close()
    print(f"done {done}, skipped {skipped}, failed {len(failed)}")
    for video, why in failed:
        print(f"  failed: {video}: {why}", file=sys.stderr)
    return 1 if failed else 0
