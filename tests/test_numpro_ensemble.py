"""numpro's MLLM + scorer ensemble, highlight detection, the evaluation
methods and the entry points tfvtg finds them through."""
from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import pytest
import tomllib
from chat_server import ChatServer, Reply

import numpro
from numpro.reranking import parse_choice
from numpro.saliency import clip_scores, parse_scores
from numpro.testing import ScriptedMLLM, decode_time, encode_time
from tfvtg import GroundingResult, Moment
from tfvtg.testing import make_video

ROOT = Path(__file__).resolve().parents[1]
NATIVE_FPS = 8.0


def _timed_video(seconds: float, size=(48, 64)) -> numpro.InMemoryVideo:
    n = int(round(seconds * NATIVE_FPS))
    return numpro.InMemoryVideo(encode_time(np.zeros((n,) + size + (3,), np.uint8), np.arange(n) / NATIVE_FPS),
                                NATIVE_FPS)


def _result(spans, duration=60.0, query="a person opens the door"):
    return GroundingResult(query, [Moment(s, e, 1.0 - 0.1 * i) for i, (s, e) in enumerate(spans)], duration)


def _red_ink(img):
    return int(((img[..., 0] > 200) & (img[..., 1] < 80)).sum())


class Chooser:
    """Reads the time of every frame it is shown (m per candidate, in the
    order shown) and names the candidate with most frames inside the event."""

    def __init__(self, event, m=4):
        self.event, self.m, self.calls = event, m, []

    def answer(self, images, prompt, fps=1.0):
        self.calls.append((list(images), prompt, fps))
        times = [decode_time(img) for img in images]
        groups = [times[i:i + self.m] for i in range(0, len(times), self.m)]
        hits = [sum(self.event[0] <= t <= self.event[1] for t in g) for g in groups]
        return f"Candidate {int(np.argmax(hits)) + 1}"


SPANS = [(2.0, 8.0), (30.0, 40.0), (15.0, 22.0), (45.0, 50.0), (50.0, 55.0)]


def test_the_mllm_choice_goes_first_in_one_call():
    video = _timed_video(60.0, size=(96, 128))
    chooser = Chooser((31.0, 39.0))
    out = numpro.rerank(_result(SPANS), video, chooser)
    assert len(chooser.calls) == 1  # one MLLM call per query
    images, prompt, fps = chooser.calls[0]
    assert len(images) == 20 and fps is None
    assert "5 candidate moments" in prompt and "'Candidate k'" in prompt and "a person opens the door" in prompt
    # shown in time order: (2, 8) is 1, (15, 22) is 2, (30, 40) is 3; each frame from its candidate, numbered
    shown = sorted(SPANS)
    for j, img in enumerate(images):
        start, end = shown[j // 4]
        assert start <= decode_time(img) <= end
        assert _red_ink(img[48:, 64:]) > 5  # its candidate's number, bottom right
    assert chooser.answer(images, prompt) == "Candidate 3"
    assert out.chosen == 1 and out.best == Moment(30.0, 40.0, 0.9)
    assert [(m.start, m.end) for m in out.result.moments] == [SPANS[1], SPANS[0]] + SPANS[2:]
    assert out.reason == "" and not out.fell_back
    st = out.settings
    assert st["method"] == "ensemble" and st["model"] == "Chooser" and st["prompt"] == prompt
    assert st["prompt_version"] == "numpro-choice-1" and st["top_k"] == 5 and st["frames_per_candidate"] == 4
    # painting never touches the caller's frames
    assert decode_time(video.frames[0]) == 0.0 and _red_ink(video.frames[8 * 31]) == 0


def test_grid_layout_shows_one_captioned_image_per_candidate(monkeypatch):
    video = _timed_video(60.0)
    seen = []
    import numpro.reranking as ens

    real = ens.tile_frames
    monkeypatch.setattr(ens, "tile_frames", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])

    def pick(images, prompt, fps):
        grids = seen[-1]
        assert [g.image for g in grids] == images
        hits = [sum(45 <= decode_time(img[t:t + h, x:x + w]) <= 50 for t, x, h, w in g.boxes)
                for g, img in zip(grids, images)]
        return f"The answer is candidate {int(np.argmax(hits)) + 1}."

    out = numpro.rerank(_result(SPANS), video, ScriptedMLLM(pick), layout="grid", frames_per_candidate=3)
    assert len(seen[-1]) == 5 and all(len(g.numbers) == 3 for g in seen[-1])
    assert out.best.start == 45.0 and out.chosen == 3
    assert out.settings["grid"] == {"rows": 1, "cols": 3, "images": 5, "tile_size": 336}


@pytest.mark.parametrize("reply", ["None of the candidates shows it.", "Candidate 9", "", "Maybe the second one?",
                                   numpro.MLLMTimeoutError("the MLLM server timed out"),
                                   numpro.MLLMError("MLLM request failed: InternalServerError")])
def test_an_unusable_answer_leaves_the_scorers_ranking(reply):
    def script(images, prompt, fps):
        if isinstance(reply, Exception):
            raise reply
        return reply

    result = _result(SPANS)
    out = numpro.rerank(result, _timed_video(60.0), ScriptedMLLM(script))
    assert out.result.moments == result.moments and out.chosen is None and out.fell_back
    assert out.reason and out.raw == ("" if isinstance(reply, Exception) else reply)
    if isinstance(reply, Exception):
        assert str(reply) in out.reason


def test_a_model_that_cannot_be_used_stops_instead_of_falling_back():
    def refused(images, prompt, fps):
        raise numpro.MLLMConfigurationError("the MLLM server refused the request (HTTP 401)")

    with pytest.raises(numpro.MLLMConfigurationError):
        numpro.rerank(_result(SPANS), _timed_video(60.0), ScriptedMLLM(refused))


def test_parse_choice():
    assert parse_choice("Candidate 2", 5) == (2, "")
    assert parse_choice(" 4. ", 5) == (4, "")
    assert parse_choice("I think option #3 matches best.", 5) == (3, "")
    assert parse_choice("Candidate 0", 5)[0] is None and "not among 1..5" in parse_choice("Candidate 0", 5)[1]
    assert parse_choice("neither", 5) == (None, "the model says no candidate matches")
    assert parse_choice(None, 5) == (None, "empty answer")
    # one candidate, or none: nothing to ask
    mllm = ScriptedMLLM("Candidate 1")
    assert numpro.rerank(_result(SPANS[:1]), _timed_video(60.0), mllm).chosen == 0 and not mllm.calls
    assert numpro.rerank(_result([]), _timed_video(60.0), mllm).reason == "the scorer proposed no moment"


def test_rerank_from_a_video_file_picks_the_frames_at_the_candidates_times(tmp_path):
    path = make_video(tmp_path / "v.mp4", n_frames=30, fps=10, size=(64, 48))  # red = 7 x frame index
    mllm = ScriptedMLLM("Candidate 2")
    out = numpro.rerank(_result([(1.5, 2.5), (0.2, 0.8)], duration=3.0), path, mllm, frames_per_candidate=2,
                        sample_fps=10.0)
    images = mllm.calls[0][0]
    decoded = numpro.VideoFile(path).sample(10.0).frames
    # the frames nearest the centres of each candidate's halves (0.35, 0.65, 1.75, 2.25 s), numbers painted
    for img, near in zip(images, [(3, 4), (6, 7), (17, 18), (22, 23)]):
        unpainted = img[:24]  # the number is in the bottom half
        assert any(np.array_equal(unpainted, decoded[k][:24]) for k in near)
    assert out.best.start == 1.5


# ---------------------------------------------------------------- highlights

def test_highlights_give_qvhighlights_clip_saliency():
    video = _timed_video(150.0)  # QVHighlights: 150 s, 75 clips of 2 s

    def rate(images, prompt, fps):
        assert fps == 0.5 and "Frame k: score" in prompt
        lines = [f"Frame {k}: {4 if 40 <= decode_time(img) < 50 else 2}" for k, img in enumerate(images)
                 if 36 <= decode_time(img) < 54]
        return "\n".join(lines)

    hl = numpro.highlights(video, "a person opens the door", ScriptedMLLM(rate))
    assert hl.scores.shape == (75,) and hl.clip == 2.0 and hl.error == ""
    assert set(np.flatnonzero(hl.scores == 4)) == set(range(20, 25))
    assert set(np.flatnonzero(hl.scores == 2)) == set(range(18, 20)) | set(range(25, 27))
    assert hl.top(1)[0] in range(20, 25) and hl.scores.sum() == 4 * 5 + 2 * 4
    assert hl.settings["method"] == "numpro-highlights" and hl.settings["n_frames"] == 75


def test_highlight_answers_in_other_forms_and_failures():
    video = _timed_video(20.0)
    listed = "The highlight frames are in the 2, 3, 4 frames. Their saliency scores are 1.5, 3.0, 2.5"
    hl = numpro.highlights(video, "x", ScriptedMLLM(listed))
    assert list(hl.scores) == [0, 0, 1.5, 3.0, 2.5, 0, 0, 0, 0, 0]
    hl = numpro.highlights(video, "x", ScriptedMLLM("From Frame 6 to Frame 8"))
    assert list(hl.scores) == [0] * 6 + [1, 1, 1, 0] and "span" in hl.error
    hl = numpro.highlights(video, "x", ScriptedMLLM("Frame 40: 4"))
    assert not hl.scores.any() and "past the last frame" in hl.error

    def timeout(images, prompt, fps):
        raise numpro.MLLMTimeoutError("the MLLM server timed out")

    hl = numpro.highlights(video, "x", ScriptedMLLM(timeout))
    assert hl.scores.shape == (10,) and not hl.scores.any() and "timed out" in hl.error
    assert parse_scores("frame 1: 9\n2: -1\n3 : 2.5", 5, scale=4)[0].tolist() == [0, 4, 0, 2.5, 0]
    # a clip without a frame of its own takes its nearest frame's score
    assert clip_scores(np.array([1.0, 3.0]), np.array([0.0, 4.0]), 6.0).tolist() == [1.0, 3.0, 3.0]


def test_highlights_allow_a_longer_answer_for_one_call():
    video = _timed_video(10.0)
    with ChatServer(lambda req, n: Reply("Frame 1: 3")) as server:
        mllm = numpro.OpenAIVisionMLLM("m", base_url=server.url, max_tokens=64)
        hl = numpro.highlights(video, "x", mllm)
    assert server.requests[0]["max_tokens"] == 512 and mllm.max_tokens == 64
    assert hl.scores[1] == 3


# ---------------------------------------------------------------- entry points, tfvtg.ground(mllm=), methods

def _declared(group):
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [md.EntryPoint(name, value, group) for name, value in data["project"]["entry-points"][group].items()]


def test_pyproject_declares_the_entry_points_and_they_load():
    assert {ep.name for ep in _declared("tfvtg.methods")} == {"numpro", "ensemble"}
    assert {ep.name for ep in _declared("tfvtg.rerankers")} == {"mllm"}
    for ep in _declared("tfvtg.methods") + _declared("tfvtg.rerankers"):
        assert callable(ep.load())
    # where this checkout is the installed one, they are registered
    installed = {ep.name: ep.value for ep in md.entry_points(group="tfvtg.methods")}
    if installed:
        assert installed == {ep.name: ep.value for ep in _declared("tfvtg.methods")}


def _serve_declared(monkeypatch, groups):
    def entry_points(group=None, **kw):
        return md.EntryPoints(_declared(group)) if group in groups else md.EntryPoints(())

    monkeypatch.setattr(md, "entry_points", entry_points)


@pytest.fixture()
def blip2(tiny_blip2_dir, tmp_path, monkeypatch):
    from tfvtg import Blip2Encoder

    monkeypatch.setenv("TFVTG_CACHE_DIR", str(tmp_path / "cache"))
    return Blip2Encoder(tiny_blip2_dir, device="cpu")


def test_tfvtg_ground_with_an_mllm_reranks_through_the_entry_point(blip2, tmp_path, monkeypatch):
    import tfvtg

    video = make_video(tmp_path / "v.mp4", n_frames=120, fps=10, size=(64, 48))
    # every frame foreground, so the random tiny model yields several proposals
    cfg = tfvtg.GroundingConfig.preset("default", mask_threshold=-1.0)
    plain = tfvtg.ground(video, "a person opens the door", text_encoder=blip2, use_llm=False, config=cfg)
    assert len(plain.moments) >= 2
    _serve_declared(monkeypatch, {"tfvtg.rerankers"})
    shown = sorted(range(min(5, len(plain.moments))), key=lambda i: (plain.moments[i].start, plain.moments[i].end))
    mllm = ScriptedMLLM("Candidate 2")
    res = tfvtg.ground(video, "a person opens the door", text_encoder=blip2, use_llm=False, mllm=mllm, config=cfg)
    spans = [(m.start, m.end) for m in plain.moments]  # (scores differ in float16 from the feature cache)
    assert len(mllm.calls) == 1 and (res.best.start, res.best.end) == spans[shown[1]]
    assert sorted((m.start, m.end) for m in res.moments) == sorted(spans)
    assert "numpro" not in tfvtg.api.__dict__ and not any(n.startswith("numpro") for n in vars(tfvtg))
    with pytest.raises(ValueError, match="not its features"):
        tfvtg.ground(tfvtg.VideoFeatures(np.zeros((9, 4, 8), np.float32), 3.0), "x", text_encoder=blip2, mllm=mllm)
    _serve_declared(monkeypatch, set())
    with pytest.raises(tfvtg.MissingExtraError, match="tfvtg.rerankers"):
        tfvtg.ground(video, "x", text_encoder=blip2, use_llm=False, mllm=mllm)


def test_the_numpro_method(tmp_path):
    factory = {ep.name: ep for ep in _declared("tfvtg.methods")}["numpro"].load()
    video = make_video(tmp_path / "v.mp4", n_frames=80, fps=10, size=(64, 48))  # 8 s
    method = factory(mllm=ScriptedMLLM("From Frame 2 to Frame 5"), fps=1.0, device="cpu", timeout=3)
    assert method.name == "numpro"
    assert method.ground_video(video, "a bar", 8.0) == [(2.3, 5.6, 1.0)]
    assert method.ground_video(video, "a bar", 4.0) == [(2.3, 4.0, 1.0)]  # clipped to the annotation's duration
    method.mllm.script = "I cannot tell."
    assert method.ground_video(video, "a bar", 8.0) == [] and method.last.error
    method.mllm.script = "Frame 1: 4"
    assert method.saliency(video, "a bar", 8.0) == [0.0, 4.0, 0.0, 0.0]  # frame 1 is at 2.3 s: clip 1
    assert method.saliency(video, "a bar", 10.0, clip=2.0)[-1] == 0.0 and len(method.saliency(video, "a", 10.0)) == 5
    with ChatServer(lambda req, n: Reply("From Frame 0 to Frame 1")) as server:
        served = factory(mllm="served-model", base_url=server.url, device="cpu", timeout=5, layout="grid")
        assert isinstance(served.mllm, numpro.OpenAIVisionMLLM) and served.mllm.timeout == 5
        assert served.ground_video(video, "a bar", 8.0) == [(0.0, 1.1, 1.0)]
    with pytest.raises(ValueError, match="unknown NumPro option"):
        factory(mllm=ScriptedMLLM("x"), method_of_choice=1)
    with pytest.raises(ValueError, match="needs an MLLM"):
        factory()


def test_the_ensemble_method(blip2, tmp_path):
    factory = {ep.name: ep for ep in _declared("tfvtg.methods")}["ensemble"].load()
    video = make_video(tmp_path / "v.mp4", n_frames=120, fps=10, size=(64, 48))
    from tfvtg import GroundingConfig

    # every frame foreground, so the random tiny model yields several candidates
    method = factory(mllm=ScriptedMLLM("Candidate 1"), encoder=blip2, top_k=3, frames_per_candidate=2,
                     max_new_tokens=8, config=GroundingConfig.preset("default", mask_threshold=-1.0))
    assert method.name == "ensemble"
    rows = method.ground_video(video, "a person opens the door", 12.0)
    out = method.last
    assert rows[0] == (out.best.start, out.best.end, out.best.score) and len(rows) == len(out.result.moments)
    assert out.best == min(out.candidates, key=lambda m: (m.start, m.end))  # candidate 1: the earliest shown
    method.mllm.script = "no idea"
    fallback = method.ground_video(video, "a person opens the door", 12.0)
    assert method.last.fell_back and fallback[0] == (method.last.candidates[0].start,
                                                     method.last.candidates[0].end, method.last.candidates[0].score)
    with pytest.raises(ValueError, match="unknown ensemble option"):
        factory(mllm=ScriptedMLLM("x"), colour="red")


def test_numpro_never_imports_private_tfvtg_modules():
    # numpro is built on tfvtg's public API only
    public = {"tfvtg", "tfvtg.errors", "tfvtg.viz", "tfvtg.io", "tfvtg.video"}
    for path in (ROOT / "numpro").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("from", "import") and words[1].startswith("tfvtg"):
                assert words[1] in public, f"{path.name}: {line.strip()}"
    src = "\n".join(p.read_text() for p in (ROOT / "tfvtg").rglob("*.py"))
    assert "import numpro" not in src and "from numpro" not in src
