"""TAG scoring: parity with TAG's own outputs, its parts, and its config.

The fixtures (tests/fixtures/tag_*.json, built by build_tag_fixture.py from
the parity kit) hold synthetic inputs and TAG's outputs on them: ``top10``
(the sentence alone, temporal-coherence k-means, as TAG's tables) and, for
Charades, ``llm_top1`` (the sentence and its LLM paraphrases voted
together); ``plain_top10`` / ``plain_llm_top1`` are TAG's algorithm with
plain k-means (a torch port of its code, see the builder).

Two places where TAG's answer is not decided by its inputs, and how the
comparison treats them:

* Ties in the final vote. TAG ranks the vote sums with numpy's unstable
  argsort, so rows with equal sums (always: the same span twice with
  different confidences; sometimes: different spans) come out in no defined
  order (the kit's ``undetermined`` marks this at the top). We group rows
  whose sums agree within 1e-6 (relative): groups must come in the same
  order, and inside a group TAG's rows must be among ours (the top-10 may
  cut a group). The first answer is any row of our first group.
* Float32 rounding in the k-means. TAG clusters in float32 torch, whose
  rounding depends on the machine; where some assignment (or k-means++ draw)
  is decided by less than one float32 rounding (``TagProposals.margin < 1``;
  short videos give exact mathematical ties, as smoothing puts their frames
  on a line), TAG may have clustered otherwise. Such cases are not checked
  one by one; they count in the overall agreement floor.

Everything else must agree within 1e-3 s (times) and 1e-3 (confidences).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tfvtg import Grounder, GroundingConfig, VideoFeatures
from tfvtg.core.combination import combine_sub_events, vote
from tfvtg.core.config import PRESETS
from tfvtg.core.errors import ConfigError
from tfvtg.core.kmeans import kmeans_scenes, torch_cpu_words
from tfvtg.core.tag import (
    TagFeatures,
    _Criterion,
    align_scores,
    best_token_curves,
    frame_vectors,
    majority_vote_mask,
    scene_starts,
    smooth_frames,
    tag_propose,
    torch_sort_order,
)

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from parity_synthetic import encode_text, synthetic_features  # noqa: E402

TOL = 1e-3
TIE = 1e-6


class StandInEncoder:
    def encode_text(self, texts):
        return encode_text(list(texts))


# ------------------------------------------------------------ comparison
def tie_groups(support: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive rows whose vote sums agree."""
    groups, first = [], 0
    for i in range(1, len(support) + 1):
        if i == len(support) or abs(support[i] - support[first]) > TIE * max(1.0, abs(support[first])):
            groups.append((first, i))
            first = i
    return groups


def rows_close(a, b) -> bool:
    return all(abs(x - y) <= TOL for x, y in zip(a, b))


def among(ref_rows, ours) -> bool:
    pool = [list(r) for r in ours]
    for row in ref_rows:
        hit = next((j for j, q in enumerate(pool) if rows_close(q, row)), None)
        if hit is None:
            return False
        pool.pop(hit)
    return True


def matches_up_to_ties(rows: np.ndarray, ref: list[list[float]]) -> bool:
    voted, support = vote(rows, 0.6, return_scores=True)
    assert np.array_equal(voted, rows)  # the result is already in vote order
    if len(rows) < len(ref):
        return False
    for first, stop in tie_groups(support):
        if first >= len(ref):
            break
        if not among(ref[first:min(stop, len(ref))], rows[first:stop]):
            return False
    return True


def first_answer_matches(rows: np.ndarray, ref: list[float]) -> bool:
    _, support = vote(rows, 0.6, return_scores=True)
    first, stop = tie_groups(support)[0]
    return any(rows_close(rows[i, :2], ref) for i in range(first, stop))


# ------------------------------------------------------------ fixtures
def load(name: str):
    data = json.loads((FIXTURES / f"tag_{name}.json").read_text())
    feats = {v: TagFeatures(synthetic_features(v, video, seed=data["seed"]), video["duration"])
             for v, video in data["videos"].items()}
    return data, feats


@pytest.fixture(scope="module")
def charades():
    return load("charades")


@pytest.fixture(scope="module")
def activitynet():
    return load("activitynet")


def clustering_margin(feat: TagFeatures, text: str, config: GroundingConfig) -> float:
    curves, best = best_token_curves(feat, encode_text([text]))
    return tag_propose(curves[0], frame_vectors(feat, best[0]), config, mask_threshold=0.2).margin


def check_top10(data, feats, config, key):
    grounder = Grounder(StandInEncoder(), config)
    agree, failures = 0, []
    for case in data["cases"]:
        feat = feats[case["video"]]
        result = grounder.ground(feat, case["sentence"])
        rows = np.array([list(m) for m in result.moments])
        if matches_up_to_ties(rows, case[key] if key != "top10" else case["reference"]["top10"]):
            agree += 1
        elif clustering_margin(feat, case["sentence"], grounder.config) >= 1:
            failures.append((case["video"], case["sentence"]))
    return agree, failures


# ------------------------------------------------------------ parity with TAG
@pytest.mark.parametrize("name", ["charades", "activitynet"])
def test_tag_presets_reproduce_tag_top10(name, request):
    data, feats = request.getfixturevalue(name)
    config = GroundingConfig.preset(f"tag-{name}")
    hp = data["hyper_parameters"]
    assert (config.stride, config.alignment_gamma, config.cand_num, config.kmeans_k, config.window_radius,
            config.prior, config.temporal_window_size) == \
        (hp["stride"], hp["gamma"], hp["cand_num"], hp["kmeans_k"], hp["window_radius"], hp["prior"],
         hp["temporal_window_size"])
    assert config.tc_kmeans and data["tckmeans"]
    agree, failures = check_top10(data, feats, config, "top10")
    assert not failures, f"{len(failures)} cases with a clustering decided by the data differ, e.g. {failures[:3]}"
    # regression floor; measured: Charades 118/125, ActivityNet 53/57 (on the
    # whole kit 239/252 and 88/93, every other case with a margin below 1)
    assert agree >= 0.9 * len(data["cases"]), (agree, len(data["cases"]))


@pytest.mark.parametrize("name", ["charades", "activitynet"])
def test_plain_kmeans_reproduces_tag_algorithm(name, request):
    data, feats = request.getfixturevalue(name)
    config = GroundingConfig.preset(f"tag-{name}", tc_kmeans=False)
    agree, failures = check_top10(data, feats, config, "plain_top10")
    assert not failures, f"{len(failures)} cases with a clustering decided by the data differ, e.g. {failures[:3]}"
    # measured: Charades 114/125, ActivityNet 56/57
    assert agree >= 0.88 * len(data["cases"]), (agree, len(data["cases"]))
    # the switch matters: some answers differ between the two k-means
    assert any(c["plain_top10"][0][:2] != c["reference"]["top10"][0][:2] for c in data["cases"])


@pytest.mark.parametrize("tc_kmeans,key", [(True, "llm_top1"), (False, "plain_llm_top1")])
def test_llm_paraphrases_are_voted_with_the_sentence(charades, tc_kmeans, key):
    data, feats = charades
    grounder = Grounder(StandInEncoder(), GroundingConfig.preset("tag-charades", tc_kmeans=tc_kmeans))
    agree, failures = 0, []
    for case in data["cases"]:
        feat = feats[case["video"]]
        response = data["videos"][case["video"]]["response"][
            data["videos"][case["video"]]["sentences"].index(case["sentence"])]
        result = grounder.ground(feat, case["sentence"], decomposition=response)
        rows = np.array([list(m) for m in result.moments])
        # every paraphrase adds its cand_num proposals to the vote
        assert len(rows) > grounder.config.cand_num
        ref = case["reference"]["llm_top1"] if key == "llm_top1" else case[key]
        if first_answer_matches(rows, ref):
            agree += 1
        elif min(clustering_margin(feat, t, grounder.config) for t in [case["sentence"], *case["descriptions"]]) >= 1:
            failures.append((case["video"], case["sentence"]))
    assert not failures, f"{len(failures)} defined cases differ, e.g. {failures[:3]}"
    assert agree >= 0.95 * len(data["cases"]), (agree, len(data["cases"]))


def test_ground_many_and_plain_video_features(charades):
    data, feats = charades
    video = next(iter(data["videos"]))
    sentences = data["videos"][video]["sentences"]
    grounder = Grounder(StandInEncoder(), "tag-charades")
    many = grounder.ground_many(feats[video], sentences)
    assert [r.moments for r in many] == [grounder.ground(feats[video], s).moments for s in sentences]
    # plain VideoFeatures keep unit tokens only: TAG then clusters unit vectors (runs, may differ)
    plain = VideoFeatures(synthetic_features(video, data["videos"][video], seed=0), data["videos"][video]["duration"])
    res = grounder.ground(plain, sentences[0])
    assert 0 <= res.best.start < res.best.end <= plain.duration + 1e-9


# ------------------------------------------------------------ one vector per frame
D = 48


def _vec(text: str) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


class FrameEncoder:
    """CLIP-like: one vector per frame; TAG's frame mask rule is its own constant."""

    space = "toy-clip"
    mask_threshold = 0.2

    def __init__(self, frame_mask_threshold):
        self.frame_mask_threshold = frame_mask_threshold

    def encode_text(self, texts):
        return np.stack([_vec(t) for t in texts])


def clip_video(t: int = 120, event=(45, 75), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((t, D)).astype(np.float32)
    u = _vec("a man waves")
    frames[event[0]:event[1]] += 1.5 * np.sqrt(D) * u / np.linalg.norm(u)
    return frames


def test_one_vector_per_frame_features_use_the_encoders_frame_threshold():
    feats = TagFeatures(clip_video(), duration=40.0)  # (T, D): 3 fps, event 15 s - 25 s
    assert feats.shape == (120, 1, D)
    found = Grounder(FrameEncoder(0.0), "tag-charades").ground(feats, "a man waves")
    assert found.best.iou((15.0, 25.0)) > 0.5
    # the threshold comes from the encoder, not the preset: a stricter one
    # leaves fewer foreground frames and changes the proposals
    strict = Grounder(FrameEncoder(0.3), "tag-charades").ground(feats, "a man waves")
    assert strict.moments != found.moments
    g = Grounder(FrameEncoder(0.0), "tag-charades")
    assert g._tag_threshold(feats) == 0.0
    # (T, Q, D) features keep the token threshold; an explicit config threshold wins
    assert g._tag_threshold(TagFeatures(clip_video()[:, None].repeat(2, axis=1), 40.0)) == 0.2
    assert Grounder(FrameEncoder(0.0), GroundingConfig.preset("tag-charades", mask_threshold=0.1)) \
        ._tag_threshold(feats) == 0.1
    # an encoder without the attribute falls back to its mask_threshold
    assert Grounder(StandInEncoder(), "tag-charades")._tag_threshold(feats) == 0.2


def test_registry_entry_gives_the_frame_threshold():
    from tfvtg.encoders import _REGISTRY, load_encoder, register_encoder

    class Bare:  # no frame_mask_threshold of its own
        def encode_text(self, texts):
            return np.stack([_vec(t) for t in texts])

    register_encoder("test-tag-clip", lambda **kw: Bare(), space="toy-clip", frame_mask_threshold=0.0,
                     overwrite=True)
    try:
        enc = load_encoder("test-tag-clip")
        feats = TagFeatures(clip_video(), duration=40.0)
        assert Grounder(enc, "tag-charades")._tag_threshold(feats) == 0.0
        assert Grounder(enc, "tag-charades").ground(feats, "a man waves").best.iou((15.0, 25.0)) > 0.5
    finally:
        _REGISTRY.pop("test-tag-clip", None)


def test_tag_features_keep_the_stored_vectors():
    raw = (np.random.default_rng(1).standard_normal((10, 4, 8)) * 3).astype(np.float16)
    feats = TagFeatures(raw, duration=5.0)
    assert np.allclose(np.linalg.norm(feats.tokens, axis=-1), 1, atol=1e-5)
    best = np.arange(10) % 4
    assert np.allclose(frame_vectors(feats, best), raw[np.arange(10), best].astype(np.float64), rtol=1e-6)
    # without the norms, the unit tokens
    unit = VideoFeatures(raw, duration=5.0)
    assert np.allclose(np.linalg.norm(frame_vectors(unit, best), axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="rank"):
        TagFeatures(np.zeros(5), duration=1.0)


# ------------------------------------------------------------ the parts
def test_majority_vote_mask():
    above = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1], bool)
    # frame 0 keeps its test; 2, 3 and 8, 9 have an above neighbour; 5 has none
    assert majority_vote_mask(above).tolist() == [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert majority_vote_mask(np.array([0, 1, 0, 0], bool)).all()  # nothing survives: every frame
    assert majority_vote_mask(np.array([0, 1], bool)).tolist() == [False, True]  # < 3 frames: as tested


def test_alignment_matches_tags_numpy_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = (rng.random(int(rng.integers(2, 300))) * 0.5 + 0.21).astype(np.float32)
        for lam in (np.float64(rng.uniform(-2, 2)), np.float64(0.0)):
            y = np.log(x) if lam == 0 else (x ** lam - 1) / lam
            tag = -np.sum(np.log(np.abs(y))) + 0.5 * len(x) * np.log(np.var(y, ddof=1))
            assert _Criterion(x)(lam) == tag
    x = np.array([0.21, 0.25, 0.3, 0.6], np.float32)
    wide = align_scores(x, gamma=0.2)    # range 0.39 > gamma: kept
    assert wide.min() == pytest.approx(0.21) and wide.max() == pytest.approx(0.6)
    narrow = align_scores(x, gamma=0.8)  # narrower than gamma: stretched to gamma
    assert narrow.max() - narrow.min() == pytest.approx(0.8)
    assert np.all(np.diff(wide) > 0)     # monotone
    assert align_scores(np.array([0.3], np.float32), 0.2).tolist() == [pytest.approx(0.3)]


def test_smoothing_and_scenes():
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    out = smooth_frames(x, 3)
    assert out[0].tolist() == pytest.approx(((x[0] + x[0] + x[1]) / 3).tolist())  # edge repeated
    assert out[3].tolist() == pytest.approx(x[2:5].mean(axis=0).tolist())
    assert scene_starts(np.array([2, 2, 0, 0, 0, 1])).tolist() == [0, 2, 5, 6]


def test_kmeans_draws_are_torchs():
    torch = pytest.importorskip("torch")
    for seed, n in [(60, 29), (0, 7), (12345, 700)]:
        torch.manual_seed(seed)
        first = torch.randint(0, n, (1,)).item()
        uniforms = [torch.rand(1).item() for _ in range(8)]
        words = torch_cpu_words(seed, 9)
        assert first == int(words[0]) % n
        assert uniforms == ((words[1:] & 0xFFFFFF) / 2 ** 24).tolist()


def test_sort_order_is_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        keys = (rng.integers(0, max(2, n // 5), n) / 7).astype(np.float32)  # many ties
        assert np.array_equal(torch_sort_order(keys), torch.from_numpy(keys).sort(descending=True)[1].numpy())


def test_kmeans_finds_separated_scenes_with_injected_draws():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.05, (20, 3)) for c in (0.0, 1.0, 2.0)])
    for words in (torch_cpu_words(60, 3), np.array([5, 7 << 24 | 0xFFFFFF, 3], np.uint32)):
        for window in (7, None):
            labels, margin = kmeans_scenes(x, 3, words, temporal_window=window)
            assert scene_starts(labels).tolist() == [0, 20, 40, 60]
            assert margin > 1


# ------------------------------------------------------------ config
def test_tag_config_validation():
    assert GroundingConfig.preset("TAG_ActivityNet").cand_num == 17
    assert GroundingConfig.preset("tag-anet").alignment_gamma == 0.8
    assert GroundingConfig.preset("tag-charades").scoring == "tag"
    # the TFVTG presets are unchanged
    assert PRESETS["charades"] == GroundingConfig(stride=20, max_stride_factor=0.5)
    assert PRESETS["activitynet"] == GroundingConfig(stride=40, max_stride_factor=1.0)
    assert all(PRESETS[p].scoring == "reference" for p in ("charades", "activitynet", "qvhighlights"))
    bad = [("alignment_gamma", 0), ("alignment_gamma", -0.1), ("alignment_gamma", math.nan), ("alignment_gamma", "x"),
           ("cand_num", 0), ("cand_num", 1.5), ("cand_num", True), ("kmeans_k", 0), ("window_radius", 0),
           ("prior", 0), ("prior", 1.5), ("temporal_window_size", 20), ("temporal_window_size", 0),
           ("tc_kmeans", "yes"), ("kmeans_seed", -1), ("kmeans_seed", 2 ** 32), ("scoring", "TAG")]
    for field, value in bad:
        with pytest.raises(ConfigError, match=field):
            GroundingConfig.preset("tag-charades", **{field: value})
    assert GroundingConfig(kmeans_seed=np.int64(7), cand_num=np.int32(3)).kmeans_seed == 7


# ------------------------------------------------------------ part 7: the paper's integration
def test_paper_integration_sums_scores_and_keeps_the_best_combination():
    # one sure sub-event with a doubtful partner (sum 1.1, product 0.1)
    # against two middling ones (sum 1.0, product 0.25): the rules disagree
    a = np.array([[20.0, 30.0, 1.0], [0.0, 10.0, 0.5]])
    b = np.array([[32.0, 40.0, 0.1], [12.0, 18.0, 0.5]])
    reference = combine_sub_events([a, b], "sequentially", keep=4)
    paper = combine_sub_events([a, b], "sequentially", integration="paper", keep=4)
    assert reference[0].tolist() == [0.0, 18.0, 0.25]          # product, then the vote
    assert paper[0].tolist() == [20.0, 40.0, pytest.approx(1.1)]  # sum, union
    assert paper[:, 2].tolist() == sorted(paper[:, 2].tolist(), reverse=True)
    assert len(paper) == 3  # (20-30) before (12-18) breaks the order
    # simultaneous: intersection under the paper, union in the code
    a = np.array([[0.0, 10.0, 1.0], [20.0, 30.0, 0.5]])
    b = np.array([[5.0, 12.0, 0.1], [22.0, 35.0, 0.5]])
    assert combine_sub_events([a, b], "simultaneously")[0].tolist() == [20.0, 35.0, 0.25]
    assert combine_sub_events([a, b], "simultaneously", integration="paper")[0].tolist() == \
        [5.0, 10.0, pytest.approx(1.1)]


def test_paper_integration_changes_the_grounded_answer():
    # the same constructed candidates through Grounder: the final vote gets
    # the paper's best combination, not the code's
    from tfvtg.core import grounder as grounder_module

    calls = {}

    def fake_combine(candidates, relationship, *, integration, gamma, keep):
        calls[integration] = keep
        return combine_sub_events(candidates, relationship, integration=integration, gamma=gamma, keep=keep)

    data = json.loads((FIXTURES / "tag_charades.json").read_text())
    video = next(v for v, d in data["videos"].items()
                 if any(r.get("relationship") == "sequentially" for r in d["response"]))
    info = data["videos"][video]
    i = next(k for k, r in enumerate(info["response"]) if r.get("relationship") == "sequentially")
    feats = VideoFeatures(synthetic_features(video, info, seed=0), info["duration"])
    original = grounder_module.combine_sub_events
    grounder_module.combine_sub_events = fake_combine
    try:
        ref = Grounder(StandInEncoder(), "charades").ground(feats, info["sentences"][i], info["response"][i])
        paper = Grounder(StandInEncoder(), GroundingConfig.preset("charades", integration="paper")).ground(
            feats, info["sentences"][i], info["response"][i])
    finally:
        grounder_module.combine_sub_events = original
    assert calls == {"reference": 2, "paper": 1}  # the paper keeps its one best combination
    assert len(ref.sub_event_moments) == len(paper.sub_event_moments) >= 2
