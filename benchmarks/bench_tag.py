"""TAG scoring: tfvtg's implementation against TAG's algorithm, same inputs.

Prints, after numba's JIT warm-up:

1. tfvtg, per query with the features in memory (``TagFeatures``, the
   parity stand-in text encoder): end to end through ``Grounder.ground``;
   the scoring alone (text embedded beforehand); and its stages
   (similarity, Box-Cox alignment, smoothing + k-means, the rest).
2. TAG's algorithm on the same queries: a step-by-step torch port of its
   ``localize`` + ``select_proposal`` (tests/fixtures/build_tag_fixture.py;
   TAG's Python loops per frame and per k-means iteration, its ``cuda``
   calls on CPU torch), on the first ``--reference-queries`` queries.
3. How often the two agree on those queries (first answer, up to ties).

Both sides with temporal-coherence k-means (TAG's tables) and, with
``--plain``, plain k-means as well.

Usage: python benchmarks/bench_tag.py [--kit ../shared/parity] [--dataset charades]
       [--repeat 5] [--reference-queries 40] [--threads 1] [--plain]

``--threads N`` pins BLAS, OpenMP and torch to N threads (set before numpy
loads): on a small shared machine, multithreaded BLAS on a 3,000 x 256
matrix-vector product costs more than the product.
"""
from __future__ import annotations

import argparse
import os
import sys

_ARGS = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
_ARGS.add_argument("--kit", default=None, help="parity kit directory (default: the test fixtures)")
_ARGS.add_argument("--dataset", default="charades", choices=["charades", "activitynet"])
_ARGS.add_argument("--repeat", type=int, default=5)
_ARGS.add_argument("--reference-queries", type=int, default=40)
_ARGS.add_argument("--threads", type=int, default=None)
_ARGS.add_argument("--plain", action="store_true", help="also plain k-means (TAG without --tckmeans)")

if __name__ == "__main__":
    _OPTIONS = _ARGS.parse_args()
    if _OPTIONS.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(_OPTIONS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import build_tag_fixture as tag_port  # noqa: E402
from parity_synthetic import encode_text, synthetic_features  # noqa: E402

from tfvtg import Grounder, GroundingConfig  # noqa: E402
from tfvtg.core import tag  # noqa: E402
from tfvtg.core.combination import vote  # noqa: E402
from tfvtg.core.kmeans import kmeans_scenes, torch_cpu_words  # noqa: E402


class StandIn:
    def encode_text(self, texts):
        return encode_text(list(texts))


def median_ms(fn, count: int, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / count * 1e3)
    return statistics.median(times), min(times)


def stages(feats, cases, embeddings, config) -> dict[str, float]:
    """Seconds spent per stage of tfvtg's TAG scoring over all cases."""
    spent = dict.fromkeys(["similarity", "alignment", "smoothing + k-means", "rest"], 0.0)
    for c in cases:
        f = feats[c["video"]]
        t0 = time.perf_counter()
        curves, best = tag.best_token_curves(f, embeddings[c["sentence"]])
        vectors = tag.frame_vectors(f, best[0])
        t1 = time.perf_counter()
        mask = tag.majority_vote_mask(curves[0] > np.float32(0.2))
        kept = np.flatnonzero(mask)
        tag.align_scores(curves[0][kept], config.alignment_gamma)
        t2 = time.perf_counter()
        points = np.empty((len(kept), vectors.shape[1] + 1))
        points[:, :-1] = vectors[kept]
        points[:, -1] = kept.astype(np.float32) / np.float32(len(mask))
        points = tag.smooth_frames(points, config.temporal_window_size)
        k = min(config.kmeans_k, max(2, len(kept)))
        if len(kept) > 1:
            kmeans_scenes(points, k, torch_cpu_words(config.kmeans_seed, k),
                          temporal_window=config.window_radius if config.tc_kmeans else None)
        t3 = time.perf_counter()
        proposals = tag.tag_propose(curves[0], vectors, config, mask_threshold=0.2)
        vote(tag.tag_rows(proposals, f, config.cand_num), config.vote_gamma)
        t4 = time.perf_counter()
        spent["similarity"] += t1 - t0
        spent["alignment"] += t2 - t1
        spent["smoothing + k-means"] += t3 - t2
        # tag_propose repeats the middle stages: count only what it adds
        spent["rest"] += max(0.0, (t4 - t3) - (t3 - t1))
    return spent


def run(data, feats, cases, config, args) -> None:
    g = Grounder(StandIn(), config)
    embeddings = {c["sentence"]: encode_text([c["sentence"]]) for c in cases}
    for c in cases[:5]:  # JIT warm-up (compiled code is cached on disk)
        g.ground(feats[c["video"]], c["sentence"])

    def end_to_end():
        for c in cases:
            g.ground(feats[c["video"]], c["sentence"])

    def scoring_only():
        for c in cases:
            f = feats[c["video"]]
            curves, best = tag.best_token_curves(f, embeddings[c["sentence"]])
            p = tag.tag_propose(curves[0], tag.frame_vectors(f, best[0]), config, mask_threshold=0.2)
            vote(tag.tag_rows(p, f, config.cand_num), config.vote_gamma)

    kind = "temporal-coherence" if config.tc_kmeans else "plain"
    frames = [feats[c["video"]].num_frames for c in cases]
    print(f"\n{data['dataset']}, {kind} k-means, {len(cases)} queries, {min(frames)}-{max(frames)} frames "
          f"(median {int(np.median(frames))})")
    for name, fn in (("tfvtg end to end (Grounder.ground, stand-in encoder)", end_to_end),
                     ("tfvtg scoring only (text embedded beforehand)", scoring_only)):
        med, best = median_ms(fn, len(cases), args.repeat)
        print(f"  {name}: median {med:.2f} ms/query (best {best:.2f})")
    spent = stages(feats, cases, embeddings, config)
    print("  tfvtg stages, ms/query: " + ", ".join(f"{k} {v / len(cases) * 1e3:.2f}" for k, v in spent.items()))

    subset = cases[: args.reference_queries]
    hp = dict(data["hyper_parameters"])
    raw = {c["video"]: synthetic_features(c["video"], data["videos"][c["video"]], seed=data["seed"]) for c in subset}
    t0 = time.perf_counter()
    answers = []
    for c in subset:
        rows = tag_port.localize(raw[c["video"]], c["duration"], embeddings[c["sentence"]], hp,
                                 tck=config.tc_kmeans)
        answers.append(tag_port.select_proposal(rows))
    port_ms = (time.perf_counter() - t0) / len(subset) * 1e3
    ours = [np.array([list(m) for m in g.ground(feats[c["video"]], c["sentence"]).moments]) for c in subset]
    med, _ = median_ms(lambda: [g.ground(feats[c["video"]], c["sentence"]) for c in subset], len(subset),
                       args.repeat)
    agree = 0
    for rows, ref in zip(ours, answers):
        _, support = vote(rows, config.vote_gamma, return_scores=True)
        top = support[0]
        tied = rows[np.abs(support - top) <= 1e-6 * max(1.0, abs(top))]
        agree += any(np.allclose(r[:2], ref[0, :2], atol=1e-3) for r in tied)
    print(f"  TAG's algorithm (torch port of its localize + select_proposal, CPU): {port_ms:.1f} ms/query "
          f"on the first {len(subset)} queries; tfvtg on the same: {med:.2f} ms/query "
          f"({port_ms / med:.0f}x); same first answer (up to ties) on {agree}/{len(subset)}")


def main() -> None:
    args = _OPTIONS
    import numba
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {args.threads or 'default'}; python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}, torch {torch.__version__}")
    if args.kit:
        path = Path(args.kit) / "tag" / f"{args.dataset}_cases.json"
    else:
        path = ROOT / "tests" / "fixtures" / f"tag_{args.dataset}.json"
    data = json.loads(path.read_text())
    feats = {v: tag.TagFeatures(synthetic_features(v, video, seed=data["seed"]), video["duration"])
             for v, video in data["videos"].items()}
    for tc in (True, False) if args.plain else (True,):
        run(data, feats, data["cases"], GroundingConfig.preset(f"tag-{args.dataset}", tc_kmeans=tc), args)


if __name__ == "__main__":
    main()
