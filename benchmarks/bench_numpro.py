"""NumPro overlay speed: numbering a 10-minute video sampled at 1 fps (600 frames).

    python benchmarks/bench_numpro.py
"""
from __future__ import annotations

import time

import numpy as np


def main() -> None:
    import numpro

    rng = np.random.default_rng(0)
    for h, w in ((336, 596), (720, 1280)):
        frames = rng.integers(0, 255, (600, h, w, 3), dtype=np.uint8)
        numpro.number_frames(frames[:2])  # font and glyph cache warm-up
        for inplace in (False, True):
            t0 = time.perf_counter()
            numpro.number_frames(frames, inplace=inplace)
            dt = time.perf_counter() - t0
            print(f"600 frames {w}x{h}, {'in place' if inplace else 'copy   '}: {dt * 1e3:7.1f} ms "
                  f"({600 / dt:,.0f} frames/s)")


if __name__ == "__main__":
    main()
