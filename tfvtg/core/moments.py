"""The last stage: ranked moments in seconds, and the result of a grounding call."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import hooks
from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .decomposition import Decomposition

__all__ = ["Moment", "GroundingResult"]


class Moment(NamedTuple):
    """A span of the video in seconds with a confidence.

    ``score`` is the reference's confidence: the proposal's score divided by
    the best one, so the first moment has 1.0 (it can be NaN in the
    bit-compatible presets, as in the published code).
    """

    start: float
    end: float
    score: float = 1.0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    def iou(self, other: Moment | tuple[float, float]) -> float:
        """Temporal intersection over union with another span (0 when disjoint)."""
        s, e = float(other[0]), float(other[1])
        inter = min(self.end, e) - max(self.start, s)
        union = max(self.end, e) - min(self.start, s)
        return max(inter, 0.0) / union if union > 0 else 0.0

    def to_dict(self) -> dict[str, float | None]:
        """``{"start", "end", "score"}`` in seconds; a NaN score (the
        reference presets keep the published code's NaN) becomes None, so
        the dict dumps as strict JSON."""
        score = self.score if math.isfinite(self.score) else None
        return {"start": self.start, "end": self.end, "score": score}


@dataclass
class GroundingResult:
    """What a grounding call found.

    Attributes:
        query: the sentence that was grounded.
        moments: ranked moments, best first, in seconds.
        duration: video length in seconds.
        curve: (T,) masked similarity curve of the query (frames at
            ``T / duration`` fps), kept for plotting and inspection.
        decomposition: the decomposition used, if any.
        sub_event_moments: per sub-event, its chosen candidate moments.
        sub_event_curves: per sub-event, its (T,) mean similarity curve.
    """

    query: str
    moments: list[Moment]
    duration: float
    curve: np.ndarray | None = None
    decomposition: Decomposition | None = None
    sub_event_moments: list[list[Moment]] = field(default_factory=list)
    sub_event_curves: list[np.ndarray] = field(default_factory=list)
    config: Any = None

    @property
    def best(self) -> Moment:
        """The top-ranked moment."""
        if not self.moments:
            raise InvalidInputError(f"no moment was found for {self.query!r}")
        return self.moments[0]

    @property
    def start(self) -> float:
        return self.best.start

    @property
    def end(self) -> float:
        return self.best.end

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        return {
            "query": self.query,
            "duration": self.duration,
            "moments": [m.to_dict() for m in self.moments],
            "decomposition": None if self.decomposition is None else self.decomposition.to_tfvtg(),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per moment (rank, start, end, score), pandas-friendly."""
        return [{"query": self.query, "rank": i, **m.to_dict()} for i, m in enumerate(self.moments)]

    def __repr__(self) -> str:
        if self.moments:
            b = self.moments[0]
            best = f"{b.start:.2f}s-{b.end:.2f}s (score {b.score:.3f})" if not math.isnan(b.score) else \
                f"{b.start:.2f}s-{b.end:.2f}s (score nan)"
        else:
            best = "none"
        dec = "" if self.decomposition is None else f", relation={self.decomposition.relationship!r}"
        return f"GroundingResult(query={self.query!r}, best={best}, {len(self.moments)} moments{dec})"

    def _repr_html_(self) -> str:
        """A small table of the top moments for notebooks."""
        import html

        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{m.start:.2f}</td><td>{m.end:.2f}</td><td>{m.score:.3f}</td></tr>"
            for i, m in enumerate(self.moments[:5]))
        dec = "" if self.decomposition is None else \
            f" &middot; {html.escape(self.decomposition.relationship)}, {len(self.decomposition.sub_events)} sub-events"
        return (f"<div><b>{html.escape(self.query)}</b> &middot; {self.duration:.2f} s video{dec}"
                f"<table><tr><th>#</th><th>start (s)</th><th>end (s)</th><th>score</th></tr>{rows}</table></div>")

    def plot(self, ground_truth: tuple[float, float] | None = None, ax: Any = None, path: str | None = None) -> Any:
        """Draw the curve, proposals and chosen moment (:func:`tfvtg.viz.plot_result`; needs ``tfvtg[plot]``)."""
        return hooks.call("plot_result", self, ground_truth=ground_truth, ax=ax, path=path)
