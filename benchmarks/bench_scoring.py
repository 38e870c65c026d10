"""Scoring-core throughput and memory, side by side with the official algorithm.

"Official" is TFVTG's published localize() (its VLM-only ``eval`` path:
similarity curve, dynamic and static scores, NMS, top 10), ported line for
line to CPU torch here: the released code hard-codes CUDA. It gets what it
gets in its evaluate.py: the raw float16 feature array in memory. Both sides
use the same stand-in text encoder (tests/fixtures/parity_synthetic.py), so
text encoding costs the same on both.

Prints, after numba's JIT warm-up (compiled code is cached on disk):

1. Charades-STA parity queries, VLM only (tests/fixtures subset, or the full
   kit with --kit DIR), one query at a time, milliseconds per query:
   official vs ours on loaded features (files written by VideoFeatures.save:
   float16, memory-mapped, pages in memory), and ours on float32 tokens
   normalised in memory (the path raw arrays take). Passes alternate
   between the two sides, so machine load hits both alike.
2. One query on a 20-minute and a 1-hour video (3,600 and 10,800 frames of
   (32, 256) tokens at 3 fps), features in memory: official vs ours, with
   ours split into similarity curve and proposals.
3. Peak resident memory (VmHWM) of a fresh process grounding one query in a
   long video from a float16 memory-mapped feature file, against the old
   way (np.load, then a float32 normalised copy). --long-hours sets the
   length (default 6 h: 64,800 frames, a 1.06 GB file).

Usage: python benchmarks/bench_scoring.py [--kit ../shared/parity] [--repeat 5]
       [--long-hours 6] [--skip-official-hour] [--skip-memory] [--official-threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
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


# --------------------------------------------------------------------------
# The official algorithm on CPU torch (vlm_localizer.py: calc_scores,
# get_dynamic_scores, generate_proposal, nms, localize), one description.

def _official_dynamic(scores, stride, masks, ths=0.0005, sigma=1):
    import torch
    import torch.nn.functional as F

    if stride < 3:
        taps = torch.ones((1, 1, 1))
    else:
        half = min(stride - 2, 3) // 2
        x = np.arange(-half, half + 1)
        g = np.exp(-x ** 2 / (2.0 * sigma ** 2)) / (np.sqrt(2.0 * np.pi) * sigma)
        taps = torch.from_numpy(g).float().view(1, 1, -1)
    smooth = F.conv1d(scores.view(-1, 1, scores.size(-1)), taps).view(scores.size(0), -1)
    diff = torch.diff(smooth)
    left = (masks.size(-1) - diff.size(-1)) // 2
    right = masks.size(-1) - diff.size(-1) - left
    diff = torch.cat((torch.zeros((diff.size(0), left)), diff, torch.zeros((diff.size(0), right))), dim=-1) * masks
    idxs = np.zeros((diff.size(0), diff.size(-1)))
    dyn = np.zeros((diff.size(0), diff.size(-1)))
    for row in range(diff.size(0)):  # the reference's per-frame Python loop over torch scalars
        f1 = f2 = f3 = 0
        score = 0
        start = 0
        for i in range(diff.size(-1)):
            f3, f2, f1 = f2, f1, diff[row][i]
            if ((3 * f1) > ths) | ((2 * f1 + f2) > ths) | ((f1 + f2 + f3) > ths):
                score += max(3 * f1, 2 * f1 + f2, f1 + f2 + f3)
            else:
                start = i
                score = 0
            idxs[row][i] = start / scores.size(-1)
            dyn[row][i] = score
    return torch.from_numpy(idxs), torch.from_numpy(dyn)


def _official_nms(moments, scores, pre_mom, thresh):
    scores, ranks = scores.sort(descending=True)
    moments = moments[ranks]
    pre_mom = pre_mom[ranks]
    suppressed = ranks.zero_().bool()
    for i in range(suppressed.numel() - 1):
        if suppressed[i]:
            continue
        rest = moments[i + 1:]
        s, e = moments[i][0].float(), moments[i][1].float()
        inter = rest[:, 1].min(e) - rest[:, 0].max(s)
        union = rest[:, 1].max(e) - rest[:, 0].min(s)
        suppressed[i + 1:][inter.clamp(min=0) / union > thresh] = True
    return moments[~suppressed], pre_mom[~suppressed], scores[~suppressed]


def official_localize(video_feature: np.ndarray, duration: float, text_feat: np.ndarray, stride: int,
                      max_stride: int) -> list[list[float]]:
    """Top-10 ``[start, end, confidence]`` rows in seconds, as the reference
    computes them for one description (text embedding given)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        v1 = F.normalize(torch.from_numpy(text_feat), dim=-1)
        v2 = F.normalize(torch.tensor(video_feature, dtype=v1.dtype), dim=-1)
        scores = torch.einsum("md,npd->mnp", v1, v2).max(dim=-1)[0].mean(dim=0, keepdim=True)
        masks = (scores > 0.2).float()
        scores = scores * masks
        t = scores.size(-1)
        stride = min(stride, t // 2)
        dyn_idx, _ = _official_dynamic(scores, stride, masks)
        props, static, prefix = [], [], []
        for k in range(stride, min(t + 1, max_stride + 1), stride):
            kernel = torch.ones((1, 1, k))
            inner_sum = F.conv1d(scores.view(-1, 1, t), kernel).view(1, -1)
            inner_num = F.conv1d(masks.view(-1, 1, t), kernel).view(1, -1)
            outer_sum = (scores * masks).sum(dim=-1, keepdim=True) - inner_sum
            outer_num = masks.sum(dim=-1, keepdim=True) - inner_num
            s = inner_sum / k - outer_sum / outer_num
            starts = torch.arange(0, s.size(-1))
            p = torch.stack([starts, starts + k], dim=-1) / t
            keep = s[0] > -1e3
            props.append(p[keep])
            static.append(s[0][keep])
            prefix.append(dyn_idx.narrow(-1, 0, s.size(-1))[0][keep])
        all_props, all_scores, all_prefix = torch.cat(props), torch.cat(static), torch.cat(prefix)
        if len(all_props) == 0:
            return [[0.0, 0.0, 1.0]] * 3
        kept, kept_prefix, kept_scores = _official_nms(all_props, all_scores + all_scores * 0.0, all_prefix, 0.3)
        kept_scores = kept_scores[:10]
        conf = kept_scores / kept_scores.max()
        return [[float(kept_prefix[i] * duration), float(kept[i][1] * duration), float(conf[i])]
                for i in range(len(kept_scores))]


# --------------------------------------------------------------------------

def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.1f} ms" if ms < 1000 else f"{seconds:.2f} s"


def charades(kit: Path | None, repeat: int, workdir: Path) -> None:
    path = (kit / "charades_cases.json") if kit else ROOT / "tests" / "fixtures" / "parity_charades.json"
    data = json.loads(path.read_text())
    cases = data["cases"]
    raw = {v: synthetic_features(v, video, seed=data["seed"]) for v, video in data["videos"].items()}
    durations = {v: video["duration"] for v, video in data["videos"].items()}
    config = GroundingConfig.preset("charades")
    g = Grounder(StandIn(), config)

    # ours: the files VideoFeatures.save writes (float16 unit tokens), loaded back (memory-mapped)
    loaded = {}
    for v, arr in raw.items():
        VideoFeatures(arr, durations[v]).save(workdir / f"{v}.npy")
        loaded[v] = VideoFeatures.load(workdir / f"{v}.npy")
    in_memory_f32 = {v: VideoFeatures(arr, durations[v]) for v, arr in raw.items()}
    total = sum(f.tokens.nbytes for f in loaded.values())
    print(f"\n== Charades-STA parity queries: {len(cases)} queries over {len(raw)} videos "
          f"(mean {np.mean([a.shape[0] for a in raw.values()]):.0f} frames); loaded float16 tokens "
          f"{total / 2**20:.0f} MiB, float32 {2 * total / 2**20:.0f} MiB")

    stride, factor = config.stride, config.max_stride_factor

    def official_pass():
        for c in cases:
            arr = raw[c["video"]]
            official_localize(arr, durations[c["video"]], encode_text([c["sentence"]]), stride,
                              int(arr.shape[0] * factor))

    def ours(feats):
        def run():
            for c in cases:
                g.ground(feats[c["video"]], c["sentence"])
        return run

    embeddings = {c["sentence"]: encode_text([c["sentence"]]) for c in cases}

    def ours_scoring_only():
        for c in cases:
            f = loaded[c["video"]]
            curve = similarity_curves(f, embeddings[c["sentence"]])[0]
            proposal_rows(propose(curve, config), f, config)

    # the port reproduces the published outputs (up to the reference's ties)
    agree = 0
    for c in cases:
        arr = raw[c["video"]]
        rows = official_localize(arr, durations[c["video"]], encode_text([c["sentence"]]), stride,
                                 int(arr.shape[0] * factor))
        ref = c["reference"]["vlm_top10"][0]
        agree += bool(np.allclose(rows[0][:2], ref[:2], atol=1e-3))
    ours_agree = sum(bool(np.allclose(g.ground(loaded[c["video"]], c["sentence"]).moments[0][:2],
                                      c["reference"]["vlm_top10"][0][:2], atol=1e-3)) for c in cases)
    print(f"top-1 equal to the published outputs: official port {agree}/{len(cases)}, "
          f"ours on loaded float16 files {ours_agree}/{len(cases)}")

    by_video: dict[str, list[str]] = {}
    for c in cases:
        by_video.setdefault(c["video"], []).append(c["sentence"])

    def ours_batched():
        for v, sentences in by_video.items():
            g.ground_many(loaded[v], sentences)

    hot = loaded[cases[0]["video"]]

    def ours_one_video_hot():  # every query on one video: its tokens stay in the CPU caches
        for c in cases:
            g.ground(hot, c["sentence"])

    sides = {"official": official_pass,
             "ours, loaded float16 (memory-mapped)": ours(loaded),
             "ours, float32 normalised in memory": ours(in_memory_f32),
             "ours, scoring only (text embedded before)": ours_scoring_only,
             "ours, ground_many: a video's queries at once": ours_batched,
             "ours, features in CPU cache (one video)": ours_one_video_hot}
    times: dict[str, list[float]] = {k: [] for k in sides}
    official_repeats = max(2, repeat // 2)
    for rep in range(repeat):
        for name, fn in sides.items():
            if name == "official" and rep >= official_repeats:
                continue
            times[name].append(_timed(fn) / len(cases))
    base = statistics.median(times["official"])
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = "" if name == "official" else f"   {base / med:5.1f}x faster (best pass {base / min(ts):.1f}x)"
        print(f"  {name:45s} median {_fmt_ms(med):>10} per query (best {_fmt_ms(min(ts))}){ratio}")


def _long_features(t: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw float16 array as TFVTG's files hold it, normalised float16 tokens)."""
    rng = np.random.default_rng(0)
    raw = (rng.standard_normal((t, 32, 256), dtype=np.float32) * 0.125).astype(np.float16)
    u = encode_text(["a man parks the car"])[0]
    raw[t // 2: t // 2 + 60, 3] += (u / np.linalg.norm(u)).astype(np.float16)
    unit = np.empty_like(raw)
    for first in range(0, t, 1024):  # normalise in slices: no whole float32 copy
        block = raw[first:first + 1024].astype(np.float32)
        block /= np.linalg.norm(block, axis=-1, keepdims=True)
        unit[first:first + 1024] = block
    return raw, unit


def _ours_on_long_video(feats: VideoFeatures, feats32: VideoFeatures, emb: np.ndarray, query: str, preset: str,
                        repeat: int) -> dict[str, float]:
    config = GroundingConfig.preset(preset)
    g = Grounder(StandIn(), config)
    g.ground(feats, query)  # warm-up
    res = g.ground(feats, query)
    curve = similarity_curves(feats, emb)[0]
    runs = {"ground": lambda: g.ground(feats, query),
            "similarity": lambda: similarity_curves(feats, emb),
            "proposals": lambda: proposal_rows(propose(curve, config), feats, config),
            "ground32": lambda: g.ground(feats32, query)}
    ts: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            ts[k].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in ts.items()}
    print(f"  ours, preset {preset!r}: {_fmt_ms(med['ground'])} per query (best {_fmt_ms(min(ts['ground']))}; "
          f"similarity {_fmt_ms(med['similarity'])}, proposals {_fmt_ms(med['proposals'])}); "
          f"with float32 tokens {_fmt_ms(med['ground32'])}; best moment {res.best.start:.1f}-{res.best.end:.1f} s")
    return med


def long_video(minutes: int, repeat: int, official: bool) -> None:
    t = minutes * 60 * 3
    raw, unit = _long_features(t)
    query = "a man parks the car"
    emb = encode_text([query])
    VideoFeatures(unit[:4], duration=4 / 3, normalized=True)  # compiled checks loaded before timing
    t0 = time.perf_counter()
    feats = VideoFeatures(unit, duration=t / 3, normalized=True)
    build = time.perf_counter() - t0
    feats32 = VideoFeatures(raw, duration=t / 3)
    print(f"\n== {minutes}-minute video ({t} frames, float16 tokens {unit.nbytes / 2**20:.0f} MiB), one query")
    rows = {preset: _ours_on_long_video(feats, feats32, emb, query, preset, repeat)
            for preset in ("charades", "default")}
    print(f"  VideoFeatures(normalized=True) built in {_fmt_ms(build)} (finiteness pass + norm sample)")
    if official:
        config = GroundingConfig.preset("charades")
        t_off = _timed(lambda: official_localize(raw, t / 3, emb, config.stride, int(t * config.max_stride_factor)))
        print(f"  official, same video and query (charades settings): {_fmt_ms(t_off)} per query  ->  "
              f"ours {t_off / rows['charades']['ground']:.0f}x faster")
    g = Grounder(StandIn(), GroundingConfig.preset("charades").replace(scoring="paper"))
    print(f"  ours, scoring='paper' (every window length): {_fmt_ms(_timed(lambda: g.ground(feats, query)))}")


_MEMORY_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests/fixtures")
from parity_synthetic import encode_text
from tfvtg import Grounder, VideoFeatures

class StandIn:
    def encode_text(self, texts):
        return encode_text(list(texts))

def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 2**20  # GiB
    return out

path, mode = sys.argv[2], sys.argv[3]
warm = np.zeros((4, 2, 256), np.float16)
warm[..., 0] = 1.0
Grounder(StandIn(), "default").ground(VideoFeatures(warm, 2.0), "warm up")
Grounder(StandIn(), "default").ground(VideoFeatures(warm, 2.0, normalized=True), "warm up")
before = status()
t0 = time.perf_counter()
if mode == "mmap":
    feats = VideoFeatures.load(path)                              # float16, memory-mapped
else:
    feats = VideoFeatures(np.load(path), duration=np.load(path, mmap_mode="r").shape[0] / 3)  # float32 copy
loaded = time.perf_counter() - t0
res = Grounder(StandIn(), "default").ground(feats, "a man parks the car")
total = time.perf_counter() - t0
print(json.dumps({"before": before, "after": status(), "load_s": loaded, "total_s": total,
                  "dtype": str(feats.tokens.dtype), "best": [res.best.start, res.best.end]}))
"""


def memory(hours: float, workdir: Path) -> None:
    t = int(hours * 3600 * 3)
    path = workdir / "long.npy"
    u = encode_text(["a man parks the car"])[0]
    u = (u / np.linalg.norm(u)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(t, 32, 256))
    rng = np.random.default_rng(0)
    for first in range(0, t, 2048):  # written in slices: the benchmark itself stays small
        block = rng.standard_normal((min(2048, t - first), 32, 256), dtype=np.float32)
        lo, hi = max(first, t // 2) - first, min(first + block.shape[0], t // 2 + 90) - first
        if lo < hi:
            block[lo:hi, 3] += 40.0 * u
        block /= np.linalg.norm(block, axis=-1, keepdims=True)
        out[first:first + block.shape[0]] = block
    out.flush()
    del out
    (workdir / "long.json").write_text(json.dumps({"duration": t / 3, "fps": 3.0}))
    size = path.stat().st_size / 2**30
    print(f"\n== Peak memory grounding a {hours:g}-hour video ({t} frames, {size:.2f} GiB float16 file), "
          "fresh process each, preset 'default'")
    for mode, label in (("mmap", "ours: VideoFeatures.load (float16, memory-mapped)"),
                        ("copy", "old way: np.load + float32 normalised copy")):
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(ROOT), str(path), mode],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {label}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        b, a = r["before"], r["after"]
        print(f"  {label:52s} peak RSS {a['VmHWM']:.2f} GiB (process before loading {b['VmHWM']:.2f}); at the end "
              f"anonymous {a['RssAnon']:.2f} GiB, file pages {a['RssFile']:.2f} GiB; "
              f"load {r['load_s']:.2f} s, load + ground {r['total_s']:.2f} s; best {r['best'][0]:.0f}-{r['best'][1]:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kit", type=Path, default=None, help="parity kit directory (default: the test fixtures)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--long-hours", type=float, default=6.0, help="length of the memory benchmark's video")
    ap.add_argument("--skip-official-hour", action="store_true", help="skip the official port on the 1-hour video")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--charades-only", action="store_true", help="only the Charades-STA queries (repeat runs)")
    ap.add_argument("--official-threads", type=int, default=1,
                    help="torch threads for the official port (default 1: its ops are small, and a second "
                         "thread that has to wait for a busy core makes every op slower)")
    args = ap.parse_args()
    import numba
    import torch

    torch.set_num_threads(args.official_threads)

    numba_threads = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numba {numba.__version__} ({numba_threads} threads), python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        charades(args.kit, args.repeat, Path(tmp))
    if args.charades_only:
        return
    long_video(20, args.repeat, official=True)
    long_video(60, args.repeat, official=not args.skip_official_hour)
    if not args.skip_memory:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            memory(args.long_hours, Path(tmp))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
