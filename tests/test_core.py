"""Behaviour of the scoring core: validation, presets, modes, kernels."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfvtg import Decomposition, Grounder, GroundingConfig, GroundingResult, Moment, VideoFeatures
from tfvtg.core.combination import combine_sub_events, vote
from tfvtg.core.proposals import propose, rising_runs, window_lengths

D = 64


def vec(text: str) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


class HashEncoder:
    def __init__(self):
        self.calls = 0

    def encode_text(self, texts):
        self.calls += 1
        return np.stack([vec(t) for t in texts])


def planted(events: dict[str, tuple[int, int]], t: int = 90, q: int = 4, seed: int = 0) -> np.ndarray:
    """(T, Q, D) noise with each text's vector added over its frame span."""
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((t, q, D)).astype(np.float32) * 0.1
    for slot, (text, (a, b)) in enumerate(events.items()):
        u = vec(text)
        feats[a:b, slot % q] += 2.0 * u / np.linalg.norm(u) * np.linalg.norm(feats[0, 0])
    return feats


# ---------------------------------------------------------------- grounding

def test_planted_event_is_found():
    feats = VideoFeatures(planted({"a dog jumps": (30, 54)}), duration=30.0)  # 3 fps: 10 s to 18 s
    res = Grounder(HashEncoder(), "charades").ground(feats, "a dog jumps")
    assert isinstance(res, GroundingResult)
    assert isinstance(res.best, Moment)
    assert res.best.iou((10.0, 18.0)) > 0.5
    assert res.best.score == 1.0
    assert all(0 <= m.start <= m.end <= 30.0 + 1e-9 for m in res.moments)
    assert len(res.moments) <= 10
    assert res.curve.shape == (90,)


def test_ground_many_matches_single_queries_and_batches_text():
    feats = VideoFeatures(planted({"x": (10, 30), "y": (50, 80)}), duration=30.0)
    enc = HashEncoder()
    g = Grounder(enc, "charades")
    many = g.ground_many(feats, ["x", "y"])
    assert enc.calls == 1
    for res, q in zip(many, ["x", "y"]):
        # one matrix product for both texts rounds differently in the last bits
        single = g.ground(feats, q).moments
        assert np.allclose(np.array(res.moments), np.array(single), rtol=1e-5)


def test_two_dimensional_features_are_one_token_per_frame():
    arr = planted({"x": (10, 30)}, q=1)
    a = Grounder(HashEncoder(), "charades").ground(VideoFeatures(arr[:, 0], 30.0), "x")
    b = Grounder(HashEncoder(), "charades").ground(VideoFeatures(arr, 30.0), "x")
    np.testing.assert_array_equal(np.array(a.moments), np.array(b.moments))


def test_torch_features_give_the_same_moments():
    torch = pytest.importorskip("torch")
    arr = planted({"x": (10, 30)})
    a = Grounder(HashEncoder(), "charades").ground(VideoFeatures(arr, 30.0), "x")
    b = Grounder(HashEncoder(), "charades").ground(VideoFeatures(torch.from_numpy(arr), 30.0), "x")
    np.testing.assert_allclose([m[:2] for m in a.moments], [m[:2] for m in b.moments], rtol=1e-6)


def test_video_shorter_than_one_stride_still_yields_moments():
    feats = VideoFeatures(planted({"x": (2, 6)}, t=8), duration=8 / 3)
    res = Grounder(HashEncoder(), "activitynet").ground(feats, "x")
    assert res.moments and 0 <= res.best.start < res.best.end <= 8 / 3 + 1e-9
    assert window_lengths(8, GroundingConfig.preset("activitynet")) == (4, 8)


class AxisEncoder:
    def encode_text(self, texts):
        out = np.zeros((len(texts), D), np.float32)
        out[:, 0] = 1.0
        return out


def test_no_foreground_gives_reference_fallback_or_whole_video():
    arr = np.random.default_rng(0).standard_normal((40, 2, D))
    arr[..., 0] = 0.0  # every frame orthogonal to the text: similarity 0 everywhere
    feats = VideoFeatures(arr, duration=10.0)
    ref = Grounder(AxisEncoder(), "charades").ground(feats, "nothing here")
    assert [tuple(m) for m in ref.moments] == [(0.0, 0.0, 1.0)] * 3
    safe = Grounder(AxisEncoder(), "default").ground(feats, "nothing here")
    assert [tuple(m) for m in safe.moments] == [(0.0, 10.0, 0.0)]


def test_nan_safe_scores_are_finite():
    # every foreground frame fits in one window: the reference case for NaN
    feats = VideoFeatures(planted({"x": (40, 50)}), duration=30.0)
    curve_cfg = GroundingConfig.preset("charades", nan_safe=True)
    res = Grounder(HashEncoder(), curve_cfg).ground(feats, "x")
    assert all(np.isfinite(m.score) for m in res.moments)
    assert res.best.iou((40 / 3, 50 / 3)) > 0.3


def test_paper_scoring_finds_the_event():
    feats = VideoFeatures(planted({"a dog jumps": (30, 54)}), duration=30.0)
    cfg = GroundingConfig.preset("charades", scoring="paper", nan_safe=True)
    res = Grounder(HashEncoder(), cfg).ground(feats, "a dog jumps")
    assert res.best.iou((10.0, 18.0)) > 0.5


def test_decomposition_sequential_and_simultaneous():
    events = {"q": (20, 70), "first": (20, 40), "second": (45, 70), "qq": (20, 70)}
    feats = VideoFeatures(planted(events), duration=30.0)
    g = Grounder(HashEncoder(), "charades")
    seq = {"relationship": "sequentially",
           "query_json": [{"descriptions": ["qq"]}, {"descriptions": ["first"]}, {"descriptions": ["second"]}]}
    res = g.ground(feats, "q", decomposition=seq)
    assert res.decomposition.relationship == "sequentially"
    assert len(res.sub_event_moments) == 2 and len(res.sub_event_curves) == 2
    assert res.best.iou((20 / 3, 70 / 3)) > 0.5
    # a Decomposition object is accepted as well as the dict
    again = g.ground(feats, "q", decomposition=Decomposition.from_tfvtg(seq))
    assert again.moments == res.moments


def test_combination_relations_and_paper_integration():
    a = np.array([[0.0, 10.0, 1.0], [20.0, 30.0, 0.5]])
    b = np.array([[5.0, 15.0, 1.0], [12.0, 25.0, 0.8]])
    seq = combine_sub_events([a, b], "sequentially", keep=10)
    # only (0-10, 12-25) keeps order: start 12 >= previous end 10
    assert seq.tolist() == [[0.0, 25.0, 0.8]]
    sim = combine_sub_events([a, b], "simultaneously", keep=10)
    # overlapping pairs only; the union of each, scored by the product
    assert sorted(map(tuple, sim.tolist())) == [(0.0, 15.0, 1.0), (12.0, 30.0, 0.4)]
    inter = combine_sub_events([a, b], "simultaneously", integration="paper", keep=10)
    # the paper: intersections, scored by the sum of the sub-events' confidences
    assert sorted(map(tuple, inter.tolist())) == [(5.0, 10.0, 2.0), (20.0, 25.0, 1.3)]
    assert combine_sub_events([a, b], "sequentially", keep=10).shape == (1, 3)
    assert combine_sub_events([], "sequentially").shape == (0, 3)


def test_vote_prefers_agreement():
    rows = np.array([[0.0, 10.0, 1.0], [50.0, 60.0, 1.0], [1.0, 11.0, 0.9], [2.0, 10.0, 0.8]])
    assert vote(rows)[0][0] in (0.0, 1.0, 2.0)
    assert vote(rows)[-1].tolist() == [50.0, 60.0, 1.0]


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("array,match", [
    (np.zeros((5,)), "rank 1"),
    (np.zeros((5, 2, 3, 4)), "rank 4"),
    (np.zeros((1, 2, 3)), "at least 2 frames"),
    (np.full((4, 2, 3), np.nan), "NaN or inf"),
    (np.array([["a"]]), "numeric"),
])
def test_bad_features_raise(array, match):
    with pytest.raises(ValueError, match=match):
        VideoFeatures(array, duration=1.0)


@pytest.mark.parametrize("duration", [0, -1, float("nan"), "long"])
def test_bad_duration_raises(duration):
    with pytest.raises(ValueError, match="duration"):
        VideoFeatures(np.zeros((4, 2, 3)), duration=duration)


def test_bad_queries_and_encoders_raise():
    feats = VideoFeatures(planted({"x": (10, 20)}), 30.0)
    g = Grounder(HashEncoder(), "charades")
    for q in ["", "   ", None]:
        with pytest.raises(ValueError, match="non-empty"):
            g.ground(feats, q)

    class WrongDim:
        def encode_text(self, texts):
            return np.ones((len(texts), D + 1))

    with pytest.raises(ValueError, match="dimension"):
        Grounder(WrongDim()).ground(feats, "x")
    with pytest.raises(TypeError, match="encode_text"):
        Grounder(object())
    with pytest.raises(TypeError, match="VideoFeatures"):
        g.ground(np.zeros((4, 2, D)), "x")


@pytest.mark.parametrize("dec,match", [
    ({"query_json": [{"descriptions": ["a"]}]}, "relationship"),
    ({"relationship": "sequentially"}, "query_json"),
    ({"relationship": "afterwards", "query_json": [{"descriptions": ["a"]}]}, "unknown relationship"),
    ({"relationship": "sequentially", "query_json": [{"descriptions": []}]}, "empty"),
    ({"relationship": "sequentially", "query_json": [{"descriptions": [""]}]}, "non-empty"),
    ({"relationship": "sequentially", "query_json": [{"descriptions": "a b"}]}, "list of strings"),
    ({"relationship": "sequentially", "query_json": [{"text": ["a"]}]}, "descriptions"),
    ("sequentially", "dict"),
])
def test_invalid_decompositions_raise(dec, match):
    with pytest.raises(ValueError, match=match):
        Decomposition.from_tfvtg(dec)


def test_decomposition_round_trip():
    d = {"reasoning": "r", "relationship": "sequential",
         "query_json": [{"sub_query_id": 0, "descriptions": ["whole"]},
                        {"sub_query_id": 1, "descriptions": ["a", "b"]}]}
    dec = Decomposition.from_tfvtg(d)
    assert dec.relationship == "sequentially"
    assert Decomposition.from_tfvtg(dec.to_tfvtg()) == dec


def test_presets_and_config_errors():
    assert GroundingConfig.preset("charades").stride == 20
    assert GroundingConfig.preset("ActivityNet").max_stride_factor == 1.0
    assert GroundingConfig.preset("qvhighlights").stride == 50
    assert GroundingConfig.preset("default").nan_safe
    assert GroundingConfig.preset("charades", top_k=5).top_k == 5
    with pytest.raises(ValueError, match="unknown preset"):
        GroundingConfig.preset("kinetics")
    with pytest.raises(ValueError, match="unknown GroundingConfig field"):
        GroundingConfig.preset("charades", strid=3)
    with pytest.raises(ValueError, match="stride"):
        GroundingConfig(stride=0)
    with pytest.raises(ValueError, match="max_stride_factor"):
        GroundingConfig(max_stride_factor=1.5)
    with pytest.raises(ValueError, match="integration"):
        GroundingConfig(integration="both")
    with pytest.raises(dataclasses.FrozenInstanceError):
        GroundingConfig().stride = 3  # frozen


# ---------------------------------------------------------------- kernels

def naive_rising(masked: np.ndarray, fg: np.ndarray, stride: int, thr: float = 0.0005):
    """Plain-Python transcription of the method's rising-run rule."""
    if stride < 3:
        taps = np.ones(1, np.float32)
    else:
        half = min(stride - 2, 3) // 2
        x = np.arange(-half, half + 1)
        taps = (np.exp(-x ** 2 / 2.0) / np.sqrt(2 * np.pi)).astype(np.float32)
    smooth = np.array([np.float32(sum(np.float32(taps[j] * masked[i + j]) for j in range(len(taps))))
                       for i in range(len(masked) - len(taps) + 1)], np.float32)
    diff = np.diff(smooth)
    pad = len(taps) // 2
    rises = np.zeros(len(masked), np.float32)
    rises[pad:pad + len(diff)] = diff
    rises *= fg
    starts = []
    f1 = f2 = f3 = np.float32(0)
    s = 0
    for i, f in enumerate(rises):
        f3, f2, f1 = f2, f1, f
        th = np.float32(thr)
        if 3 * f1 > th or 2 * f1 + f2 > th or f1 + f2 + f3 > th:
            pass
        else:
            s = i
        starts.append(s)
    return np.array(starts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=2, max_size=60), st.integers(1, 25))
def test_rising_runs_match_the_rule(values, stride):
    curve = np.array(values, np.float32)
    fg = curve > np.float32(0.2)
    masked = np.where(fg, curve, 0).astype(np.float32)
    stride = max(1, min(stride, len(curve) // 2))
    starts, dyn = rising_runs(masked, fg, stride, 1.0, 0.0005)
    assert np.array_equal(starts, naive_rising(masked, fg, stride))
    assert (starts <= np.arange(len(curve))).all() and (dyn >= 0).all()


def naive_proposals(curve: np.ndarray, cfg: GroundingConfig):
    """Enumerate every window, stable-sort, greedy NMS: the method as written."""
    t = len(curve)
    fg = curve > np.float32(0.2 if cfg.mask_threshold is None else cfg.mask_threshold)  # None: BLIP-2's 0.2
    m = np.where(fg, curve, 0).astype(np.float64)
    stride, longest = window_lengths(t, cfg)
    cands = []
    for length in range(stride, longest + 1, stride):
        for k in range(t - length + 1):
            inner = m[k:k + length].sum()
            out_n = fg.sum() - fg[k:k + length].sum()
            if out_n == 0:
                if fg.sum() == 0:
                    continue
                score = inner / length  # nan-safe
            else:
                score = inner / length - (m.sum() - inner) / out_n
            cands.append((score, k, k + length))
    order = sorted(range(len(cands)), key=lambda i: -cands[i][0])  # stable
    kept = []
    for i in order:
        _, s, e = cands[i]
        ok = True
        for _, ks, ke in kept:
            a0, a1, b0, b1 = (np.float32(v) / np.float32(t) for v in (s, e, ks, ke))
            inter = max(np.float32(min(a1, b1) - max(a0, b0)), np.float32(0))
            union = np.float32(max(a1, b1) - min(a0, b0))
            if np.float32(inter / union) > np.float32(cfg.nms_threshold):
                ok = False
                break
        if ok:
            kept.append(cands[i])
        if len(kept) == cfg.top_k:
            break
    return kept


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=2, max_size=80), st.integers(1, 12),
       st.floats(0.1, 1.0))
def test_streaming_nms_equals_sort_then_suppress(values, stride, factor):
    curve = np.array(values, np.float32)
    cfg = GroundingConfig(stride=stride, max_stride_factor=factor, nan_safe=True)
    got = propose(curve, cfg)
    want = naive_proposals(curve, cfg)
    assert [(int(w), int(e)) for w, e in zip(got.window_start, got.end)] == [(s, e) for _, s, e in want]
    assert np.allclose(got.score, [sc for sc, _, _ in want], rtol=1e-9, atol=1e-12)


def test_import_is_light_and_public_api_resolves():
    import subprocess
    import sys

    code = ("import sys, tfvtg\n"
            "from tfvtg import Grounder, GroundingConfig, VideoFeatures, Moment, GroundingResult, ground, Decomposition\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'matplotlib', 'av', 'decord') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import numpro\n"
            "assert 'torch' not in sys.modules\n"
            "missing = [n for n in tfvtg.__all__ + numpro.__all__ if n != '__version__' "
            "and getattr(tfvtg if n in tfvtg.__all__ else numpro, n, None) is None]\n"
            "assert not missing, missing\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["relationship", "query_json", "descriptions", "reasoning", "x"]), c,
                        max_size=4), max_leaves=15))
def test_decomposition_parser_only_raises_value_error(value):
    try:
        dec = Decomposition.from_tfvtg(value)
    except ValueError:
        return
    assert dec.relationship in ("single-query", "simultaneously", "sequentially")
    assert dec.query_descriptions and all(isinstance(t, str) and t.strip() for t in dec.query_descriptions)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.3, 0.45, 0.6, 0.9]), min_size=2, max_size=120)
       | st.lists(st.floats(0, 1, width=32), min_size=2, max_size=120)
       # what no encoder gives but a caller of propose() can: infinite sums make NaN scores anywhere
       | st.lists(st.sampled_from([0.0, 0.3, 0.6, float("inf"), float("nan"), -float("inf"), 3e38]),
                  min_size=2, max_size=120),
       st.integers(1, 9), st.floats(0.2, 1.0), st.sampled_from([0, 1, 2]), st.integers(1, 12),
       st.sampled_from([1, 3, 8, 128]), st.booleans())
def test_skipping_hopeless_lengths_changes_no_proposal(values, stride, factor, nan_rule, top_k, block, paper):
    """NMS rounds skip window lengths, and blocks of window starts, whose
    best score is below what the round is known to reach; short curves keep
    every window's score and a suppressed flag instead (dense). On tie-heavy
    and on continuous curves, under every NaN rule, block size and scoring,
    each way must equal the plain full scan's result, tie flags included."""
    from tfvtg.core.proposals import _select, rising_runs, window_lengths  # noqa: F401

    curve = np.array(values, np.float32)
    cfg = GroundingConfig(stride=stride, max_stride_factor=factor, top_k=top_k)
    stride_used, longest = window_lengths(len(curve), cfg)
    fg = curve > np.float32(0.2)
    masked = np.where(fg, curve, np.float32(0)).astype(np.float32)
    args = (masked, fg, stride_used, longest, top_k, cfg.nms_threshold, nan_rule, paper, cfg.gaussian_sigma,
            cfg.dynamic_threshold)
    full = _select(*args, False, block, 0)  # every window scored and tested against every kept one
    for ways in ((True, block, 0), (False, block, 1 << 30), (True, block, 1 << 30)):  # pruned, dense, both
        for a, b in zip(_select(*args, *ways), full):
            np.testing.assert_array_equal(a, b)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.3, 0.45, 0.6, 0.9]), min_size=2, max_size=150)
       | st.lists(st.floats(0, 1, width=32), min_size=2, max_size=150),
       st.sampled_from(["charades", "activitynet", "default", "qvhighlights"]), st.booleans(),
       st.floats(0.5, 500.0))
def test_compiled_proposal_rows_equal_the_python_path(values, preset, paper, duration):
    """Grounder takes a curve's rows from one compiled call (proposal_table);
    they must be the rows of propose() + proposal_rows(), bit for bit: the
    same seconds, the same reference confidences (NaN included) and the same
    normalised scores."""
    from tfvtg.core.grounder import proposal_rows
    from tfvtg.core.proposals import proposal_table

    curve = np.array(values, np.float32)
    config = GroundingConfig.preset(preset).replace(mask_threshold=0.2)
    if paper:
        config = config.replace(scoring="paper")
    features = VideoFeatures(np.ones((len(curve), 1, 4), np.float32), duration)
    proposals = propose(curve, config)
    table = proposal_table(curve, config, duration)
    if len(proposals) == 0:
        assert table.shape == (0, 3)
        return
    np.testing.assert_array_equal(table, proposal_rows(proposals, features, config))
