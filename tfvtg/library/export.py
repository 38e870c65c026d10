"""Export a moment as an MP4 clip with PyAV.

The span is the moment with ``pad`` seconds either side, clipped to the
video's edges. Two ways to write it:

* **stream copy** (no quality loss, fast): the compressed video packets are
  copied as they are. A copied clip must start on a keyframe, so it is used
  when a keyframe lies at most ``max(pad, 0.5)`` seconds before the padded
  start (the clip then starts at that keyframe: a little more padding) and
  the codec can be stored in MP4.
* **re-encode** otherwise: the frames of the span are decoded and encoded
  again (H.264 when the FFmpeg build has it, else MPEG-4 Part 2).

Only the video stream is written. The returned :class:`Clip` says which way
was used and the span actually written.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .._extras import require
from ..errors import InvalidInputError, VideoDecodeError

__all__ = ["Clip", "cut_clip"]

# codecs an MP4 container can carry as they are
_MP4_CODECS = {"h264", "hevc", "mpeg4", "av1", "vp9", "mpeg2video", "mjpeg"}


@dataclass(frozen=True)
class Clip:
    """A written clip.

    Attributes:
        path: the MP4 file.
        start, end: the span written, in seconds of the source video.
        method: "stream-copy" or "re-encode".
    """

    path: str
    start: float
    end: float
    method: str


def _keyframes(container, stream) -> list[float]:
    times = []
    for packet in container.demux(stream):
        if packet.pts is not None and packet.is_keyframe:
            times.append(float(packet.pts * stream.time_base))
    container.seek(0)
    return sorted(times)


def cut_clip(source: str | os.PathLike[str], start: float, end: float, out: str | os.PathLike[str], pad: float = 1.0,
             *, duration: float | None = None, mode: str = "auto") -> Clip:
    """Write ``[start - pad, end + pad]`` (clipped to the video) of ``source`` to ``out``.

    Args:
        source: the video file.
        start, end: the moment in seconds.
        out: the MP4 to write (written atomically).
        pad: seconds added either side.
        duration: the video's length in seconds (default: the container's).
        mode: "auto" (stream copy where keyframes allow, else re-encode),
            "copy" or "reencode".
    """
    av = require("av")
    if mode not in ("auto", "copy", "reencode"):
        raise InvalidInputError(f"mode must be 'auto', 'copy' or 'reencode', got {mode!r}")
    for name, value in (("start", start), ("end", end), ("pad", pad)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInputError(f"{name} must be a finite number of seconds, got {value!r}")
    if end < start:
        raise InvalidInputError(f"the moment ends ({end} s) before it starts ({start} s)")
    if pad < 0:
        raise InvalidInputError(f"pad must be >= 0 seconds, got {pad}")
    out_path = Path(out)
    if out_path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        out_path = out_path.with_suffix(".mp4")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        container = av.open(os.fspath(source))
    except Exception as exc:
        raise VideoDecodeError(f"cannot open {source}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"no video stream in {source}")
        stream = container.streams.video[0]
        if duration is None:
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = end + pad
        lo = max(0.0, start - pad)
        hi = min(float(duration), end + pad)
        if hi <= lo:  # a moment past the end: keep at least the last instant
            lo = max(0.0, min(lo, float(duration)) - 1e-3)
            hi = min(float(duration), lo + 1e-3) if duration else lo + 1e-3
        copy_from = None
        if mode != "reencode" and stream.codec_context.name in _MP4_CODECS:
            slack = max(pad, 0.5)
            before = [k for k in _keyframes(container, stream) if k <= lo + 1e-6]
            if before and lo - before[-1] <= slack:
                copy_from = before[-1]
        if mode == "copy" and copy_from is None:
            raise InvalidInputError(
                f"no keyframe within {max(pad, 0.5):g} s before {lo:.2f} s (or the codec cannot go in MP4): "
                "a stream copy cannot start there; use mode='auto' or 'reencode'")
        tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        try:
            if copy_from is not None:
                _copy(av, container, stream, copy_from, hi, tmp)
                clip = Clip(str(out_path), copy_from, hi, "stream-copy")
            else:
                _reencode(av, container, stream, lo, hi, tmp)
                clip = Clip(str(out_path), lo, hi, "re-encode")
            os.replace(tmp, out_path)
        except BaseException:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            raise
    return clip


def _copy(av, container, stream, lo: float, hi: float, tmp: Path) -> None:
    tb = stream.time_base
    first_pts = None
    with av.open(os.fspath(tmp), "w", format="mp4") as output:
        out_stream = output.add_stream_from_template(stream)
        container.seek(int(lo / tb), stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * tb)
            if first_pts is None:
                if t < lo - 1e-6:
                    continue
                if not packet.is_keyframe:
                    continue
                first_pts = packet.pts
            if t >= hi - 1e-6:
                break
            packet.pts -= first_pts
            packet.dts -= first_pts
            packet.stream = out_stream
            output.mux(packet)


def _reencode(av, container, stream, lo: float, hi: float, tmp: Path) -> None:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    with av.open(os.fspath(tmp), "w", format="mp4") as output:
        out_stream = output.add_stream(codec, rate=rate)
        out_stream.width = stream.codec_context.width
        out_stream.height = stream.codec_context.height
        out_stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            out_stream.options = {"crf": "18", "preset": "veryfast"}
        container.seek(int(lo / stream.time_base), stream=stream, backward=True, any_frame=False)
        n = 0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            if t < lo - 1e-6:
                continue
            if t >= hi - 1e-6:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts = n
            frame.time_base = Fraction(1) / rate
            n += 1
            for packet in out_stream.encode(frame):
                output.mux(packet)
        for packet in out_stream.encode():
            output.mux(packet)
        if n == 0:
            raise VideoDecodeError(f"no frame of the video lies in [{lo:.2f}, {hi:.2f}] s")
