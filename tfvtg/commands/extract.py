"""``tfvtg extract VIDEOS... --out DIR``: BLIP-2 features for many videos."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract", help="extract BLIP-2 frame features to .npy files",
        description="Decode each video at --fps and write its (T, 32, 256) float16 BLIP-2 Q-Former features "
                    "to DIR/<video name>.npy (TFVTG's layout) with a .json sidecar. Videos already done are "
                    "skipped; a video that fails is reported and the rest go on.")
    p.add_argument("videos", nargs="+", help="video files (or directories, searched for video files)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--fps", type=float, default=3.0, help="samples per second (default: %(default)s)")
    p.add_argument("--model", default=None, help="BLIP-2 hub name or local directory")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward pass")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"], help="video decoder")
    p.set_defaults(func=run)




def expand(paths: list[str]) -> list[Path]:
    from ..video.decode import VIDEO_SUFFIXES

    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES))
        else:
            out.append(p)
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..encoders.blip2 import Blip2Encoder
    from ..io import save_npy, write_json

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = expand(args.videos)
    encoder = Blip2Encoder(args.model, device=args.device, batch_size=args.batch_size)
    done = skipped = 0
    failed: list[tuple[Path, str]] = []
    bar = tqdm(videos, unit="video", desc="extract")
    for video in bar:
        target = out_dir / f"{video.stem}.npy"
        if target.exists():
            skipped += 1
            continue
        bar.set_postfix_str(video.name)
        try:
            raw, info = encoder.encode_video_array(video, fps=args.fps, backend=args.backend, progress=True)
        except Exception as exc:  # one bad video never stops the batch
            if isinstance(exc, OSError) and type(exc).__name__ == "ModelUnavailableError":
                print(f"tfvtg extract: {exc}", file=sys.stderr)
                return 2
            failed.append((video, f"{type(exc).__name__}: {exc}"))
            tqdm.write(f"failed: {video}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        write_json(target.with_suffix(".json"), {"duration": info.duration, "fps": args.fps,
                                                 "source": str(video), "model": encoder.model_name})
        save_npy(target, raw)
        done += 1
    bar.close()
    print(f"done {done}, skipped {skipped}, failed {len(failed)}")
    for video, why in failed:
        print(f"  failed: {video}: {why}", file=sys.stderr)
    return 1 if failed else 0
