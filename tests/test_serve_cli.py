"""``tfvtg serve`` on the command line: where it listens, what it says, and
one-line failures."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tfvtg.cli import build_parser, main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library_dir(tiny_blip2_dir, tmp_path_factory):
    from tfvtg import Library
    from tfvtg.testing import make_video

    root = tmp_path_factory.mktemp("serve-cli")
    clip = make_video(root / "clip.mp4", n_frames=40, fps=10, codec="libx264")
    with Library(root / "lib", encoder=tiny_blip2_dir) as lib:
        lib.add(clip)
    return root / "lib"


def start(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Run ``tfvtg serve ARGS`` and wait for the line with its address."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tfvtg.cli", "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.time() + 120
    assert proc.stderr is not None
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        m = re.search(r"at (http://\S+/)", line)
        if m:
            return proc, m.group(1), lines
    proc.kill()
    raise AssertionError(f"tfvtg serve did not say where it listens: {lines}")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_serve_listens_on_this_machine_only_by_default_and_stops_on_ctrl_c(library_dir):
    proc, url, lines = start(str(library_dir), "--port", "0")
    try:
        assert url.startswith("http://127.0.0.1:") and "(1 videos)" in lines[-1]
        assert not any("warning" in line for line in lines)
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            info = json.loads(r.read())
        assert info["library"]["videos"] == 1 and info["library"]["path"] == str(library_dir)
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b'id="query"' in r.read()
    finally:
        code, err = stop(proc)
    assert code == 0 and "Traceback" not in err


def test_serve_says_so_when_told_to_listen_beyond_this_machine(library_dir):
    proc, url, lines = start(str(library_dir), "--host", "0.0.0.0", "--port", "0")
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        # the warning comes right after the address line
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        assert "warning: listening on 0.0.0.0" in warning and "no login" in warning and "--host 127.0.0.1" in warning
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=30) as r:
            assert json.loads(r.read())["library"]["videos"] == 1
    finally:
        stop(proc)


def one_line_failure(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfvtg serve: ") and "Traceback" not in err
    return lines[0]


def test_failures_are_one_line(capsys, tmp_path, library_dir, monkeypatch):
    assert "tfvtg index" in one_line_failure(capsys, ["serve", str(tmp_path / "missing")])
    assert not (tmp_path / "missing").exists()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    assert "not a tfvtg library" in one_line_failure(capsys, ["serve", str(tmp_path / "photos")])
    assert "--port must be 0-65535" in one_line_failure(capsys, ["serve", "--port", "70000"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("TFVTG_LLM_BASE_URL", raising=False)
    assert "OPENAI_API_KEY" in one_line_failure(capsys, ["serve", "--llm", "gpt-4o-mini"])
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        line = one_line_failure(capsys, ["serve", str(library_dir), "--port", str(port)])
        assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
    finally:
        taken.close()


def test_a_missing_app_extra_is_named(capsys, monkeypatch):
    import tfvtg.app
    from tfvtg.errors import missing_extra

    def absent() -> None:
        raise missing_extra("app", "fastapi")

    monkeypatch.setattr(tfvtg.app, "require_app", absent)
    line = one_line_failure(capsys, ["serve"])
    assert 'pip install "tfvtg[app]"' in line


def test_require_app_names_the_extra_for_a_missing_module(monkeypatch):
    import tfvtg.app
    from tfvtg.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an absent package looks like to import
    with pytest.raises(MissingExtraError, match=r'uvicorn is not installed; .*pip install "tfvtg\[app\]"'):
        tfvtg.app.require_app()


def test_serve_is_a_subcommand_and_tfvtg_stays_light():
    help_text = build_parser().format_help()
    assert "serve" in help_text
    code = ("import sys, tfvtg, tfvtg.cli; tfvtg.cli.build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bind_warning_and_loopback():
    from tfvtg.app.safety import bind_warning, is_loopback
    from tfvtg.app.server import allowed_hosts_for

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
    assert bind_warning("127.0.0.1", 7860) is None
    assert "0.0.0.0:7860" in bind_warning("0.0.0.0", 7860)
    assert allowed_hosts_for("127.0.0.1") == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts_for("0.0.0.0") == ("*",)


def test_a_model_that_cannot_be_loaded_is_said_on_the_terminal(library_dir, tiny_blip2_dir, tmp_path):
    # the encoder loads in the background; when it fails, the terminal says
    # so at once (not only the page, or the first search)
    # the library's model directory name (its embedding space) with a BLIP-2
    # config but no weights: passes the up-front checks, fails to load
    wrong = tmp_path / Path(tiny_blip2_dir).name
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    proc, url, lines = start(str(library_dir), "--port", "0", "--encoder", str(wrong))
    try:
        assert proc.stderr is not None
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(proc.stderr.readline()), daemon=True)
        reader.start()
        reader.join(120)  # never hang the suite on a line that does not come
        warning = got[0] if got else ""
        assert "warning: the model could not be loaded" in warning and str(wrong) in warning
        assert "--encoder" in warning
    finally:
        code, err = stop(proc)
    assert code == 0 and "Traceback" not in err
