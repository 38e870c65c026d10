"""Grounding configuration: one frozen dataclass with named presets.

Every length here is in *frames* of the feature sequence (3 fps for the
published features), not seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

__all__ = ["GroundingConfig", "PRESETS"]


@dataclass(frozen=True)
class GroundingConfig:
    """How proposals are scored, ranked and combined.

    Attributes:
        stride: shortest window and step between window lengths, in frames
            (shrunk to ``T // 2`` on videos shorter than two strides, as the
            reference does).
        max_stride_factor: longest window as a fraction of the video length T.
        mask_threshold: similarity below which a frame counts as background
            (its score is set to 0 and it is left out of the static score).
        nms_threshold: proposals overlapping a better one by more than this
            temporal IoU are suppressed.
        top_k: proposals kept per description after NMS.
        dynamic_threshold: the 3-tap rising test on smoothed first differences
            (a transition frame needs one of 3f, 2f+f', f+f'+f'' above this).
        gaussian_sigma: sigma, in frames, of the smoothing kernel applied to
            the similarity curve before differencing.
        vote_gamma: exponent on IoU in the IoU-weighted vote that re-ranks
            candidate spans.
        description_candidates: best proposals taken from each description's
            ranking when several descriptions vote (the reference takes 3).
        sub_event_top_k: k, candidates kept per sub-event after voting
            (k**m combinations for m sub-events).
        query_candidates: candidates of the whole query that enter the final vote.
        integrated_candidates: integrated sub-event spans that enter the final vote.
        nan_safe: give a window with no foreground frame outside it a finite
            static score (outside mean 0) instead of the reference's NaN,
            which the reference ranks first.
        integration: "reference" takes the union of the chosen sub-event
            spans for every relation (the published code); "paper" takes the
            intersection for simultaneous sub-events and the union for
            sequential ones (the paper's text).
        scoring: "reference" scores windows whose length is a stride multiple
            by their static score (the published code); "paper" scores every
            window [k, j) from the shortest to the longest length by its
            static score plus the dynamic score of its rising transition.
    """

    stride: int = 20
    max_stride_factor: float = 0.5
    mask_threshold: float = 0.2
    nms_threshold: float = 0.3
    top_k: int = 10
    dynamic_threshold: float = 0.0005
    gaussian_sigma: float = 1.0
    vote_gamma: float = 0.6
    description_candidates: int = 3
    sub_event_top_k: int = 3
    query_candidates: int = 7
    integrated_candidates: int = 2
    nan_safe: bool = False
    integration: Literal["reference", "paper"] = "reference"
    scoring: Literal["reference", "paper"] = "reference"

    def __post_init__(self) -> None:
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be a positive whole number of frames, got {self.stride!r}")
        if not 0.0 < self.max_stride_factor <= 1.0:
            raise ValueError(
                f"max_stride_factor must be in (0, 1] (longest window as a fraction of the video), "
                f"got {self.max_stride_factor!r}"
            )
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold is an IoU and must be in [0, 1], got {self.nms_threshold!r}")
        for name in ("top_k", "description_candidates", "sub_event_top_k", "query_candidates"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.integrated_candidates, int) or self.integrated_candidates < 0:
            raise ValueError(f"integrated_candidates must be >= 0, got {self.integrated_candidates!r}")
        if self.gaussian_sigma <= 0:
            raise ValueError(f"gaussian_sigma must be > 0 frames, got {self.gaussian_sigma!r}")
        if self.integration not in ("reference", "paper"):
            raise ValueError(f"integration must be 'reference' or 'paper', got {self.integration!r}")
        if self.scoring not in ("reference", "paper"):
            raise ValueError(f"scoring must be 'reference' or 'paper', got {self.scoring!r}")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> "GroundingConfig":
        """A named preset, optionally with some fields replaced.

        Presets: "charades" (stride 20, longest window 0.5 T), "activitynet"
        (stride 40, 1.0 T), "qvhighlights" (stride 50, 0.5 T) reproduce the
        published code exactly; "default" (stride 20, 0.5 T, ``nan_safe``)
        suits arbitrary videos sampled at 3 fps.
        """
        key = name.lower().replace("-", "").replace("_", "")
        key = _ALIASES.get(key, key)
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[key]
        if overrides:
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"unknown GroundingConfig field(s) {unknown}; known: {sorted(known)}")
            base = replace(base, **overrides)  # type: ignore[arg-type]
        return base

    def replace(self, **changes: object) -> "GroundingConfig":
        """A copy with some fields changed (the dataclass is frozen)."""
        return replace(self, **changes)  # type: ignore[arg-type]


PRESETS: dict[str, GroundingConfig] = {
    "charades": GroundingConfig(stride=20, max_stride_factor=0.5),
    "activitynet": GroundingConfig(stride=40, max_stride_factor=1.0),
    "qvhighlights": GroundingConfig(stride=50, max_stride_factor=0.5),
    "default": GroundingConfig(stride=20, max_stride_factor=0.5, nan_safe=True),
}

_ALIASES = {"charadessta": "charades", "anet": "activitynet", "activitynetcaptions": "activitynet",
            "qvhighlight": "qvhighlights", "qvh": "qvhighlights"}
