"""NumPro's picture: the numbered frames with the model's answer outlined."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfvtg.viz import pyplot

__all__ = ["plot_numpro_answer"]


def plot_numpro_answer(frames: Sequence[Any], answer: tuple[int, int] | None, timestamps: Sequence[float] | None = None,
                       columns: int = 8, path: str | os.PathLike[str] | None = None, title: str | None = None) -> Any:
    """A NumPro contact sheet with the frames of the answer outlined.

    Args:
        frames: the numbered frames the model saw ((H, W, 3) arrays or PIL images).
        answer: (first, last) frame numbers chosen by the model, or None.
        timestamps: seconds of each frame, shown under it.
        columns: frames per row.
        path: save the figure there.

    Returns:
        The matplotlib Figure.
    """
    plt = pyplot()
    n = len(frames)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.3 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(np.asarray(frames[i]))
        inside = answer is not None and answer[0] <= i <= answer[1]
        if inside:
            h, w = np.asarray(frames[i]).shape[:2]
            ax.add_patch(plt.Rectangle((0, 0), w - 1, h - 1, fill=False, ec="lime", lw=3))
        if timestamps is not None:
            ax.set_title(f"{timestamps[i]:.1f}s", fontsize=7, color="green" if inside else "black")
    heading = title or (f"answer: frames {answer[0]}-{answer[1]}" if answer else "no answer")
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
