"""What the package promises as a whole: the layering, the error family, the
public names, strict outputs and the default preset's scores."""
from __future__ import annotations

import ast
import importlib
import json
import math
import pkgutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import tfvtg
from tfvtg import Decomposition, Grounder, GroundingConfig, VideoFeatures
from tfvtg.errors import (
    ConfigError,
    DecompositionError,
    EncoderMismatchError,
    InvalidInputError,
    InvalidTypeError,
    MissingExtraError,
    TfvtgError,
)

ROOT = Path(__file__).resolve().parents[1]
# the standard library's pure parts, and what the similarity kernel's scheduling
# needs (threads, a clock, fork safety); llvmlite is numba's own code generator
STDLIB_ALLOWED_IN_CORE = {"__future__", "math", "numbers", "dataclasses", "typing", "itertools", "warnings",
                          "collections", "functools", "enum", "html", "importlib", "sys", "types", "threading",
                          "time", "bisect", "heapq", "os"}


class WordEncoder:
    """Stand-in text encoder: a fixed random vector per word, summed."""

    space = "test-space"
    mask_threshold = 0.2

    def __init__(self, dim: int = 16):
        self.dim = dim

    def encode_text(self, texts):
        out = []
        for text in texts:
            vec = np.zeros(self.dim)
            for word in text.split():
                seed = sum(map(ord, word))
                vec += np.random.default_rng(seed).standard_normal(self.dim)
            out.append(vec)
        return np.array(out, np.float32)


def _imports_of(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import statement in a file, function-level
    ones included; imports under ``if TYPE_CHECKING:`` name types only and
    are left out."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_core_imports_only_numpy_numba_scipy_and_itself():
    offending = []
    for path in sorted((ROOT / "tfvtg" / "core").glob("*.py")):
        for module, level in _imports_of(path):
            top = module.split(".")[0]
            if level == 1 or top in {"numpy", "numba", "llvmlite", "scipy"} | STDLIB_ALLOWED_IN_CORE:
                continue
            offending.append(f"{path.name}: {'.' * level}{module}")
    assert not offending, offending


def test_core_reads_no_environment_disk_or_network():
    """``os`` is imported in core for fork safety only: no environment
    variable, file or socket is touched there."""
    forbidden_calls = {"open", "getenv", "putenv", "listdir", "scandir", "stat", "remove", "unlink", "mkdir",
                       "makedirs", "getloadavg", "urlopen", "socket", "system", "popen", "load", "save", "fromfile",
                       "memmap", "loadtxt", "savetxt", "tofile"}
    offending = []
    for path in sorted((ROOT / "tfvtg" / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "path"} and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                offending.append(f"{path.name}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in forbidden_calls:
                    offending.append(f"{path.name}:{node.lineno} {name}()")
    assert not offending, offending


def test_numpro_uses_only_tfvtg_public_modules():
    public = {"tfvtg", "tfvtg.errors", "tfvtg.viz", "tfvtg.io", "tfvtg.video", "tfvtg.llm", "tfvtg.testing"}
    offending = []
    for path in sorted((ROOT / "numpro").glob("*.py")):
        for module, level in _imports_of(path):
            if level == 0 and module.startswith("tfvtg") and module not in public:
                offending.append(f"{path.name}: {module}")
    assert not offending, offending


def _all_submodules(package):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith(("testing", "__main__")):
            continue
        try:
            importlib.import_module(info.name)
        except MissingExtraError:
            continue


@pytest.mark.parametrize("name", ["tfvtg", "numpro"])
def test_public_names_never_resolve_to_modules_even_after_every_submodule_is_imported(name):
    package = importlib.import_module(name)
    before = {n: getattr(package, n) for n in package.__all__}
    _all_submodules(package)
    for n in package.__all__:
        value = getattr(package, n)
        assert not isinstance(value, type(sys)), f"{name}.{n} is a module"
        assert value is before[n], f"{name}.{n} changed after importing the submodules"


def test_every_exported_error_is_a_tfvtg_error_with_its_builtin_parent():
    import numpro

    errors = [getattr(tfvtg, n) for n in tfvtg.__all__ if n.endswith("Error")]
    errors += [getattr(numpro, n) for n in numpro.__all__ if n.endswith("Error")]
    assert len(errors) >= 20
    for cls in errors:
        assert issubclass(cls, TfvtgError), cls
        assert any(issubclass(cls, b) for b in (ValueError, TypeError, OSError, RuntimeError, KeyError, ImportError)) \
            or cls.__name__ in ("TfvtgError", "NumProError"), cls


def test_library_code_raises_no_bare_builtin_errors():
    bare = []
    for path in list((ROOT / "tfvtg").rglob("*.py")) + list((ROOT / "numpro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in {"ValueError", "TypeError", "RuntimeError", "OSError", "FileNotFoundError",
                                        "KeyError", "ImportError", "TimeoutError"}:
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.exc.func.id}")
    assert not bare, bare


def test_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from tfvtg._extras import require

    with pytest.raises(MissingExtraError, match=r'pip install "tfvtg\[plot\]"') as info:
        require("matplotlib")
    assert isinstance(info.value, ModuleNotFoundError)


# -- configuration ---------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("top_k", True), ("top_k", 0), ("top_k", 2.5), ("stride", "20"), ("stride", None),
    ("dynamic_threshold", None), ("dynamic_threshold", "0.5"), ("dynamic_threshold", float("nan")),
    ("mask_threshold", 5.0), ("mask_threshold", float("nan")), ("mask_threshold", "0.5"),
    ("gaussian_sigma", float("inf")), ("gaussian_sigma", 0), ("vote_gamma", float("nan")),
    ("nms_threshold", 1.5), ("max_stride_factor", 0.0), ("nan_safe", "yes"), ("scores", "other"),
    ("no_proposal", "none"),
])
def test_config_refuses_wrong_types_and_ranges_at_construction(field, value):
    with pytest.raises(ConfigError, match=field):
        GroundingConfig(**{field: value})


def test_config_accepts_numpy_integers_and_stores_plain_ints():
    cfg = GroundingConfig(stride=np.int64(20), top_k=np.int32(5))
    assert cfg.stride == 20 and type(cfg.stride) is int and type(cfg.top_k) is int
    assert GroundingConfig(mask_threshold=None).mask_threshold is None


def test_mask_threshold_comes_from_the_encoder_unless_set():
    enc = WordEncoder()
    enc.mask_threshold = 0.05
    assert Grounder(enc, "charades").config.mask_threshold == 0.05
    assert Grounder(enc, GroundingConfig.preset("charades", mask_threshold=0.3)).config.mask_threshold == 0.3


# -- features ----------------------------------------------------------------------

def test_feature_validation():
    arr = np.random.default_rng(0).standard_normal((30, 4, 16)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="fps"):
        VideoFeatures(arr, duration=10.0, fps=0)
    with pytest.raises(InvalidInputError, match="contradicts"):
        VideoFeatures(arr, duration=10.0, fps=30)
    assert VideoFeatures(arr, duration=10.0, fps=3).fps == 3.0
    with pytest.raises(InvalidInputError):
        VideoFeatures(arr.astype(bool), duration=10.0)


def test_torch_bool_and_complex_features_are_refused_like_numpy():
    torch = pytest.importorskip("torch")
    base = torch.randn(10, 2, 8)
    with pytest.raises(InvalidInputError, match="dtype"):
        VideoFeatures(base > 0, duration=5.0)
    with pytest.raises(InvalidInputError, match="dtype"):
        VideoFeatures(base.to(torch.complex64), duration=5.0)
    assert VideoFeatures(base.to(torch.float16), duration=5.0).num_frames == 10


def test_moment_ends_never_exceed_the_duration():
    rng = np.random.default_rng(3)
    enc = WordEncoder()
    for duration in (0.1 * 3, 31.123456789, 1e-3 * 7, 1234.5678):
        feats = VideoFeatures(rng.standard_normal((61, 4, 16)), duration=duration)
        res = Grounder(enc, "default").ground(feats, "a person opens the door")
        assert all(0.0 <= m.start <= m.end <= duration for m in res.moments)


# -- scores in the default preset ------------------------------------------------------

def _scores_ok(result):
    scores = [m.score for m in result.moments]
    assert all(math.isfinite(s) for s in scores), scores
    assert all(a >= b for a, b in zip(scores, scores[1:])), scores
    json.dumps(result.to_dict(), allow_nan=False)


def test_default_preset_scores_are_finite_for_constant_features():
    feats = VideoFeatures(np.ones((40, 4, 16), np.float32), duration=13.3)
    res = Grounder(WordEncoder(), "default").ground(feats, "a person opens the door")
    _scores_ok(res)


def test_default_preset_scores_never_rise_with_rank_even_when_the_best_score_is_negative():
    rng = np.random.default_rng(7)
    checked_negative = 0
    enc = WordEncoder()
    for _ in range(40):
        feats = VideoFeatures(rng.standard_normal((90, 4, 16)), duration=30.0)
        grounder = Grounder(enc, "default")
        res = grounder.ground(feats, "a person opens the door")
        _scores_ok(res)
        from tfvtg.core.proposals import propose

        raw = propose(res.curve, grounder.config)
        checked_negative += bool(len(raw) and raw.score[0] < 0)
    assert checked_negative > 0  # the case that made scores rise with rank was exercised
    dec = Decomposition.from_tfvtg({"relationship": "sequentially", "query_json": [
        {"descriptions": ["a person opens the door"]}, {"descriptions": ["a person walks"]},
        {"descriptions": ["a man sits on chair"]}]})
    _scores_ok(Grounder(enc, "default").ground(feats, "a person opens the door", decomposition=dec))


def test_reference_presets_keep_nan_but_to_dict_writes_null():
    from tfvtg import Moment

    assert Moment(0.0, 1.0, float("nan")).to_dict()["score"] is None


# -- grounder contracts ----------------------------------------------------------------

def test_ground_many_refuses_a_string_and_an_empty_list():
    feats = VideoFeatures(np.random.default_rng(0).standard_normal((30, 4, 16)), duration=10.0)
    g = Grounder(WordEncoder(), "default")
    with pytest.raises(InvalidTypeError, match="list of sentences"):
        g.ground_many(feats, "a person opens the door")
    with pytest.raises(InvalidInputError, match="no queries"):
        g.ground_many(feats, [])


def test_ground_many_curves_belong_to_their_own_queries():
    """A swapped curve would go unnoticed with an encoder that embeds every
    sentence alike; this one does not, and the batch must match one by one."""
    rng = np.random.default_rng(1)
    feats = VideoFeatures(rng.standard_normal((60, 4, 16)), duration=20.0)
    g = Grounder(WordEncoder(), "default")
    queries = ["a person opens the door", "a dog jumps over the fence", "woman drinks water"]
    batch = g.ground_many(feats, queries)
    for query, res in zip(queries, batch):
        alone = g.ground(feats, query)
        assert res.query == query
        np.testing.assert_allclose(res.curve, alone.curve, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(res.moments), np.array(alone.moments), rtol=1e-6, atol=1e-6)
    assert not np.allclose(batch[0].curve, batch[1].curve, atol=1e-3)


def test_features_from_another_encoder_space_are_refused():
    feats = VideoFeatures(np.random.default_rng(0).standard_normal((30, 4, 16)), duration=10.0, encoder="blip2-coco")
    with pytest.raises(EncoderMismatchError, match="blip2-coco"):
        Grounder(WordEncoder(), "default").ground(feats, "a person opens the door")
    feats.encoder = "test-space"
    assert Grounder(WordEncoder(), "default").ground(feats, "a person opens the door").moments


class FailingDecomposer:
    def __init__(self):
        self.calls = 0

    def decompose(self, query):
        self.calls += 1
        raise DecompositionError("connection refused by 127.0.0.1:9")


def test_a_failing_llm_degrades_to_the_query_alone_with_a_warning():
    feats = VideoFeatures(np.random.default_rng(0).standard_normal((30, 4, 16)), duration=10.0)
    llm = FailingDecomposer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = Grounder(WordEncoder(), "default", decomposer=llm).ground(feats, "a person opens the door")
    assert llm.calls == 1
    assert res.decomposition is not None and res.decomposition.fallback
    alone = Grounder(WordEncoder(), "default").ground(feats, "a person opens the door")
    # exactly VLM-only grounding, no duplicated moments
    np.testing.assert_allclose(np.array(res.moments), np.array(alone.moments), rtol=1e-6, atol=1e-6)
    assert any("connection refused" in str(w.message) for w in caught)
    assert any(w.filename == __file__ for w in caught), [w.filename for w in caught]


def test_cli_failures_are_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    from tfvtg.cli import main

    assert main(["ground", str(tmp_path / "missing.npy"), "a person opens the door"]) != 0
    err = capsys.readouterr().err.strip()
    assert "missing.npy" in err and len(err.splitlines()) == 1 and "Traceback" not in err

    import tfvtg.commands.ground as ground_command

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ground_command, "run", broken)
    monkeypatch.delenv("TFVTG_DEBUG", raising=False)
    assert main(["ground", "x.npy", "q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" in err and "TFVTG_DEBUG" in err


# -- files written for the user, caches ----------------------------------------------

def test_written_files_get_the_users_umask(tmp_path):
    import os

    from tfvtg.io import save_npy, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": float("nan")})
        save_npy(tmp_path / "b.npy", np.zeros(3))
        os.umask(0o077)
        write_json(tmp_path / "c.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None}  # strict JSON


class CountingVideoEncoder(WordEncoder):
    name = "counting"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode_video(self, path, fps=3.0):
        self.calls += 1
        return VideoFeatures(np.random.default_rng(0).standard_normal((30, 4, 16)), duration=10.0, fps=fps,
                             source=str(path), encoder=self.space)


def test_a_damaged_feature_cache_entry_is_made_again(tmp_path):
    from tfvtg.api import features_for_video

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not decoded by this encoder")
    enc = CountingVideoEncoder()
    first = features_for_video(video, encoder=enc, cache=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("*.npy")
    entry.write_bytes(b"")  # zero bytes: np.load raises EOFError
    again = features_for_video(video, encoder=enc, cache=tmp_path / "cache")
    assert enc.calls == 2 and again.shape == first.shape
    entry.with_suffix(".json").write_text("[1, 2]")  # a sidecar that is not an object
    features_for_video(video, encoder=enc, cache=tmp_path / "cache")
    assert enc.calls == 2  # the array is fine; only the optional metadata is ignored


def test_an_unwritable_feature_cache_is_bypassed_with_one_warning(tmp_path):
    import os

    from tfvtg.api import features_for_video

    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-dir"
        blocked.write_text("x")  # root ignores permissions; a file where the folder should be still fails
        cache = blocked / "cache"
    else:
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    enc = CountingVideoEncoder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert features_for_video(video, encoder=enc, cache=cache).num_frames == 30
    relevant = [w for w in caught if "feature cache" in str(w.message)]
    assert len(relevant) == 1 and str(cache) in str(relevant[0].message)


def test_plot_labels_the_proposals_and_sub_event_spans(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    feats = VideoFeatures(rng.standard_normal((90, 4, 16)), duration=30.0)
    dec = Decomposition.from_tfvtg({"relationship": "sequentially", "query_json": [
        {"descriptions": ["a person opens the door"]}, {"descriptions": ["a person walks"]},
        {"descriptions": ["a man sits on chair"]}]})
    grounder = Grounder(WordEncoder(), GroundingConfig.preset("default", mask_threshold=-1.0))
    res = grounder.ground(feats, "a person opens the door", decomposition=dec)
    fig = res.plot(path=tmp_path / "p.png")
    labels = [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]
    assert any(lbl.startswith("other proposals") for lbl in labels), labels
    assert sum(lbl.startswith("sub-event") and "span" in lbl for lbl in labels) == 2, labels
    assert (tmp_path / "p.png").stat().st_size > 0
