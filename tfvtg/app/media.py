"""Video bytes for the player (HTTP range requests) and thumbnails.

Both take a file the caller already resolved from a library id or an upload
token; nothing here sees a request path.
"""
from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._extras import require
from ..errors import InvalidInputError, VideoDecodeError

__all__ = ["ByteRange", "parse_range", "iter_file", "content_type", "ThumbnailCache", "thumbnail_jpeg"]

_CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                  ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo", ".mpg": "video/mpeg",
                  ".mpeg": "video/mpeg", ".ts": "video/mp2t", ".3gp": "video/3gpp", ".flv": "video/x-flv",
                  ".wmv": "video/x-ms-wmv"}
CHUNK_BYTES = 256 * 1024


def content_type(path: str | os.PathLike[str]) -> str:
    """The MIME type the player is told, by suffix."""
    return _CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``first..last`` (inclusive) of a file of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


class RangeNotSatisfiable(InvalidInputError):
    """A Range header that selects no byte of the file (HTTP 416)."""


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range a ``Range`` header asks for, or None for the whole file.

    One range is served (what players send); a list of ranges gets its
    first. A malformed header is ignored (RFC 9110: the whole file is sent);
    a range past the end raises :class:`RangeNotSatisfiable`.
    """
    if not header:
        return None
    m = _RANGE_RE.match(header.split(",")[0])  # "bytes=0-1,5-6": the first
    if m is None:
        return None
    start_s, end_s = m.groups()
    if not start_s and not end_s:
        return None
    if not start_s:  # the last N bytes
        n = int(end_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"the range {header!r} selects no byte of a {size}-byte file")
        return ByteRange(max(0, size - n), size - 1, size)
    first = int(start_s)
    last = int(end_s) if end_s else size - 1
    if end_s and last < first:  # invalid: ignored
        return None
    if first >= size:
        raise RangeNotSatisfiable(f"the range {header!r} starts past the end of a {size}-byte file")
    return ByteRange(first, min(last, size - 1), size)


def iter_file(path: str | os.PathLike[str], first: int = 0, length: int | None = None,
              chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The file's bytes from ``first``, ``length`` of them (default: to the end), in chunks."""
    with open(path, "rb") as f:
        f.seek(first)
        left = length
        while left is None or left > 0:
            data = f.read(chunk if left is None else min(chunk, left))
            if not data:
                break
            if left is not None:
                left -= len(data)
            yield data


def thumbnail_jpeg(path: str | os.PathLike[str], seconds: float, width: int = 192, quality: int = 80) -> bytes:
    """A JPEG of the frame shown at ``seconds`` (the last frame at or before
    it), ``width`` pixels wide, aspect kept.

    Seeks to the keyframe before ``seconds`` and decodes forward, so the cost
    is one GOP, not the video up to that point.
    """
    av = require("av")
    require("PIL")
    import io

    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInputError(f"a thumbnail time is a number of seconds >= 0, got {seconds!r}")
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            chosen = None
            if stream.time_base is not None and seconds > 0:
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if chosen is not None and frame.time is not None and frame.time > seconds + 1e-6:
                    break
                chosen = frame
                if frame.time is None:
                    break
            if chosen is None:  # seeking past the end: take the first frame instead
                container.seek(0)
                chosen = next(container.decode(stream), None)
            if chosen is None:
                raise VideoDecodeError(f"no frame could be decoded from {path}")
            height = max(2, int(round(chosen.height * width / max(chosen.width, 1) / 2)) * 2)
            image = chosen.to_image().resize((width, height))
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"PyAV could not decode a frame of {path}: {exc}") from exc
    except IndexError:
        raise VideoDecodeError(f"{path} has no video stream") from None
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ThumbnailCache:
    """Thumbnails by (file, modification time, time in tenths of a second, width),
    least recently used dropped past ``max_items``."""

    def __init__(self, max_items: int = 2048):
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, seconds: float, width: int) -> bytes:
        tenth = int(round(seconds * 10))
        key = (path, os.stat(path).st_mtime_ns, tenth, width)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        data = thumbnail_jpeg(path, tenth / 10.0, width)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data
