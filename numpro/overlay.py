"""Frame numbers painted on frames, and ways to look at the result.

Each distinct number is rendered once per font size (Pillow's bundled
scalable font, no system font path) into an alpha mask; painting is then a
small numpy blend per frame, so numbering a 10-minute video sampled at 1 fps
takes a few milliseconds.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfvtg.errors import InvalidInputError
from tfvtg.errors import require_extra as require

__all__ = ["number_frames", "contact_sheet", "write_video", "POSITIONS", "resolve_font_size"]

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left", "center")


def resolve_font_size(font_size: float, height: int) -> int:
    """Pixels from a font size: an int is pixels; a float in (0, 1) is a
    fraction of the frame height (so small and 4K frames read alike)."""
    if isinstance(font_size, float) and 0 < font_size < 1:
        return max(6, int(round(font_size * height)))
    size = int(font_size)
    if size < 1:
        raise InvalidInputError(f"font_size must be positive pixels or a fraction of the height in (0, 1), got {font_size!r}")
    return size


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Any:
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _glyph(text: str, size: int) -> tuple[np.ndarray, int]:
    """(alpha mask (h, w) float32 in [0, 1], height of the ink) for ``text``."""
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import Image, ImageDraw

    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(img).text((-left, -top), text, font=font, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0, bottom - top


@functools.lru_cache(maxsize=64)
@functools.lru_cache(maxsize=1024)
def _char_mask(char: str, size: int) -> np.ndarray:
    """(line height, advance width) float32 alpha of one character, placed on
    the font's baseline, so characters laid side by side make a line."""
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import Image, ImageDraw

    font = _font(size)
    ascent, descent = font.getmetrics()
    width = max(1, int(round(font.getlength(char))))
    img = Image.new("L", (width, ascent + descent), 0)
    ImageDraw.Draw(img).text((0, 0), char, font=font, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=2048)
def _char_ink(char: str, size: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """(line height, advance, 3) uint8: one character in ``rgb`` on black."""
    return (_char_mask(char, size)[..., None] * np.asarray(rgb, np.float32) + 0.5).astype(np.uint8)


def write_line(canvas: np.ndarray, text: str, size: int, top: int, left: int, height: int, width: int,
               rgb: tuple[int, int, int]) -> int:
    """Write ``text`` in ``rgb`` centred in the black box (top, left, height,
    width) of ``canvas``, from cached characters (no font rendering once
    warm); a line wider than the box is shrunk once, then clipped. Returns
    the font size used."""
    advance = sum(_char_mask(c, size).shape[1] for c in text)
    if advance > width - 2 and size > 6:
        size = max(6, int(size * (width - 2) / advance))
        advance = sum(_char_mask(c, size).shape[1] for c in text)
    x = left + max(0, (width - advance) // 2)
    right = left + width
    for c in text:
        ink = _char_ink(c, size, rgb)
        h = min(ink.shape[0], height)
        y = top + (height - h) // 2
        w = min(ink.shape[1], right - x)
        if w <= 0:
            break
        canvas[y:y + h, x:x + w] = ink[:h, :w]
        x += ink.shape[1]
    return size


def _line_mask(text: str, size: int) -> np.ndarray:
    """(h, w) alpha of a line of text, built from cached characters: text
    that changes every call (times in captions) costs no font rendering."""
    return np.hstack([_char_mask(c, size) for c in text]) if text else np.zeros((1, 1), np.float32)


def _named_rgb(color: str) -> tuple[int, int, int]:
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import ImageColor

    try:
        r, g, b = ImageColor.getrgb(color)[:3]
    except ValueError:
        raise InvalidInputError(f"unknown colour {color!r}: use a name, '#rrggbb' or an (r, g, b) tuple") from None
    return int(r), int(g), int(b)


def _rgb(color: Any) -> tuple[int, int, int]:
    if isinstance(color, str):
        return _named_rgb(color)
    values = [int(c) for c in list(color)[:3]]
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise InvalidInputError(f"colour must be three values in 0..255, got {color!r}")
    return values[0], values[1], values[2]


def _place(position: str, frame_h: int, frame_w: int, h: int, w: int, margin: int) -> tuple[int, int]:
    if position == "bottom_right":
        # NumPro lifts bottom labels by a third of their height off the edge
        return frame_h - h - margin - h // 3, frame_w - w - margin
    if position == "bottom_left":
        return frame_h - h - margin - h // 3, margin
    if position == "top_right":
        return margin, frame_w - w - margin
    if position == "top_left":
        return margin, margin
    if position == "center":
        return (frame_h - h) // 2, (frame_w - w) // 2
    raise InvalidInputError(f"position must be one of {POSITIONS}, got {position!r}")


def _paint(frame: np.ndarray, text: str, size: int, rgb: tuple[int, int, int], position: str, margin: int) -> np.ndarray:
    mask, _ = _glyph(text, size)
    fh, fw = frame.shape[:2]
    h, w = mask.shape
    y, x = _place(position, fh, fw, h, w, margin)
    # clip the label to the frame (a huge font on a tiny frame)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, fh), min(x + w, fw)
    if y1 <= y0 or x1 <= x0:
        return frame
    a = mask[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region * (1 - a) + np.asarray(rgb, np.float32) * a + 0.5).astype(np.uint8)
    return frame


def number_frames(frames: Any, font_size: float = 40, color: Any = "red", position: str = "bottom_right",
                  start: int = 0, margin: int = 0, inplace: bool = False) -> Any:
    """Paint each frame's number on it (NumPro's numbered-frame prompting).

    Args:
        frames: a (T, H, W, 3) uint8 array, a list of (H, W, 3) arrays, or a
            list of PIL images.
        font_size: pixels (the paper's best: 40), or a float in (0, 1) as a
            fraction of the frame height.
        color: a colour name, "#rrggbb" or an (r, g, b) tuple (default red).
        position: "bottom_right" (default), "bottom_left", "top_right",
            "top_left" or "center".
        start: the first frame's number.
        margin: pixels between the label and the frame edge.
        inplace: paint into the given array(s) instead of copies (saves the
            copy, which dominates the cost for long videos).

    Returns:
        The same kind as given (new objects unless ``inplace``).
    """
    if position not in POSITIONS:
        raise InvalidInputError(f"position must be one of {POSITIONS}, got {position!r}")
    rgb = _rgb(color)
    is_array = isinstance(frames, np.ndarray)
    if is_array and (frames.ndim != 4 or frames.shape[-1] != 3):
        raise InvalidInputError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    if is_array:  # one copy of the whole array, painted in place
        out_array = frames if (inplace and frames.dtype == np.uint8) else np.array(frames, dtype=np.uint8, copy=True)
        for i in range(len(out_array)):
            size = resolve_font_size(font_size, out_array.shape[1])
            _paint(out_array[i], str(start + i), size, rgb, position, margin)
        return out_array
    items = list(frames)
    pil = bool(items) and not isinstance(items[0], np.ndarray)
    out = []
    for i, item in enumerate(items):
        if not pil and inplace and item.dtype == np.uint8:
            arr = item
        else:
            arr = np.array(item.convert("RGB") if pil else item, dtype=np.uint8, copy=True)
        size = resolve_font_size(font_size, arr.shape[0])
        out.append(_paint(arr, str(start + i), size, rgb, position, margin))
    if pil:
        require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
        from PIL import Image

        return [Image.fromarray(a) for a in out]
    return out


def contact_sheet(frames: Sequence[Any], columns: int = 8, thumb_width: int = 240, gap: int = 4) -> Any:
    """A grid image of the frames (a PIL image), to look at what the model sees."""
    require("PIL")  # MissingExtraError naming tfvtg[vision] when Pillow is missing
    from PIL import Image

    items = [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames]
    if not items:
        raise InvalidInputError("contact_sheet needs at least one frame")
    h, w = items[0].shape[:2]
    tw = min(thumb_width, w)
    th = max(1, int(round(h * tw / w)))
    cols = max(1, min(columns, len(items)))
    rows = -(-len(items) // cols)
    sheet = Image.new("RGB", (cols * tw + (cols + 1) * gap, rows * th + (rows + 1) * gap), (24, 24, 24))
    for i, arr in enumerate(items):
        thumb = Image.fromarray(arr).resize((tw, th), Image.Resampling.BILINEAR)
        r, c = divmod(i, cols)
        sheet.paste(thumb, (gap + c * (tw + gap), gap + r * (th + gap)))
    return sheet


def write_video(frames: Sequence[Any], path: str | os.PathLike[str], fps: float = 1.0, codec: str | None = None) -> str:
    """Encode frames to a video file with PyAV (written to a temporary file
    beside ``path``, then renamed: a killed run leaves no half file)."""
    import fractions
    import tempfile

    av = require("av")

    items = [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames]
    if not items:
        raise InvalidInputError("write_video needs at least one frame")
    h, w = items[0].shape[:2]
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1] or ".mp4"
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    rate = fractions.Fraction(fps).limit_denominator(1000)
    try:
        with av.open(tmp, "w") as container:
            stream: Any = None
            for name in ([codec] if codec else ["libx264", "h264", "mpeg4"]):
                try:
                    stream = container.add_stream(name, rate=rate)
                    break
                except Exception:
                    continue
            if stream is None:
                raise InvalidInputError(f"no usable video encoder among {codec or 'libx264, h264, mpeg4'}")
            # yuv420p needs even sizes
            stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            for arr in items:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[: h - h % 2, : w - w % 2]), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
