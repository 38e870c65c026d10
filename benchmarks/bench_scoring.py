"""Scoring-core throughput: queries against features already loaded.

Prints, after numba's JIT warm-up (compiled code is cached on disk):

1. Charades-STA parity queries, VLM only (tests/fixtures subset or the full
   kit with --kit DIR): milliseconds per query, end to end through
   ``Grounder.ground`` with the parity stand-in text encoder, and the scoring
   alone (curve -> ranked moments) with text embeddings computed beforehand.
2. One query on a 20-minute and a 1-hour video (3,600 and 10,800 frames at
   3 fps, (T, 32, 256) features), charades and default presets: seconds per
   query and the peak memory the query itself allocates.

Usage: python benchmarks/bench_scoring.py [--kit ../shared/parity] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from parity_synthetic import encode_text, synthetic_features  # noqa: E402

from tfvtg import Grounder, GroundingConfig, VideoFeatures  # noqa: E402
from tfvtg.core.grounder import proposal_rows  # noqa: E402
from tfvtg.core.proposals import propose  # noqa: E402
from tfvtg.core.similarity import similarity_curves  # noqa: E402


class StandIn:
    def encode_text(self, texts):
        return encode_text(list(texts))


def charades(kit: Path | None, repeat: int) -> None:
    path = (kit / "charades_cases.json") if kit else ROOT / "tests" / "fixtures" / "parity_charades.json"
    data = json.loads(path.read_text())
    feats = {v: VideoFeatures(synthetic_features(v, video, seed=data["seed"]), video["duration"])
             for v, video in data["videos"].items()}
    cases = data["cases"]
    config = GroundingConfig.preset("charades")
    g = Grounder(StandIn(), config)
    embeddings = {c["sentence"]: encode_text([c["sentence"]]) for c in cases}
    for c in cases[:5]:  # JIT warm-up
        g.ground(feats[c["video"]], c["sentence"])

    def end_to_end():
        for c in cases:
            g.ground(feats[c["video"]], c["sentence"])

    def scoring_only():
        for c in cases:
            f = feats[c["video"]]
            curve = similarity_curves(f, embeddings[c["sentence"]])[0]
            proposal_rows(propose(curve, config), f, config)

    by_video: dict[str, list[str]] = {}
    for c in cases:
        by_video.setdefault(c["video"], []).append(c["sentence"])

    def batched_per_video():
        for v, sentences in by_video.items():
            g.ground_many(feats[v], sentences)

    def same_video_hot():
        f = feats[cases[0]["video"]]
        for c in cases:
            g.ground(f, c["sentence"])

    for name, fn in (("end to end (stand-in encoder), one query at a time", end_to_end),
                     ("curve + proposals only", scoring_only),
                     ("ground_many, all of a video's queries in one call", batched_per_video),
                     ("end to end, features already in cache (one video)", same_video_hot)):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) / len(cases) * 1e3)
        print(f"charades parity, {len(cases)} queries, {name}: "
              f"median {statistics.median(times):.3f} ms/query (best {min(times):.3f})")


def long_video(minutes: int, preset: str, repeat: int) -> None:
    t = minutes * 60 * 3
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((t, 32, 256)) * 0.125).astype(np.float16)
    u = encode_text(["a man parks the car"])[0]
    arr[t // 2: t // 2 + 60, 3] += (u / np.linalg.norm(u)).astype(np.float16)
    t0 = time.perf_counter()
    feats = VideoFeatures(arr, duration=t / 3)
    build = time.perf_counter() - t0
    g = Grounder(StandIn(), preset)
    g.ground(feats, "a man parks the car")  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = g.ground(feats, "a man parks the car")
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    g.ground(feats, "a man parks the car")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{minutes:>3}-minute video ({t} frames), preset {preset!r}: median {statistics.median(times):.4f} s/query "
          f"(best {min(times):.4f}); VideoFeatures built once in {build:.3f} s; "
          f"query peak allocation {peak / 2**20:.1f} MiB; best {res.best.start:.1f}-{res.best.end:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kit", type=Path, default=None, help="parity kit directory (default: the test fixtures)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import numba

    print(f"machine: {platform.processor() or platform.machine()}, {numba.config.NUMBA_NUM_THREADS} threads, "
          f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    charades(args.kit, args.repeat)
    for minutes in (20, 60):
        for preset in ("charades", "default"):
            long_video(minutes, preset, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
