"""Grid layout: numbered frames tiled into grid images (as T2SGrid does).

Frames go row by row (left to right, top to bottom) into grids of ``rows x
cols`` tiles; under each tile a caption strip gives its frame number and
its time in seconds ("12 | 6.0s"), so the picture itself stays unpainted.
Consecutive grids start ``stride`` frames apart (T2SGrid slides a window of
half a grid). A grid never exceeds the model's ``max_pixels``: tiles shrink
first, down to ``min_tile`` pixels on their shorter side, and then fewer
tiles go in each grid (more grids are sent); nothing is ever cropped.

Tiles are scaled by a numba kernel writing straight into the grid (each
tile pixel averages two source pixels of the nearest source row); another
writes the captions from characters rendered once per character and size.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from tfvtg.errors import InvalidInputError

from .overlay import _char_ink, _char_mask, _rgb

__all__ = ["Grid", "tile_frames", "grid_geometry", "GridGeometry"]


@dataclass(frozen=True)
class Grid:
    """One grid image.

    Attributes:
        image: (H, W, 3) uint8.
        numbers: frame number of each tile, row-major (fewer than rows x
            cols in a last, partial grid; its other tiles are black).
        times: seconds written under each tile.
        boxes: (top, left, height, width) in pixels of each tile's picture
            (its caption strip lies just below it).
    """

    image: np.ndarray
    numbers: tuple[int, ...]
    times: tuple[float, ...]
    boxes: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class GridGeometry:
    """How frames are tiled (what :func:`tile_frames` settled on).

    Attributes:
        rows, cols: tiles per grid (fewer than asked when ``max_pixels``
            forced it).
        stride: frames between the first tiles of consecutive grids.
        tile_height, tile_width: pixels of each tile's picture.
        caption_height: pixels of the caption strip under each tile.
        shrunk: tiles are smaller than the frames.
        reduced: fewer tiles per grid than asked (to respect ``max_pixels``).
    """

    rows: int
    cols: int
    stride: int
    tile_height: int
    tile_width: int
    caption_height: int
    shrunk: bool
    reduced: bool

    @property
    def height(self) -> int:
        return self.rows * (self.tile_height + self.caption_height)

    @property
    def width(self) -> int:
        return self.cols * self.tile_width

    @property
    def pixels(self) -> int:
        """Pixels of one grid image."""
        return self.height * self.width

    def starts(self, n_frames: int) -> list[int]:
        """Index of the first frame of each grid: every ``stride`` frames
        until a grid reaches the last frame."""
        per = self.rows * self.cols
        starts = [0]
        while starts[-1] + per < n_frames:
            starts.append(starts[-1] + self.stride)
        return starts

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "stride": self.stride,
                "tile": [self.tile_height, self.tile_width], "caption_height": self.caption_height,
                "grid_size": [self.height, self.width], "shrunk": self.shrunk, "reduced": self.reduced}


def _caption_height(tile_height: int) -> int:
    """Pixels of the caption strip under a tile: a fifth of the tile, at
    least 16 (text a vision encoder's 14-16 pixel patches can read)."""
    return max(16, int(round(0.2 * tile_height)))


def _fit(rows: int, cols: int, h: int, w: int, max_pixels: int | None) -> tuple[int, int]:
    """Largest (tile height, tile width) with the frame's aspect, at most
    the frame's size, whose grid holds at most ``max_pixels``."""
    th, tw = h, w
    if max_pixels is None:
        return th, tw

    def pixels(t_h: int, t_w: int) -> int:
        return rows * cols * t_w * (t_h + _caption_height(t_h))

    if pixels(th, tw) <= max_pixels:
        return th, tw
    scale = math.sqrt(max_pixels / (rows * cols * w * h * 1.2))
    th = max(1, int(h * scale))
    while th > 1 and pixels(th, max(1, int(round(th * w / h)))) > max_pixels:
        th -= 1
    return th, max(1, int(round(th * w / h)))


def grid_geometry(frame_height: int, frame_width: int, rows: int = 3, cols: int = 4, stride: int | None = None,
                  max_pixels: int | None = None, min_tile: int = 56, tile_size: int | None = None) -> GridGeometry:
    """The tiling of frames of the given size (pixels).

    Args:
        rows, cols: tiles per grid asked for (T2SGrid: 3 rows of 4).
        stride: frames between consecutive grids' first tiles (default
            rows x cols: no overlap; T2SGrid uses half a grid).
        max_pixels: most pixels of one grid image (the model's limit).
        min_tile: smallest tile side (pixels) before fewer tiles go in a grid.
        tile_size: longest tile side (pixels), to shrink tiles further
            (T2SGrid: 336).
    """
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"a grid needs at least one row and one column, got {rows} x {cols}")
    if stride is not None and stride < 1:
        raise InvalidInputError(f"stride must be at least 1 frame, got {stride}")
    if max_pixels is not None and max_pixels < 64:
        raise InvalidInputError(f"max_pixels must be at least 64, got {max_pixels}")
    h, w = int(frame_height), int(frame_width)
    if tile_size and max(h, w) > tile_size:
        f = tile_size / max(h, w)
        h, w = max(1, int(round(h * f))), max(1, int(round(w * f)))
    per_asked = rows * cols
    stride_share = (stride if stride is not None else per_asked) / per_asked
    r, c = rows, cols
    while True:
        th, tw = _fit(r, c, h, w, max_pixels)
        if min(th, tw) >= min(min_tile, h, w) or (r, c) == (1, 1):
            break
        # fewer tiles per grid: drop a row or a column, keeping the grid
        # closest to square in pixels
        if c > 1 and (r == 1 or c * tw >= r * (th + _caption_height(th))):
            c -= 1
        else:
            r -= 1
    per = r * c
    return GridGeometry(rows=r, cols=c, stride=max(1, min(per, int(round(stride_share * per)))),
                        tile_height=th, tile_width=tw, caption_height=_caption_height(th),
                        shrunk=(th, tw) != (int(frame_height), int(frame_width)), reduced=per < per_asked)


def _sample_positions(src: int, dst: int, taps: int) -> np.ndarray:
    """(taps, dst) source indices for each output pixel, spread over its
    footprint (all the same when enlarging)."""
    scale = src / dst
    offsets = (np.arange(taps) + 0.5) / taps if scale > 1.0 else np.full(taps, 0.5)
    pos = ((np.arange(dst)[None, :] + offsets[:, None]) * scale).astype(np.int64)
    return np.ascontiguousarray(np.minimum(pos, src - 1))


@njit(cache=True, nogil=True)
def _tile_kernel(frames, order, canvases, grid_of, tops, lefts, ys, xs0, xs1):  # pragma: no cover - numba
    """Scale frames[order[i]] into canvases[grid_of[i]] at (tops[i], lefts[i]):
    tile pixel (y, x) is the mean of source pixels (ys[y], xs0[x]) and
    (ys[y], xs1[x]). One source row per tile row: tiling is bound by memory
    traffic, and this reads the least (each row read is whole cache lines,
    so the second horizontal sample costs nothing more)."""
    th = ys.shape[0]
    tw = xs0.shape[0]
    for i in range(order.shape[0]):
        src = frames[order[i]]
        dst = canvases[grid_of[i]]
        top = tops[i]
        left = lefts[i]
        for y in range(th):
            row = src[ys[y]].ravel()  # contiguous rows: flat views, plain byte offsets
            out = dst[top + y, left:left + tw].ravel()
            for x in range(tw):
                a = xs0[x] * 3
                b = xs1[x] * 3
                o = x * 3
                out[o] = (np.uint16(row[a]) + np.uint16(row[b]) + 1) >> 1
                out[o + 1] = (np.uint16(row[a + 1]) + np.uint16(row[b + 1]) + 1) >> 1
                out[o + 2] = (np.uint16(row[a + 2]) + np.uint16(row[b + 2]) + 1) >> 1


@njit(cache=True, nogil=True)
def _caption_kernel(canvases, grid_of, tops, lefts, codes, lengths, inks, advances, strip_h, tile_w):  # pragma: no cover
    """Write caption i (symbols codes[i, :lengths[i]]) centred in the strip
    below tile i: inks[s] is symbol s in colour on black, advances[s] its width."""
    ink_h = inks.shape[1]
    h = min(ink_h, strip_h)
    for i in range(codes.shape[0]):
        dst = canvases[grid_of[i]]
        width = 0
        for j in range(lengths[i]):
            width += advances[codes[i, j]]
        x = lefts[i] + max(0, (tile_w - width) // 2)
        right = lefts[i] + tile_w
        y = tops[i] + (strip_h - h) // 2
        for j in range(lengths[i]):
            sym = codes[i, j]
            w = min(advances[sym], right - x)
            if w <= 0:
                break
            for yy in range(h):
                for xx in range(w):
                    for c in range(3):
                        dst[y + yy, x + xx, c] = inks[sym, yy, xx, c]
            x += advances[sym]


def _write_captions(canvases: np.ndarray, texts: list[str], grid_of: list[int], tops: list[int], lefts: list[int],
                    strip_h: int, tile_w: int, rgb: tuple[int, int, int]) -> None:
    """All captions at one font size (shrunk once so the longest fits the
    tile's width), from characters rendered once per size."""
    size = max(6, int(strip_h * 0.8))
    symbols = sorted(set("".join(texts)))
    widest = max((sum(_char_mask(c, size).shape[1] for c in t) for t in texts), default=0)
    if widest > tile_w - 2 and size > 6:
        size = max(6, int(size * (tile_w - 2) / widest))
    masks = [_char_mask(c, size) for c in symbols] or [np.zeros((1, 1), np.float32)]
    inks = np.zeros((len(masks), masks[0].shape[0], max(m.shape[1] for m in masks), 3), np.uint8)
    for k, c in enumerate(symbols):
        ink = _char_ink(c, size, rgb)
        inks[k, :, :ink.shape[1]] = ink
    code_of = {c: k for k, c in enumerate(symbols)}
    longest = max((len(t) for t in texts), default=1) or 1
    codes = np.zeros((len(texts), longest), np.int64)
    for i, t in enumerate(texts):
        codes[i, :len(t)] = [code_of[c] for c in t]
    _caption_kernel(canvases, np.asarray(grid_of, np.int64), np.asarray(tops, np.int64), np.asarray(lefts, np.int64),
                    codes, np.asarray([len(t) for t in texts], np.int64), inks,
                    np.asarray([m.shape[1] for m in masks], np.int64), strip_h, tile_w)


def tile_frames(frames: Any, times: Sequence[float] | None = None, rows: int = 3, cols: int = 4,
                stride: int | None = None, max_pixels: int | None = None, min_tile: int = 56,
                tile_size: int | None = None, start: int = 0, labels: Sequence[str] | None = None,
                color: Any = "white", geometry: GridGeometry | None = None,
                indices: Sequence[int] | np.ndarray | None = None) -> list[Grid]:
    """Tile frames into captioned grid images.

    Args:
        frames: (T, H, W, 3) uint8 array or a list of same-sized (H, W, 3) arrays.
        times: (T,) seconds written under each tile (default: none, numbers only).
        rows, cols, stride, max_pixels, min_tile, tile_size: see :func:`grid_geometry`.
        start: the first frame's number.
        labels: caption text per frame instead of "number | time".
        color: caption colour (on a black strip).
        geometry: a tiling already settled (skips :func:`grid_geometry`).
        indices: tile ``frames[indices]`` (in that order) without copying
            them out first; ``times`` and ``labels`` then follow ``indices``.

    Returns:
        The grids in order; ``grid_geometry(...)`` tells the tiling.
    """
    array = frames if isinstance(frames, np.ndarray) else np.stack([np.asarray(f) for f in frames]) if len(
        frames) else np.zeros((0, 1, 1, 3), np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InvalidInputError(f"frames must be (T, H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    source_of = np.arange(len(array)) if indices is None else np.asarray(indices, np.int64)
    if len(source_of) and (source_of.min() < 0 or source_of.max() >= len(array)):
        raise InvalidInputError(f"indices must lie in 0..{len(array) - 1}")
    n = len(source_of)
    if n == 0:
        raise InvalidInputError("no frames to tile")
    if times is not None and len(times) != n:
        raise InvalidInputError(f"{len(times)} times for {n} frames")
    if labels is not None and len(labels) != n:
        raise InvalidInputError(f"{len(labels)} labels for {n} frames")
    geo = geometry or grid_geometry(array.shape[1], array.shape[2], rows, cols, stride, max_pixels, min_tile,
                                    tile_size)
    rgb = _rgb(color)
    th, tw, ch = geo.tile_height, geo.tile_width, geo.caption_height
    per = geo.rows * geo.cols
    starts = geo.starts(n)
    canvases = np.zeros((len(starts), geo.height, geo.width, 3), np.uint8)
    order, order_k, grid_of, tops, lefts = [], [], [], [], []
    for g, s in enumerate(starts):
        for slot, k in enumerate(range(s, min(s + per, n))):
            r, c = divmod(slot, geo.cols)
            order.append(source_of[k])
            order_k.append(k)
            grid_of.append(g)
            tops.append(r * (th + ch))
            lefts.append(c * tw)
    ys = _sample_positions(array.shape[1], th, 1)[0]
    xs = _sample_positions(array.shape[2], tw, 2)
    _tile_kernel(np.ascontiguousarray(array), np.asarray(order, np.int64), canvases, np.asarray(grid_of, np.int64),
                 np.asarray(tops, np.int64), np.asarray(lefts, np.int64), ys, xs[0], xs[1])
    texts = []
    for k in range(n):
        if labels is not None:
            texts.append(str(labels[k]))
        elif times is not None:
            texts.append(f"{start + k} | {float(times[k]):.1f}s")
        else:
            texts.append(str(start + k))
    _write_captions(canvases, [texts[k] for k in order_k], grid_of, [t + th for t in tops], lefts, ch, tw, rgb)
    grids = []
    i = 0
    for g, s in enumerate(starts):
        ks = list(range(s, min(s + per, n)))
        boxes = [(tops[i + j], lefts[i + j], th, tw) for j in range(len(ks))]
        i += len(ks)
        grids.append(Grid(canvases[g], tuple(start + k for k in ks),
                          tuple(float(times[k]) for k in ks) if times is not None else (), tuple(boxes)))
    return grids
