"""Pictures of what the grounder did (matplotlib, imported only here)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["plot_result", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with a file backend when there is no display
    (MissingExtraError naming ``tfvtg[plot]`` when matplotlib is missing)."""
    from .._extras import require

    matplotlib = require("matplotlib")
    if not os.environ.get("DISPLAY") and "inline" not in str(matplotlib.get_backend()).lower():
        matplotlib.use("Agg", force=False)
    return require("matplotlib.pyplot")


def plot_result(result: Any, ground_truth: Sequence[float] | None = None, ax: Any = None,
                path: str | os.PathLike[str] | None = None, threshold: float | None = None) -> Any:
    """Plot a :class:`~tfvtg.GroundingResult`.

    Draws the query's similarity curve over time (seconds), the mask
    threshold, every proposal (shaded, darker for higher confidence), the
    chosen moment, the ground truth when given, and, when a decomposition was
    used, each sub-event's curve with its chosen spans in a second panel.

    Args:
        result: the grounding result.
        ground_truth: (start, end) seconds.
        ax: an existing matplotlib Axes (single panel) to draw into.
        path: save the figure there (PNG, SVG, PDF by suffix).
        threshold: mask threshold line (default: the result's config, 0.2).

    Returns:
        The matplotlib Figure.
    """
    plt = pyplot()
    subs = list(result.sub_event_curves or [])
    if ax is None:
        rows = 2 if subs else 1
        fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows), sharex=True, squeeze=False)
        main, sub_ax = axes[0, 0], (axes[1, 0] if subs else None)
    else:
        fig, main, sub_ax = ax.figure, ax, None
    cfg = getattr(result, "config", None)
    if threshold is None:
        threshold = getattr(cfg, "mask_threshold", 0.2)
    curve = np.asarray(result.curve) if result.curve is not None else None
    if curve is not None:
        t = (np.arange(len(curve)) + 0.5) / len(curve) * result.duration
        main.plot(t, curve, color="tab:blue", lw=1.5, label="similarity")
        main.axhline(threshold, color="grey", ls="--", lw=1, label=f"mask threshold {threshold:g}")
    moments = list(result.moments)
    finite = [m.score for m in moments if np.isfinite(m.score)]
    top = max(finite) if finite else 1.0
    # other proposals as grey bands under the answer's green: grey over green
    # stays a green, where orange over green turned olive
    for i, m in enumerate(moments[1:]):
        w = (m.score / top) if (np.isfinite(m.score) and top > 0) else 0.5
        main.axvspan(m.start, m.end, color="0.45", alpha=0.05 + 0.10 * float(np.clip(w, 0, 1)), lw=0,
                     label=f"other proposals ({len(moments) - 1}), darker = higher score" if i == 0 else None)
    if moments:
        b = moments[0]
        main.axvspan(b.start, b.end, color="tab:green", alpha=0.3, lw=0,
                     label=f"prediction {b.start:.1f}-{b.end:.1f} s")
    if ground_truth is not None:
        gs, ge = float(ground_truth[0]), float(ground_truth[1])
        ymin, ymax = main.get_ylim()
        main.hlines(ymax, gs, ge, color="tab:red", lw=6, label=f"ground truth {gs:.1f}-{ge:.1f} s")
    main.set_ylabel("cosine similarity")
    main.set_title(result.query if len(result.query) < 90 else result.query[:87] + "...")
    main.set_xlim(0, result.duration)
    main.legend(loc="upper right", fontsize=8)
    if sub_ax is not None:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        events: Sequence[Sequence[str]] = (result.decomposition.sub_events if result.decomposition is not None
                                           else [()] * len(subs))
        for i, c in enumerate(subs):
            color = colors[i % len(colors)]
            t = (np.arange(len(c)) + 0.5) / len(c) * result.duration
            label = events[i][0] if i < len(events) and events[i] else f"sub-event {i + 1}"
            sub_ax.plot(t, c, color=color, lw=1.2, label=label[:60])
            for m in (result.sub_event_moments[i] if i < len(result.sub_event_moments) else [])[:1]:
                sub_ax.axvspan(m.start, m.end, color=color, alpha=0.2, lw=0,
                               label=f"sub-event {i + 1} span {m.start:.1f}-{m.end:.1f} s")
        rel = result.decomposition.relationship if result.decomposition is not None else ""
        sub_ax.set_title(f"sub-events ({rel})", fontsize=10)
        sub_ax.set_ylabel("similarity")
        sub_ax.legend(loc="upper right", fontsize=7)
        sub_ax.set_xlabel("time (s)")
    else:
        main.set_xlabel("time (s)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
