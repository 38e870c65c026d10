"""Quick start: ground sentences in a video, end to end.

Runs anywhere, offline, in seconds: it generates a short video and a tiny,
randomly initialised BLIP-2 (so the answers are meaningless). With real
weights, drop the two stand-ins and call ``ground("your.mp4", "your sentence")``
(the default encoder is Salesforce/blip2-itm-vit-g-coco).

    python examples/quickstart.py [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tfvtg import Blip2Encoder, GroundingConfig, ground
from tfvtg.testing import build_tiny_blip2, make_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="where to write the video, model and plot (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="tfvtg-quickstart-"))
    work.mkdir(parents=True, exist_ok=True)

    video = make_video(work / "clip.mp4", n_frames=120, fps=10)          # 12 s of a moving bar
    encoder = Blip2Encoder(build_tiny_blip2(work / "tiny-blip2"), device="cpu")

    result = ground(video, "a person opens the door", text_encoder=encoder,
                    config=GroundingConfig.preset("default"))
    print(result)
    for m in result.moments[:3]:
        print(f"  {m.start:5.2f} s - {m.end:5.2f} s  score {m.score:.3f}")
    result.plot(path=work / "result.png")
    print(f"plot: {work / 'result.png'}")


if __name__ == "__main__":
    main()
