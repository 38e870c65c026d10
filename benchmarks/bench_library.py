"""The searchable library at scale, on synthetic BLIP-2-shaped features.

Builds a library of --videos videos of --seconds seconds at 3 fps with
(32, 256) float16 tokens (2,000 x 60 s: 360,000 frames, 5.9 GB) and prints:

* adding precomputed features (frames/s), durable (fsync) and not, float32
  and float16 ones, next to the disk alone writing the same bytes;
* one search, warm: p50 / p99 and where the time goes;
* the coarse index's size against the token storage;
* recall@10 of the two-stage search against exhaustive grounding of every
  video (same fine stage, same score), for several candidate counts and for
  the flat (numpy) and IVF (faiss) coarse backends;
* the speed-up against looping ``Grounder.ground`` over every video.

    python benchmarks/bench_library.py                       # the full size
    python benchmarks/bench_library.py --videos 200          # a quick run

The features are synthetic but shaped like BLIP-2's: each token is a mix of
a per-slot component shared by the whole library, a per-video scene
component, noise, and, over each event's frames, a concept vector in one to
three preferred slots (each frame keeps each slot with probability 0.8).
Queries are a concept plus noise (cosine 0.9 with it); a concept appears in
about --videos * 2 / --concepts videos, at different strengths and lengths.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

D, Q = 256, 32


class Synthetic:
    """A reproducible library of BLIP-2-shaped videos and concept queries."""

    def __init__(self, concepts: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.concepts = self._unit(rng.standard_normal((concepts, D)))
        self.slots = self._unit(rng.standard_normal((Q, D)))
        self.noise = self._unit(rng.standard_normal((1 << 16, D)))  # a bank, gathered at random
        self.seed = seed

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def video(self, i: int, frames: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """(T, Q, D) float32 tokens and the (concept, first, last) events of video i."""
        rng = np.random.default_rng((self.seed, i))
        scene = self._unit(rng.standard_normal(D))
        tokens = self.noise[rng.integers(0, len(self.noise), size=(frames, Q))]
        tokens *= 0.6
        tokens += 0.5 * self.slots[None, :, :]
        tokens += 0.4 * scene
        events = []
        for _ in range(int(rng.integers(1, 4))):
            concept = int(rng.integers(0, len(self.concepts)))
            length = int(rng.integers(8, min(60, frames // 2)))
            first = int(rng.integers(0, frames - length))
            strength = float(rng.uniform(0.3, 0.9))
            preferred = rng.choice(Q, size=int(rng.integers(1, 4)), replace=False)
            keep = rng.random((length, len(preferred))) < 0.8
            for j, slot in enumerate(preferred):
                rows = first + np.flatnonzero(keep[:, j])
                tokens[rows, slot] += strength * self.concepts[concept]
            events.append((concept, first, first + length))
        return tokens, events

    def query(self, concept: int, rng: np.random.Generator) -> np.ndarray:
        noise = self._unit(rng.standard_normal(D))
        return self._unit(0.9 * self.concepts[concept] + np.sqrt(1 - 0.81) * noise)


class QueryEncoder:
    """Stand-in text encoder: the query's vector, looked up by its text."""

    space = "synthetic-blip2"
    name = "synthetic"
    mask_threshold = 0.2

    def __init__(self):
        self.table: dict[str, np.ndarray] = {}

    def encode_text(self, texts):
        return np.stack([self.table[t] for t in texts])


FORMS = {
    "float32": "VideoFeatures built beforehand from raw float32 tokens (normalised into float32)",
    "float16": "VideoFeatures built inside the timing from unit float16 tokens (as VideoFeatures.load gives)",
}


def settle() -> None:
    """Let the disk write back what earlier steps wrote."""
    os.sync()
    time.sleep(2.0)


def build(lib_dir: Path, synth: Synthetic, videos: int, frames: int, durable: bool, first: int = 0,
          group: int = 256, form: str = "float32"):
    """Add ``videos`` synthetic videos; the features of ``group`` videos are
    made (untimed), then added in one ``add_features_many`` call (timed).

    form "float32": ``VideoFeatures(raw float32 tokens)`` built untimed (the
    normalisation into float32 is the caller's); "float16": unit float16
    tokens made untimed, ``VideoFeatures(..., normalized=True)`` built inside
    the timing (construction counted)."""
    from tfvtg import Library, VideoFeatures

    lib = Library(lib_dir, encoder=QueryEncoder(), durable=durable)
    seconds = frames / 3.0
    timed = 0.0
    added_frames = 0
    batch = []
    for i in range(first, first + videos):
        tokens, _ = synth.video(i, frames)
        if form == "float16":
            tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
            batch.append((f"video{i:05d}", tokens.astype(np.float16)))
        else:
            batch.append((f"video{i:05d}", VideoFeatures(tokens, duration=seconds, encoder="synthetic-blip2")))
        if len(batch) == group or i == first + videos - 1:
            t0 = time.perf_counter()
            if form == "float16":
                lib.add_features_many([(vid, VideoFeatures(unit, duration=seconds, encoder="synthetic-blip2",
                                                           normalized=True)) for vid, unit in batch])
            else:
                lib.add_features_many(batch)
            timed += time.perf_counter() - t0
            added_frames += len(batch) * frames
            batch = []
    lib.close()
    return added_frames / timed, timed


def disk_ceiling(directory: Path, frames: int, files: int = 64) -> tuple[float, float]:
    """frames/s of writing the same bytes with nothing else: (with fsync, without)."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    tokens = np.zeros((frames, Q, D), np.float16) + np.float16(0.01)
    rates = []
    for sync in (True, False):
        t0 = time.perf_counter()
        for i in range(files):
            with open(directory / f"{sync}-{i}.npy", "wb") as f:
                np.lib.format.write_array(f, tokens)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
        rates.append(files * frames / (time.perf_counter() - t0))
    shutil.rmtree(directory)
    return rates[0], rates[1]


def recall_at(fast, full, k: int) -> float:
    truth = {(h.video, round(h.start, 6), round(h.end, 6)) for h in full[:k]}
    if not truth:
        return 1.0
    got = {(h.video, round(h.start, 6), round(h.end, 6)) for h in fast[:k]}
    return len(truth & got) / len(truth)


def segment_sweep(n_videos: int, frames: int, concepts: int, queries: int = 25) -> None:
    """Recall@10 of the coarse ranking alone (level 2, every stored vector)
    against exhaustive grounding, for 16-, 32- and 64-frame segments."""
    from tfvtg import Grounder, VideoFeatures
    from tfvtg.library.index import pool_segments
    from tfvtg.library.search import hits_from_result

    synth = Synthetic(concepts)
    enc = QueryEncoder()
    g = Grounder(enc, "default")
    feats = [VideoFeatures(synth.video(i, frames)[0], duration=frames / 3.0) for i in range(n_videos)]
    vectors = {s: [pool_segments(f.tokens, s)[1].astype(np.float32) for f in feats] for s in (16, 32, 64)}
    rng = np.random.default_rng(1)
    recall: dict[int, dict[int, list[float]]] = {s: {c: [] for c in (10, 20, 40)} for s in vectors}
    for c in rng.choice(concepts, size=queries, replace=False):
        text = f"concept {int(c)}"
        enc.table[text] = synth.query(int(c), rng)
        unit = enc.table[text] / np.linalg.norm(enc.table[text])
        hits = []
        for i, f in enumerate(feats):
            hits += hits_from_result(str(i), g.ground(f, text), f, None, 3)
        hits.sort(key=lambda h: -h.score)
        weight = np.zeros(n_videos)
        for h in hits[:10]:
            weight[int(h.video)] += 0.1
        for s, vecs in vectors.items():
            order = np.argsort([-(v @ unit).max() for v in vecs])
            for cands in (10, 20, 40):
                recall[s][cands].append(weight[order[:cands]].sum())
    for s in recall:
        print(f"  {s}-frame segments: recall@10 " + " / ".join(
            f"{np.mean(r):.3f} ({c} candidates)" for c, r in recall[s].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concepts", type=int, default=400)
    ap.add_argument("--queries", type=int, default=100, help="queries timed for p50/p99")
    ap.add_argument("--recall-queries", type=int, default=20, help="queries ground exhaustively for recall")
    ap.add_argument("--naive-queries", type=int, default=3, help="queries looped over every video with Grounder")
    ap.add_argument("--dir", default=None, help="where to build the library (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the library afterwards")
    ap.add_argument("--reuse", action="store_true", help="search the library already in --dir (no build)")
    ap.add_argument("--side-dir", default=None,
                    help="where the 256-video add measurements build their libraries (default: beside --dir); "
                         "a tmpfs such as /dev/shm/x shows the library's own cost without the disk")
    ap.add_argument("--add-only", action="store_true", help="stop after the add measurements")
    ap.add_argument("--segment-sweep", type=int, default=0, metavar="N",
                    help="only compare segment lengths on N videos held in memory")
    args = ap.parse_args()
    if args.segment_sweep:
        segment_sweep(args.segment_sweep, int(round(args.seconds * 3)), args.concepts)
        return

    from tfvtg import Grounder, Library
    from tfvtg.library.search import hits_from_result

    frames = int(round(args.seconds * 3))
    synth = Synthetic(args.concepts)
    work = Path(args.dir or tempfile.mkdtemp(prefix="tfvtg-library-"))
    lib_dir = work / "lib"
    reuse = args.reuse and (lib_dir / "library.json").exists()
    if lib_dir.exists() and not reuse:
        shutil.rmtree(lib_dir)
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs)")
    print(f"library: {args.videos} videos x {args.seconds:g} s at 3 fps = {args.videos * frames:,} frames of "
          f"({Q}, {D}) float16 tokens, in {lib_dir}")

    # -- adding ---------------------------------------------------------------
    if not reuse:
        rate, seconds = build(lib_dir, synth, args.videos, frames, durable=True)
        gb = args.videos * frames * Q * D * 2 / 1e9
        print(f"build: add precomputed features, durable (fsync per batch of 64), {FORMS['float32']}: "
              f"{rate:,.0f} frames/s ({seconds:.1f} s for {gb:.1f} GB: past a burst, the disk's sustained "
              "write rate bounds this)")
    # side by side on a settled disk (write-back of earlier writes drained
    # first): this VM's disk takes a burst of about 1 GB at 800+ MB/s but
    # sustains only about 340 MB/s (about 20,000 frames/s of tokens), so
    # each figure is a burst of n_side videos next to the disk alone
    n_side = max(256, args.videos // 10)
    side = Path(args.side_dir) / "side" if args.side_dir else work / "side"
    side.parent.mkdir(parents=True, exist_ok=True)
    for rep in range(2):
        settle()
        synced, unsynced = disk_ceiling(side.parent / "disk", frames)
        print(f"[{rep + 1}] the disk alone, same bytes (np.save of float16 tokens): {synced:,.0f} frames/s with "
              f"fsync, {unsynced:,.0f} without", flush=True)
        for form in ("float16", "float32"):
            for durable in (True, False):
                if side.exists():
                    shutil.rmtree(side)
                settle()
                rate_side, _ = build(side, synth, n_side, frames, durable=durable, first=10**6, form=form)
                print(f"[{rep + 1}] add {n_side} videos into a new library, {FORMS[form]}, durable={durable}: "
                      f"{rate_side:,.0f} frames/s", flush=True)
    if side.exists():
        shutil.rmtree(side)
    if args.add_only:
        return

    enc = QueryEncoder()
    lib = Library(lib_dir, encoder=enc)
    stats = lib.stats()
    features_gb = stats["feature_bytes"] / 1e9
    print(f"token storage {features_gb:.2f} GB; coarse index {stats['coarse_index_bytes'] / 1e6:.1f} MB on disk "
          f"(float16, 1/{1 / stats['coarse_ratio']:.0f} of the tokens)")

    # -- queries: concepts present in the library ---------------------------------
    rng = np.random.default_rng(1)
    concepts = rng.choice(args.concepts, size=max(args.queries, args.recall_queries), replace=False)
    queries = []
    for c in concepts:
        text = f"concept {int(c)}"
        enc.table[text] = synth.query(int(c), rng)
        queries.append(text)

    # -- search latency, warm ---------------------------------------------------------
    t0 = time.perf_counter()
    lib.search(queries[0], top_k=10)  # loads the coarse index
    print(f"first search (loads the coarse index from the catalogue): {time.perf_counter() - t0:.2f} s; "
          f"coarse index in memory {lib._index.memory_bytes / 1e6:.0f} MB (two float32 levels, "
          f"1/{stats['feature_bytes'] / lib._index.memory_bytes:.1f} of the tokens)")
    for q in queries[:3]:
        lib.search(q, top_k=10)
    times, coarse_ms, fine_ms = [], [], []
    for q in queries[: args.queries]:
        t0 = time.perf_counter()
        hits = lib.search(q, top_k=10)
        times.append((time.perf_counter() - t0) * 1e3)
        coarse_ms.append(hits.timings["coarse_ms"])
        fine_ms.append(hits.timings["fine_ms"])
    p50, p99 = np.percentile(times, [50, 99])
    print(f"search (top 10, {hits.candidates} candidates, flat coarse index), {len(times)} queries warm: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (coarse {np.median(coarse_ms):.1f} ms, "
          f"fine {np.median(fine_ms):.1f} ms median)")

    # -- recall against exhaustive grounding -------------------------------------------------
    rq = queries[: args.recall_queries]
    if not rq:
        print("recall: skipped (--recall-queries 0)")
    t0 = time.perf_counter()
    truth = [lib.search(q, top_k=10, exhaustive=True) for q in rq]
    exhaustive_s = (time.perf_counter() - t0) / max(len(rq), 1)
    print(f"exhaustive grounding of all {len(lib)} videos: {exhaustive_s:.2f} s per query")
    ivf = Library(lib_dir, encoder=enc, coarse="ivf", nprobe=32)
    if rq:
        t0 = time.perf_counter()
        ivf.search(rq[0], top_k=10)
        print(f"IVF index build (train + add, once per reader): {time.perf_counter() - t0:.1f} s")
    # prefilter: None the default (every stored vector up to a million), -1 level 1 first
    # (keeping max(8 * candidates, 200) videos, the default past a million), 0 every vector
    variants: list[tuple[str, Library, int | None]] = [
        ("flat, default", lib, None), ("flat, level 1 first", lib, -1), ("flat, level 2 only", lib, 0),
        ("ivf nprobe=8", ivf, 8), ("ivf nprobe=32", ivf, 32), ("ivf nprobe=128", ivf, 128)]
    for label, reader, setting in variants if rq else []:
        if reader is not lib and setting is not None:
            reader._index.nprobe = setting
        for cands in (10, 20, 30, 40):
            if reader is lib:
                reader._index.prefilter = max(8 * cands, 200) if setting == -1 else setting
            recalls, ms, coarse = [], [], []
            for q, full in zip(rq, truth):
                t0 = time.perf_counter()
                fast = reader.search(q, top_k=10, candidates=cands)
                ms.append((time.perf_counter() - t0) * 1e3)
                coarse.append(fast.timings["coarse_ms"])
                recalls.append(recall_at(fast, full, 10))
            print(f"  {label:19s} candidates={cands:3d}: recall@10 {np.mean(recalls):.3f} "
                  f"(min {np.min(recalls):.2f}), search p50 {np.median(ms):.1f} ms, "
                  f"coarse stage p50 {np.median(coarse):.1f} ms", flush=True)
    lib._index.prefilter = None

    # -- the naive way: Grounder.ground over every video --------------------------------------------
    g = Grounder(enc, "default")
    naive = []
    for q in queries[: args.naive_queries]:
        t0 = time.perf_counter()
        found = []
        for vid in lib.videos():
            feats = lib.features(vid)
            found.extend(hits_from_result(vid, g.ground(feats, q), feats, None, 3))
        found.sort(key=lambda h: -h.score)
        naive.append(time.perf_counter() - t0)
    naive_s = float(np.median(naive)) if naive else float("nan")
    print(f"looping Grounder.ground over every video: {naive_s:.2f} s per query; "
          f"two-stage search p50 {p50:.1f} ms: {naive_s * 1e3 / p50:.0f}x faster")

    # -- figures for the paper estimate --------------------------------------------------
    n_vec = lib._index.num_vectors
    print(f"coarse vectors: {n_vec:,} ({n_vec / (len(lib) * frames):.3f} per frame); "
          f"flat scan {np.median(coarse_ms) / n_vec * 1e6:.1f} ms per million vectors; "
          f"fine stage {np.median(fine_ms) / max(hits.candidates, 1):.2f} ms per {args.seconds:g}-s candidate")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    lib.close()
    ivf.close()
    if not args.keep and not args.dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
