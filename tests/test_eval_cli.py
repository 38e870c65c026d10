"""``tfvtg eval``: one-line errors with command-line advice, counts shown as counts."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import tfvtg
from tfvtg.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from parity_synthetic import StandInEncoder as StandIn  # noqa: E402
from parity_synthetic import synthetic_features  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    fixture = json.loads((FIXTURES / "parity_charades.json").read_text())
    d = tmp_path_factory.mktemp("cli")
    videos = dict(list(fixture["videos"].items())[:3])
    for vid, video in videos.items():
        np.save(d / f"{vid}.npy", synthetic_features(vid, video, seed=fixture["seed"]))
    ann = {vid: {k: v[k] for k in ("duration", "timestamps", "sentences")} for vid, v in videos.items()}
    ann["NOFILE"] = {"duration": 10, "timestamps": [[1, 2]], "sentences": ["missing features"]}
    ann["BAD"] = {"duration": 10, "timestamps": [[4, 2]], "sentences": ["reversed"]}
    (d / "ann.json").write_text(json.dumps(ann))
    tfvtg.register_encoder("parity-stand-in", lambda **kw: StandIn(), overwrite=True)
    return d


def _eval(d, out, *extra):
    return main(["eval", "--dataset", "charades", "--annotations", str(d / "ann.json"), "--features", str(d),
                 "--out", str(out), "--no-progress", *extra])


def _one_line(err):
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("tfvtg eval: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("tfvtg eval: ") and "Traceback" not in err, err
    return lines[0]


def test_counts_are_printed_as_counts_and_failures_set_the_exit_code(data, tmp_path, capsys):
    assert _eval(data, tmp_path / "r.jsonl", "--encoder", "parity-stand-in") == 1
    captured = capsys.readouterr()
    table, _, counts, metrics_json = captured.out.splitlines()[:4]
    assert counts.startswith("(") and "1 failed, 1 skipped" in counts and "1.00" not in counts
    metrics = json.loads(metrics_json)
    assert metrics["failed"] == 1 and isinstance(metrics["n"], int) and metrics["skipped"] == 1
    assert "failed" not in table and "skipped" not in table
    # the reader's warning is one line of its own, and the failed query is named
    assert "tfvtg eval: warning: skipped 1 query" in captured.err and "NOFILE" in captured.err


def test_other_settings_need_overwrite(data, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    _eval(data, out, "--encoder", "parity-stand-in")
    capsys.readouterr()
    assert _eval(data, out, "--encoder", "parity-stand-in", "--pad-sec", "10") == 2
    line = _one_line(capsys.readouterr().err)
    assert "pad_sec: 0.0 in the file, 10.0 now" in line and "--overwrite" in line and "overwrite=True" not in line
    assert _eval(data, out, "--encoder", "parity-stand-in", "--pad-sec", "10", "--overwrite") == 1
    assert _eval(data, out, "--encoder", "parity-stand-in", "--dataset", "charades-ood-1") == 1  # pad 10 s: resumes


@pytest.mark.parametrize("args, expected", [
    (["--annotations", "missing.json"], "annotation file not found: missing.json"),
    (["--dataset", "kinetics"], "unknown dataset 'kinetics'; choose one of activitynet, activitynet-ood-1"),
    (["--features", "no-such-folder"], "features folder not found: no-such-folder"),
    (["--config", "nope"], "unknown preset 'nope'"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--method", "tfvtg", "--mllm", "x"], "takes no options"),
])
def test_usage_errors_are_one_line(data, tmp_path, capsys, args, expected):
    argv = ["--dataset", "charades", "--annotations", str(data / "ann.json"), "--features", str(data),
            "--encoder", "parity-stand-in", "--out", str(tmp_path / "r.jsonl"), "--no-progress"]
    for flag, value in zip(args[::2], args[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(["eval", *argv]) == 2
    assert expected in _one_line(capsys.readouterr().err)


def test_missing_encoder_gives_command_line_advice(data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.delenv("TFVTG_BLIP2_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    assert _eval(data, tmp_path / "r.jsonl") == 2
    line = _one_line(capsys.readouterr().err)
    assert "cannot load the encoder blip2-coco" in line and "With --features only its text side is used" in line
    assert "--encoder /path/blip2" in line and "hf download Salesforce/blip2-itm-vit-g-coco" in line
    assert "Blip2Encoder(" not in line and "model=" not in line  # no Python advice on the command line
    assert _eval(data, tmp_path / "r2.jsonl", "--encoder", str(tmp_path / "nowhere")) == 2
    line = _one_line(capsys.readouterr().err)
    assert "nowhere" in line and "--encoder /path/blip2" in line
