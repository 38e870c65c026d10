"""The fast scoring path: the fused max-over-tokens kernel, features kept
float16 / memory-mapped (``normalized=True``), and what must not change
because of them (results, the caller's arrays, memory)."""
from __future__ import annotations

import os
import pickle
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfvtg import Grounder, InvalidInputError, VideoFeatures
from tfvtg.core import similarity
from tfvtg.core.errors import InvalidTypeError
from tfvtg.core.features import first_nonfinite_frame, looks_normalised
from tfvtg.core.similarity import max_token_similarity, normalise_text_embeddings, similarity_curves


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return (a / np.where(n == 0, 1.0, n)).astype(np.float32)


def float32_reference(tokens: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The float32 reference path: tokens widened to float32, one BLAS
    product, max over the Q tokens. (n, T)."""
    t, q, d = tokens.shape
    sims = text.astype(np.float32) @ tokens.astype(np.float32).reshape(t * q, d).T
    return sims.reshape(len(text), t, q).max(axis=2)


def exact_reference(tokens: np.ndarray, text: np.ndarray) -> np.ndarray:
    t, q, d = tokens.shape
    sims = text.astype(np.float64) @ tokens.astype(np.float32).astype(np.float64).reshape(t * q, d).T
    return sims.reshape(len(text), t, q).max(axis=2)


class VecEncoder:
    """Texts to fixed random vectors (distinct per text), in D dimensions."""

    def __init__(self, d: int):
        self.d = d

    def vec(self, text: str) -> np.ndarray:
        seed = sum(ord(c) * (i + 1) for i, c in enumerate(text))
        return np.random.default_rng(seed).standard_normal(self.d).astype(np.float32)

    def encode_text(self, texts):
        return np.stack([self.vec(t) for t in texts])


def planted_unit_tokens(t: int, q: int, d: int, enc: VecEncoder, text: str, span: tuple[int, int],
                        seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((t, q, d)).astype(np.float32)
    u = enc.vec(text)
    raw[span[0]:span[1], 1] += 3.0 * np.sqrt(d) * u / np.linalg.norm(u)
    return unit(raw)


@pytest.fixture()
def two_threads():
    """numba's threads for the kernel, two of them (tests that need them
    skip on a one-thread setup, NUMBA_NUM_THREADS=1)."""
    if similarity.numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba runs one thread here")
    similarity.numba.set_num_threads(2)
    with pytest.MonkeyPatch.context() as mp:  # threads even where one thread has been faster
        mp.setattr(similarity._THREAD_CHOICE, "choose", lambda: (True, False))
        yield


# ------------------------------------------------------------------ kernel

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.integers(1, 40), q=st.integers(1, 9), d=st.integers(1, 70), n=st.integers(1, 5),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]), seed=st.integers(0, 2**32 - 1),
       zero_tokens=st.booleans())
def test_kernel_equals_float32_reference(t, q, d, n, dtype, seed, zero_tokens):
    rng = np.random.default_rng(seed)
    tokens = unit(rng.standard_normal((t, q, d)))
    if zero_tokens:  # normalisation keeps an all-zero token zero
        tokens[rng.integers(0, t), rng.integers(0, q)] = 0.0
    tokens = tokens.astype(dtype)
    text = unit(rng.standard_normal((n, d)))
    got = max_token_similarity(tokens, text)
    assert got.shape == (n, t) and got.dtype == np.float32
    np.testing.assert_allclose(got, float32_reference(tokens, text), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, exact_reference(tokens, text), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_similarity_curves_on_kept_tokens_equal_reference(dtype):
    rng = np.random.default_rng(3)
    tokens = unit(rng.standard_normal((50, 32, 256))).astype(dtype)
    feats = VideoFeatures(tokens, 20.0, normalized=True)
    raw_text = rng.standard_normal((3, 256)).astype(np.float32) * 7.0  # normalised inside
    curves = similarity_curves(feats, raw_text)
    np.testing.assert_allclose(curves, float32_reference(tokens, unit(raw_text)), rtol=0, atol=1e-6)


def test_videos_are_split_over_threads_and_match_one_thread(monkeypatch, two_threads):
    rng = np.random.default_rng(1)
    tokens = unit(rng.standard_normal((700, 32, 64))).astype(np.float16)
    text = unit(rng.standard_normal((3, 64)))
    calls = []
    original = similarity._curves_parallel

    def spy(*args):
        calls.append(args[3])
        return original(*args)

    monkeypatch.setattr(similarity, "_curves_parallel", spy)
    got = max_token_similarity(tokens, text)
    assert calls and calls[0] >= 2, "a video should be handed out in slices"
    one_thread = np.empty_like(got)
    similarity._curves_frames(tokens.view(np.uint16), text, one_thread, 0, tokens.shape[0], 0)
    np.testing.assert_array_equal(got, one_thread)
    np.testing.assert_allclose(got, float32_reference(tokens, text), rtol=0, atol=1e-6)


def test_thread_choice_follows_measured_speed_and_keeps_probing():
    choice = similarity._ThreadChoice()

    def run(calls, cost_one, cost_threads):
        picks = []
        for _ in range(calls):
            threads, probe = choice.choose()
            picks.append(threads)
            choice.record(threads, probe, cost_threads if threads else cost_one)
        return picks

    assert choice.choose() == (False, True)  # one thread measured first
    for _ in range(choice.WARMUP):
        choice.record(False, True, 50.0)  # the first calls of each way are not counted
    run(40, 2.0, 1.0)
    assert sum(run(64, 2.0, 1.0)) >= 56  # idle: threads, one thread tried now and then
    run(2000, 2.0, 4.0)  # the machine gets busy: threads become twice as slow
    picks = run(1024, 2.0, 4.0)
    assert sum(picks) <= 2 and choice.probe_every == choice.LAST_PROBE
    run(1200, 2.0, 1.0)  # idle again
    assert sum(run(256, 2.0, 1.0)) >= 240


def test_a_slow_start_of_the_threads_is_forgotten_at_the_first_winning_probe():
    # numba's threads starting (or a busy minute) made every threaded sample
    # slow; once a probe shows them faster, they are used again at once,
    # not after the eight kept samples have been replaced one probe at a time
    choice = similarity._ThreadChoice()

    def call(cost_one, cost_threads):
        threads, probe = choice.choose()
        choice.record(threads, probe, cost_threads if threads else cost_one)
        return threads

    for _ in range(3000):
        call(2.0, 20.0)  # threads ten times slower
    assert choice.typical[True] == 20.0 and choice.probe_every == choice.LAST_PROBE
    picks = [call(2.0, 1.0) for _ in range(choice.LAST_PROBE + 16)]  # now twice as fast
    first = picks.index(True)  # the probe
    # right after the winning probe: threads, with one thread probed now and then
    assert sum(picks[first:first + 16]) >= 14, picks[first:first + 16]


def test_threads_are_kept_through_cache_swings_smaller_than_the_bias():
    # a clip read twice in a row is in cache the second time: costs swing
    # about 2x, so a threaded median up to THREADS_BIAS times one thread's
    # (a cold stretch against a warm one) keeps the threads
    choice = similarity._ThreadChoice()
    for _ in range(64):
        threads, probe = choice.choose()
        choice.record(threads, probe, 1.3 if threads else 1.0)
    picks = []
    for _ in range(256):
        threads, probe = choice.choose()
        picks.append(threads)
        choice.record(threads, probe, 1.3 if threads else 1.0)
    assert sum(picks) >= 240


def test_short_videos_use_what_has_been_faster(monkeypatch):
    rng = np.random.default_rng(7)
    short = unit(rng.standard_normal((100, 32, 64))).astype(np.float16)  # 205 k values: measured
    text = unit(rng.standard_normal((1, 64)))
    calls = []
    original = similarity._curves_parallel

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(similarity, "_curves_parallel", spy)
    slow_threads = similarity._ThreadChoice()
    slow_threads.typical = {False: 1e-9, True: 1e-6}
    slow_threads.probe_every = slow_threads.LAST_PROBE
    monkeypatch.setattr(similarity, "_THREAD_CHOICE", slow_threads)
    for _ in range(20):
        np.testing.assert_allclose(max_token_similarity(short, text), float32_reference(short, text), atol=1e-6)
    assert calls == [] and slow_threads.calls == 20


def test_concurrent_calls_from_threads_agree(two_threads):
    rng = np.random.default_rng(2)
    tokens = unit(rng.standard_normal((600, 32, 64))).astype(np.float16)
    texts = [unit(rng.standard_normal((2, 64))) for _ in range(4)]
    expected = [float32_reference(tokens, x) for x in texts]
    results: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            results[i] = max_token_similarity(tokens, texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(4):
        np.testing.assert_allclose(results[i], expected[i], rtol=0, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_process_forked_after_the_thread_pool_started_still_scores(two_threads):
    # GNU OpenMP's pool does not survive fork(): numba would terminate the child
    rng = np.random.default_rng(4)
    tokens = unit(rng.standard_normal((700, 32, 64))).astype(np.float16)
    text = unit(rng.standard_normal((1, 64)))
    expected = max_token_similarity(tokens, text)  # starts numba's threads here
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, pickle.dumps(max_token_similarity(tokens, text)))
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    np.testing.assert_array_equal(pickle.loads(data), expected)


def test_prefetching_changes_nothing_but_speed():
    rng = np.random.default_rng(6)
    tokens = unit(rng.standard_normal((37, 5, 48))).astype(np.float16).view(np.uint16)
    text = unit(rng.standard_normal((3, 48)))
    plain, fetched = np.empty((3, 37), np.float32), np.empty((3, 37), np.float32)
    similarity._curves_frames(tokens, text, plain, 0, 37, 0)
    similarity._curves_frames(tokens, text, fetched, 0, 37, 2)
    np.testing.assert_array_equal(plain, fetched)


def test_kernel_input_checks():
    text = unit(np.ones((1, 8)))
    with pytest.raises(InvalidInputError, match="float16/32/64"):
        max_token_similarity(np.ones((4, 2, 8), np.int16), text)
    tokens = unit(np.random.default_rng(0).standard_normal((6, 2, 8)))
    strided = np.asfortranarray(tokens)  # copied, not refused
    np.testing.assert_allclose(max_token_similarity(strided, text), float32_reference(tokens, text), atol=1e-6)


def test_text_embeddings_are_checked_and_normalised():
    out = normalise_text_embeddings(np.array([3.0, 4.0]), 2)
    np.testing.assert_allclose(out, [[0.6, 0.8]])
    np.testing.assert_array_equal(normalise_text_embeddings(np.zeros((1, 2)), 2), [[0.0, 0.0]])
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        normalise_text_embeddings(np.array([[1.0, np.nan]]), 2)
    with pytest.raises(InvalidInputError, match="D=3"):
        normalise_text_embeddings(np.ones((1, 2)), 3)


# ------------------------------------------------------ VideoFeatures kept

def test_normalized_float16_tokens_are_kept_without_a_copy():
    tokens = unit(np.random.default_rng(0).standard_normal((30, 4, 16))).astype(np.float16)
    feats = VideoFeatures(tokens, 10.0, normalized=True)
    assert feats.tokens.dtype == np.float16
    assert np.shares_memory(feats.tokens, tokens)
    assert feats.shape == (30, 4, 16) and feats.num_frames == 30 and len(feats) == 30
    np.testing.assert_allclose(feats.frames_to_seconds(np.array([0, 15, 30])), [0.0, 5.0, 10.0])
    per_frame = np.ascontiguousarray(tokens[:, 0])
    two_d = VideoFeatures(per_frame, 10.0, normalized=True)  # (T, D): one token per frame
    assert two_d.shape == (30, 1, 16) and np.shares_memory(two_d.tokens, per_frame)


def test_memory_mapped_file_stays_mapped(tmp_path):
    tokens = unit(np.random.default_rng(0).standard_normal((40, 8, 32))).astype(np.float16)
    np.save(tmp_path / "v.npy", tokens)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    feats = VideoFeatures(mapped, 20.0, normalized=True)
    assert np.shares_memory(feats.tokens, mapped)
    assert not feats.tokens.flags.writeable
    curves = similarity_curves(feats, unit(np.ones((1, 32))))
    np.testing.assert_allclose(curves, float32_reference(tokens, unit(np.ones((1, 32)))), atol=1e-6)


def _memory_mapped(array: np.ndarray) -> bool:
    base: object = array
    while base is not None:
        if isinstance(base, np.memmap):
            return True
        base = getattr(base, "base", None)
    return False


def test_saved_features_load_as_float16_memory_map_and_ground_the_same(tmp_path):
    enc = VecEncoder(64)
    raw = planted_unit_tokens(120, 6, 64, enc, "a cat sleeps", (40, 70)) * 5.0  # not unit: raw encoder output
    in_memory = VideoFeatures(raw, 40.0, encoder="test-space")
    path = in_memory.save(tmp_path / "clip.npy")
    loaded = VideoFeatures.load(path)
    assert loaded.tokens.dtype == np.float16 and _memory_mapped(loaded.tokens)
    assert loaded.encoder == "test-space" and loaded.duration == 40.0
    g = Grounder(enc, "charades")
    a = g.ground(in_memory, "a cat sleeps")
    b = g.ground(loaded, "a cat sleeps")
    assert b.best.iou((40 / 3, 70 / 3)) > 0.6
    np.testing.assert_allclose(b.curve, a.curve, atol=2e-3)  # float16 storage of the unit tokens
    assert [m[:2] for m in b.moments[:3]] == [m[:2] for m in a.moments[:3]]
    # the same tokens widened to float32 score to within 1e-6
    widened = VideoFeatures(np.asarray(loaded.tokens, dtype=np.float32), 40.0, normalized=True)
    np.testing.assert_allclose(g.ground(widened, "a cat sleeps").curve, b.curve, rtol=0, atol=1e-6)


def test_raw_feature_files_are_still_normalised_into_float32(tmp_path):
    raw = (np.random.default_rng(5).standard_normal((30, 4, 16)) * 3).astype(np.float16)
    np.save(tmp_path / "raw.npy", raw)  # e.g. TFVTG's released files: raw Q-Former output
    loaded = VideoFeatures.load(tmp_path / "raw.npy")
    assert loaded.tokens.dtype == np.float32 and not _memory_mapped(loaded.tokens)
    np.testing.assert_allclose(np.linalg.norm(loaded.tokens, axis=-1), 1.0, atol=1e-5)
    assert not looks_normalised(raw) and looks_normalised(unit(raw))
    assert not looks_normalised(np.ones((5, 3), np.int32))


def test_grounding_a_memory_mapped_video_makes_no_float32_copy(tmp_path):
    enc = VecEncoder(256)
    tokens = planted_unit_tokens(1500, 32, 256, enc, "a door opens", (600, 700)).astype(np.float16)
    path = tmp_path / "long.npy"
    np.save(path, tokens)
    nbytes = tokens.nbytes  # 24.6 MB; a float32 copy would be twice that
    del tokens
    g = Grounder(enc, "default")
    tracemalloc.start()
    try:
        feats = VideoFeatures.load(path, duration=500.0)
        res = g.ground(feats, "a door opens")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < nbytes / 8, f"grounding allocated {peak / 2**20:.1f} MiB for {nbytes / 2**20:.1f} MiB of tokens"
    assert _memory_mapped(feats.tokens)
    assert res.best.iou((200.0, 233.3)) > 0.5


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_kept_tokens_with_nan_or_inf_are_refused_naming_the_frame(dtype, bad, tmp_path):
    tokens = unit(np.random.default_rng(0).standard_normal((20, 4, 8))).astype(dtype)
    tokens[13, 2, 5] = bad
    with pytest.raises(InvalidInputError, match="frame 13"):
        VideoFeatures(tokens, 5.0, normalized=True)
    np.save(tmp_path / "bad.npy", tokens)
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        VideoFeatures(np.load(tmp_path / "bad.npy", mmap_mode="r"), 5.0, normalized=True)
    assert first_nonfinite_frame(tokens) == 13
    assert first_nonfinite_frame(np.nan_to_num(tokens, nan=0.0, posinf=0.0, neginf=0.0)) == -1


def test_float16_overflow_in_a_raw_array_is_still_refused():
    big = np.full((4, 2, 3), 65504.0, np.float16)
    big[2, 1, 1] = np.inf
    with pytest.raises(InvalidInputError, match="frame 2"):
        VideoFeatures(big, 2.0)


def test_non_unit_tokens_passed_as_normalized_are_refused():
    tokens = unit(np.random.default_rng(0).standard_normal((20, 4, 8)))
    with pytest.raises(InvalidInputError, match="normalized=False"):
        VideoFeatures(tokens * 1.5, 5.0, normalized=True)
    with pytest.raises(InvalidInputError, match="floating point"):
        VideoFeatures((tokens * 100).astype(np.int16), 5.0, normalized=True)
    with pytest.raises(InvalidTypeError, match="True or False"):
        VideoFeatures(tokens, 5.0, normalized="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="at least 2 frames"):
        VideoFeatures(tokens[:1], 5.0, normalized=True)


def test_non_native_or_strided_arrays_are_copied_in_their_own_width():
    tokens = unit(np.random.default_rng(0).standard_normal((10, 4, 8)))
    swapped = tokens.astype(">f4")
    feats = VideoFeatures(swapped, 5.0, normalized=True)
    assert feats.tokens.dtype == np.float32 and feats.tokens.dtype.isnative
    strided = VideoFeatures(tokens[::2], 5.0, normalized=True)
    assert strided.tokens.flags.c_contiguous
    text = unit(np.ones((1, 8)))
    np.testing.assert_allclose(similarity_curves(feats, text), float32_reference(tokens, text), atol=1e-6)


def test_raw_float32_input_is_not_modified():
    arr = np.random.default_rng(0).standard_normal((20, 1, 8)).astype(np.float32) * 4
    before = arr.copy()
    VideoFeatures(arr[:, 0], 5.0)  # contiguous float32: used to be normalised in place
    VideoFeatures(arr, 5.0)
    np.testing.assert_array_equal(arr, before)


def test_torch_tokens_kept_on_their_device_in_their_dtype():
    torch = pytest.importorskip("torch")
    tokens = unit(np.random.default_rng(0).standard_normal((30, 4, 16))).astype(np.float16)
    tensor = torch.from_numpy(tokens)
    feats = VideoFeatures(tensor, 10.0, normalized=True)
    assert feats.on_torch and feats.tokens.dtype == torch.float16 and feats.tokens.device == tensor.device
    assert feats.tokens.data_ptr() == tensor.data_ptr()
    text = unit(np.random.default_rng(1).standard_normal((2, 16)))
    np.testing.assert_allclose(similarity_curves(feats, text), float32_reference(tokens, text), atol=1e-6)
    with pytest.raises(InvalidInputError, match="normalized=False"):
        VideoFeatures(tensor.float() * 2, 10.0, normalized=True)
    bad = tensor.clone()
    bad[3, 1, 2] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        VideoFeatures(bad, 10.0, normalized=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
def test_normalized_check_finds_the_one_long_token_in_every_dtype(dtype):
    # the compiled norm sample must read float16 bits, float32 and float64
    # alike (and byte-swapped arrays through the fallback): a token of norm
    # 3 at a sampled place is named, unit tokens pass
    tokens = unit(np.random.default_rng(1).standard_normal((20, 4, 16)))
    assert looks_normalised(tokens.astype(dtype))
    VideoFeatures(tokens.astype(dtype), 10.0, normalized=True)
    long = tokens.copy()
    long[0, 0] *= 3.0  # frame 0 token 0 is always in the sample
    assert not looks_normalised(long.astype(dtype))
    with pytest.raises(InvalidInputError, match=r"token 0 of frame 0 has norm 3"):
        VideoFeatures(long.astype(dtype), 10.0, normalized=True)
    zero = tokens.copy()
    zero[0, 0] = 0.0  # a zero token stays allowed (normalisation keeps it zero)
    VideoFeatures(zero.astype(dtype), 10.0, normalized=True)


def test_float16_copy_rounds_exactly_as_numpy():
    # the stored form of tokens: every finite float32 bit pattern (normal,
    # subnormal, overflowing, halfway cases) must give numpy's float16 bits
    from tfvtg.core.features import float16_copy

    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**32, 1 << 18, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    halfway = (np.arange(1, 2048, dtype=np.float32) + np.float32(0.5)) * np.float32(2.0**-24)  # ties in subnormals
    for x in (values, halfway, unit(rng.standard_normal((7, 4, 16))), np.float32([65504, 65519, 65520, -7e4])):
        with np.errstate(over="ignore"):
            expected = x.astype(np.float16)
        got = float16_copy(x)
        assert got.dtype == np.float16 and got.shape == x.shape
        np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))
    same = np.ones(3, np.float16)
    assert float16_copy(same) is same
