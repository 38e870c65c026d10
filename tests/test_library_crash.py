"""Crash safety and concurrency: a writer killed (SIGKILL) at any moment
leaves every video fully present or absent, and readers search while one
writer adds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tfvtg
from tfvtg import Library, VideoFeatures

ROOT = str(Path(tfvtg.__file__).resolve().parent.parent)

WRITER = r"""
import os, signal, sys
import numpy as np
from tfvtg import Library, VideoFeatures
from tfvtg.library.store import Flush

path, first, last, kill_between = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
if kill_between:
    # die in the worst place: the feature file is in place, its row not yet committed
    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)
    Flush.wait = die
lib = Library(path)
for i in range(first, last):
    lib.add_features(f"v{i:04d}", VideoFeatures(expected(i), duration=len(expected(i)) / 3.0, encoder="hash-space"))
    print(i, flush=True)
"""

EXPECTED = r"""
def expected(i):
    rng = np.random.default_rng(i)
    t = 30 + (i % 7) * 10
    arr = rng.standard_normal((t, 4, 64)).astype(np.float32)
    if i % 5 == 0:  # every fifth video shows "the event" at frames 10-25
        u = np.random.default_rng(12345).standard_normal(64).astype(np.float32)
        arr[10:25, 2] += 4 * u / np.linalg.norm(u)
    return arr
"""

namespace: dict = {"np": np}
exec(EXPECTED, namespace)
expected = namespace["expected"]


class EventEncoder:
    space = "hash-space"
    name = "event-encoder"
    mask_threshold = 0.2

    def encode_text(self, texts):
        u = np.random.default_rng(12345).standard_normal(64).astype(np.float32)
        other = np.random.default_rng(7).standard_normal(64).astype(np.float32)
        return np.stack([u if "event" in t else other for t in texts])


def _writer(path, first, last, kill_between=False):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import numpy as np\n" + EXPECTED + WRITER
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(first), str(last), "1" if kill_between else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _check_consistent(path: Path) -> Library:
    lib = Library(path, encoder=EventEncoder())
    for vid in lib.videos():
        i = int(vid[1:])
        feats = lib.features(vid)  # fully present: readable, right shape and values
        want = VideoFeatures(expected(i), duration=len(expected(i)) / 3.0)
        assert feats.shape == want.shape
        np.testing.assert_allclose(feats.tokens, want.tokens, atol=2e-3)
    files = {str(p.relative_to(path)) for p in (path / "features").rglob("*.npy")}
    assert {lib.info(v).file for v in lib.videos()} <= files
    return lib


def test_a_writer_killed_at_random_moments_leaves_the_library_consistent(tmp_path):
    path = tmp_path / "lib"
    Library(path).close()
    rng = np.random.default_rng(0)
    first = 0
    for _ in range(3):
        proc = _writer(path, first, first + 1000)
        added = 0
        while added < 3:  # let it commit a few, then kill it somewhere in the next ones
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            added += 1
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lib = _check_consistent(path)
        assert len(lib) >= 3
        first = 1000 * (first // 1000 + 1)
    # the next writer goes on, and sweeps what the killed ones left
    lib.add_features("after", VideoFeatures(expected(1), duration=len(expected(1)) / 3.0, encoder="hash-space"))
    files = {str(p.relative_to(path)) for p in (path / "features").rglob("*") if p.is_file()}
    assert files == {lib.info(v).file for v in lib.videos()}


def test_killed_between_writing_the_file_and_committing_the_row(tmp_path):
    path = tmp_path / "lib"
    Library(path).close()
    proc = _writer(path, 0, 2)
    proc.communicate()
    assert proc.returncode == 0
    proc = _writer(path, 2, 3, kill_between=True)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert len(list((path / "features").rglob("*.npy"))) == 3  # the orphan is on disk...
    lib = _check_consistent(path)
    assert lib.videos() == ["v0000", "v0001"]  # ...but the video is absent
    lib.add_features("v0002", VideoFeatures(expected(2), duration=len(expected(2)) / 3.0, encoder="hash-space"))
    assert len(list((path / "features").rglob("*.npy"))) == 3 and len(lib) == 3


def test_readers_search_while_one_writer_adds(tmp_path):
    path = tmp_path / "lib"
    Library(path).close()
    proc = _writer(path, 0, 40)
    reader = Library(path, encoder=EventEncoder())
    seen = []
    searches = 0
    while proc.poll() is None or searches < 3:
        hits = reader.search("the event", top_k=3, per_video=1)
        searches += 1
        seen.append(len(reader))
        if hits:  # v0000, the first video added, shows the event: a planted video ranks first
            assert int(hits[0].video[1:]) % 5 == 0, hits
        if proc.poll() is not None:
            break
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert seen == sorted(seen)  # the reader never sees videos disappear
    hits = reader.search("the event", top_k=8, per_video=1)
    assert {h.video for h in hits} == {f"v{i:04d}" for i in range(0, 40, 5)}


def test_two_writers_at_once_do_not_lose_videos(tmp_path):
    n = 2
    path = tmp_path / "lib"
    Library(path).close()
    procs = [_writer(path, 100 * k, 100 * k + 10) for k in range(n)]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err
    assert len(Library(path)) == 10 * n
