"""NumPro speed: painting numbers on and tiling 600 frames (a 10-minute video
at 1 fps), and the library time the MLLM ensemble adds to a query.

    python benchmarks/bench_numpro.py [--repeats 5]

Each figure is the best of ``--repeats`` runs (the machine is shared and
noisy); the naive way is measured beside ours on the same frames.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tfvtg and numpro, not an installed copy


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pil_tiles(frames: np.ndarray, times: np.ndarray, rows: int, cols: int, tile: tuple[int, int]) -> list:
    """The naive way, as T2SGrid's preprocessing does it: PIL resize and
    paste per frame, PIL text per caption."""
    from PIL import Image, ImageDraw

    th, tw = tile
    cap = max(12, round(0.14 * th))
    per = rows * cols
    grids = []
    for s in range(0, len(frames), per):
        canvas = Image.new("RGB", (cols * tw, rows * (th + cap)))
        draw = ImageDraw.Draw(canvas)
        for slot, k in enumerate(range(s, min(s + per, len(frames)))):
            r, c = divmod(slot, cols)
            canvas.paste(Image.fromarray(frames[k]).resize((tw, th), Image.Resampling.BILINEAR), (c * tw, r * (th + cap)))
            draw.text((c * tw + 2, r * (th + cap) + th), f"{k} | {times[k]:.1f}s", fill=(255, 255, 255))
        grids.append(np.asarray(canvas))
    return grids


def bench_layouts(repeats: int) -> None:
    import numpro

    rng = np.random.default_rng(0)
    times = np.arange(600, dtype=np.float64)
    for h, w, big in ((336, 596, True), (720, 1280, False)):
        frames = rng.integers(0, 255, (600, h, w, 3), dtype=np.uint8)
        numpro.number_frames(frames[:2])
        numpro.tile_frames(frames[:24], times[:24])  # numba compile (cached on disk) and glyph warm-up
        print(f"600 frames of {w}x{h} (a 10-minute video at 1 fps)")
        paint = best_of(functools.partial(numpro.number_frames, frames, inplace=True), repeats)
        print(f"  paint numbers (frames layout), in place: {paint * 1e3:7.1f} ms")
        cases = [("tiles for ~16k Qwen2-VL tokens in all", dict(max_pixels=170_000))]
        if big:
            cases.append(("T2SGrid's 336-px tiles, Qwen2-VL max_pixels", dict(tile_size=336, max_pixels=1_003_520)))
        for label, kw in cases:
            geo = numpro.grid_geometry(h, w, 3, 4, **kw)
            tiled = best_of(functools.partial(numpro.tile_frames, frames, times, rows=3, cols=4, **kw), repeats)
            naive = best_of(functools.partial(pil_tiles, frames, times, 3, 4, (geo.tile_height, geo.tile_width)),
                            max(1, repeats // 3))
            n_grids = len(geo.starts(600))
            mb = n_grids * geo.pixels * 3 / 2**20
            print(f"  tile 3x4 ({label}): {geo.tile_width}x{geo.tile_height} tiles, {n_grids} grids, {mb:.0f} MB")
            print(f"      numpro.tile_frames (captions included) {tiled * 1e3:7.1f} ms   "
                  f"PIL resize + paste + text (naive) {naive * 1e3:7.1f} ms   paint + tile {(paint + tiled) * 1e3:7.1f} ms")
        del frames


def bench_ensemble(repeats: int, queries: int = 200) -> None:
    import numpro
    from tfvtg import GroundingResult, Moment

    rng = np.random.default_rng(1)
    # a Charades-like video decoded once at 2 fps: 30 s of 596x336 frames
    video = numpro.InMemoryVideo(rng.integers(0, 255, (60, 336, 596, 3), dtype=np.uint8), 2.0)
    results = []
    for q in range(queries):
        starts = rng.uniform(0, 25, 10)
        results.append(GroundingResult(f"query {q}", [Moment(float(s), float(s + rng.uniform(2, 5)), 1.0)
                                                      for s in starts], 30.0))
    class Instant:
        """Answers at once and keeps nothing: what is left is library time."""

        calls = 0

        def answer(self, images, prompt, fps=None):
            Instant.calls += 1
            return "Candidate 2"

    mllm = Instant()
    print(f"ensemble: library time per query besides the MLLM call ({queries} queries, top 5 x 4 frames, "
          "frames decoded in memory)")
    for layout in ("frames", "grid"):
        numpro.rerank(results[0], video, mllm, layout=layout)

        def run(layout: str = layout) -> None:
            for r in results:
                numpro.rerank(r, video, mllm, layout=layout, max_pixels=602_112)

        per_query = best_of(run, repeats) / queries
        print(f"  layout={layout:6s}: {per_query * 1e3:6.2f} ms/query (one MLLM call each: "
              f"{Instant.calls} calls for {queries * repeats + 1} queries)")
        Instant.calls = 0


def bench_decode(repeats: int) -> None:
    import tempfile

    import numpro
    from tfvtg.testing import make_video

    with tempfile.TemporaryDirectory() as d:
        path = make_video(f"{d}/v.mp4", n_frames=900, fps=30, size=(596, 336))  # 30 s, Charades-like
        dt = best_of(lambda: numpro.VideoFile(path).sample(2.0), max(1, repeats // 2))
    print(f"  (decoding a 30 s 596x336 video file at 2 fps, once per video for all its queries: {dt * 1e3:.0f} ms)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    bench_layouts(args.repeats)
    bench_ensemble(args.repeats)
    bench_decode(args.repeats)


if __name__ == "__main__":
    main()
