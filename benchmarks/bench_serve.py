"""``tfvtg serve``: server time of one search on a 600-video library.

Builds (once, in --dir) a library of 600 videos of 60 s at 3 fps with
synthetic (180, 32, 256) float16 features added through ``lib.add_features``,
then answers searches through the real app (FastAPI in process, httpx
client) and prints, side by side:

* ``lib.search`` alone (the library's two-stage search),
* the server's time for ``GET /api/search`` (``Server-Timing: app``: the
  route, the library's search for twice top_k from the same candidates, the
  de-duplication and the JSON rendering),
* the client's round trip,

in wall-clock time (which includes whatever else the machine runs) and in
CPU time of this process (what it costs on a free core).

The text encoder is a hashing stand-in (BLIP-2's text tower is not
measured here: it is the same cost with or without the server).

Usage: python benchmarks/bench_serve.py [--dir /tmp/bench-serve] [--videos 600] [--queries 40]
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfvtg import Library, VideoFeatures  # noqa: E402

SPACE = "bench-hash-256"
Q, D, FPS, SECONDS = 32, 256, 3.0, 60.0
WORDS = ("person opens door sits chair turns light walks dog jumps runs man woman holds cup drinks water eats "
         "food looks window kitchen garden car street ball table phone book laughs").split()


class HashText:
    """Sentence -> sum of fixed random word vectors (D=256): distinct
    sentences get distinct embeddings, no model needed."""

    space = SPACE
    mask_threshold = 0.0

    def encode_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), D), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(D).astype(np.float32)
        return out


def build(directory: Path, videos: int) -> None:
    lib = Library(directory, encoder=HashText(), durable=False)
    have = len(lib)
    if have >= videos:
        lib.close()
        return
    rng = np.random.default_rng(0)
    text = HashText()
    frames = int(SECONDS * FPS)
    started = time.perf_counter()
    for v in range(have, videos):
        tokens = rng.standard_normal((frames, Q, D), dtype=np.float32) * 0.6
        # a few seconds of each video lean towards one of the words
        word = WORDS[v % len(WORDS)]
        a = int(rng.integers(0, frames - 30))
        tokens[a:a + 30, : Q // 4] += text.encode_text([word])[0] * 0.15
        lib.add_features(f"video{v:04d}", VideoFeatures(tokens.astype(np.float16), duration=SECONDS, encoder=SPACE))
    print(f"built {videos - have} videos in {time.perf_counter() - started:.1f} s")
    lib.close()


def ms(values: list[float]) -> str:
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(round(q * (len(values) - 1))))]  # noqa: E731
    return f"p50 {p(0.5):7.1f} ms   p95 {p(0.95):7.1f} ms   max {values[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/tfvtg-bench-serve")
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from tfvtg.app import create_app

    directory = Path(args.dir)
    build(directory, args.videos)
    rng = np.random.default_rng(1)
    queries = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 7)))) for _ in range(args.queries)]

    alone = Library(directory, encoder=HashText())
    stats = alone.stats()
    app = create_app(directory, encoder=HashText(), warm_up=False)
    lib_ms, server_ms, round_trip_ms, sizes, lib_cpu, request_cpu = [], [], [], [], [], []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        alone.search("warm up", top_k=args.top_k)
        client.get("/api/search", params={"q": "warm up", "top_k": args.top_k})
        for q in queries:  # side by side, query by query (the machine's load moves both alike)
            t, c = time.perf_counter(), time.process_time()
            alone.search(q, top_k=args.top_k)
            lib_ms.append((time.perf_counter() - t) * 1000)
            lib_cpu.append((time.process_time() - c) * 1000)
            t, c = time.perf_counter(), time.process_time()
            r = client.get("/api/search", params={"q": q, "top_k": args.top_k})
            round_trip_ms.append((time.perf_counter() - t) * 1000)
            request_cpu.append((time.process_time() - c) * 1000)
            assert r.status_code == 200 and len(r.json()["hits"]) == args.top_k, r.text
            server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
            sizes.append(len(r.content))
    alone.close()
    overhead = [s - x for s, x in zip(server_ms, lib_ms)]

    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    print(f"library: {stats['videos']} videos, {stats['hours']:.1f} h, {stats['frames']} frames of ({Q}, {D}) float16, "
          f"{stats['feature_bytes'] / 2**30:.2f} GiB of features")
    print(f"{args.queries} queries, top_k={args.top_k}, warm:")
    print(f"  lib.search alone          {ms(lib_ms)}")
    print(f"  GET /api/search (server)  {ms(server_ms)}")
    print(f"  GET /api/search (client)  {ms(round_trip_ms)}   ({statistics.mean(sizes) / 1024:.1f} KiB of JSON)")
    print(f"  server minus library, per query: median {statistics.median(overhead):+.1f} ms")
    print("CPU time of this process (what an idle core would take; BLAS may use more than one thread):")
    print(f"  lib.search alone          {ms(lib_cpu)}")
    print(f"  GET /api/search (all)     {ms(request_cpu)}   (client, server and library together)")


if __name__ == "__main__":
    main()
