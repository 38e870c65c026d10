"""Grounding configuration: one frozen dataclass with named presets.

Every length here is in *frames* of the feature sequence (3 fps for the
published features), not seconds.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np

from .errors import ConfigError

__all__ = ["GroundingConfig", "PRESETS", "DEFAULT_MASK_THRESHOLD"]

# TFVTG's mask for BLIP-2's ITC similarities: the value when neither the
# config nor the text encoder names one
DEFAULT_MASK_THRESHOLD = 0.2


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
            None (every preset): the encoder's own constant (BLIP-2: 0.2,
            TFVTG's value), since it depends on the model's similarity scale.
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
        integrated_candidates: integrated sub-event spans that enter the final
            vote ("reference" integration; "paper" keeps its best one).
        nan_safe: the numeric rule only: give a window with no foreground
            frame outside it a finite static score (outside mean 0) instead
            of the reference's NaN, which the reference ranks first.
        no_proposal: the answer when no frame is above the mask threshold:
            "reference" (three empty spans at 0 s, score 1, as the published
            code) or "whole-video" (the whole video, score 0).
        scores: the moments' scores: "reference" is the published
            confidence (score / best: NaN under the reference's NaN rule,
            and rising with rank when the best score is negative);
            "normalised" is finite, 1 for the best and non-increasing with
            rank (equal to the reference's when the best score is positive;
            with a decomposition, the IoU vote relative to the best).
        integration: how one candidate per sub-event is integrated.
            "reference" (the published code): a combination spans the union
            of its sub-events for every relation and scores the product of
            their confidences; the combinations are re-ranked by the IoU
            vote and the best ``integrated_candidates`` enter the final vote.
            "paper" (the paper's rule): a combination scores the *sum* of its
            sub-events' confidences and spans their intersection when they
            are simultaneous, their union when sequential; the best
            combination (highest sum, no vote) enters the final vote with
            the whole query's candidates, as in the code.
        scoring: "reference" scores windows whose length is a stride multiple
            by their static score (the published code); "paper" scores every
            window [k, j) from the shortest to the longest length by its
            static score plus the dynamic score of its rising transition;
            "tag" is TAG's scorer (Lee et al., BMVC 2025; :mod:`tfvtg.core.tag`):
            majority-vote mask, Box-Cox alignment, time-aware smoothing and
            k-means scenes as proposal boundaries, then the IoU vote. With
            "tag" only ``stride``, ``mask_threshold``, ``gaussian_sigma``,
            ``dynamic_threshold``, ``vote_gamma``, ``scores`` and the fields
            below apply; a decomposition contributes its paraphrases of the
            whole query (``query_json[0]``), whose proposals join the vote,
            and its sub-events are not used (as in TAG).
        alignment_gamma: TAG's ``gamma``: the smallest range, in similarity
            units, the aligned foreground scores span (tag only).
        cand_num: best proposals of each sentence or paraphrase that enter
            the vote (tag only).
        kmeans_k: clusters for the scene k-means, at most the number of
            foreground frames and at least 2 (tag only).
        window_radius: TAG's name for the temporal-coherence window of the
            k-means, in frames: a frame's cost for a cluster is its distance
            averaged over the frames within ``window_radius // 2`` of it
            (7: three either side) (tag only).
        prior: the longest proposal, as a fraction of T, counted in
            foreground frames (tag only).
        temporal_window_size: frames (odd) averaged by the time-aware
            feature smoothing (tag only).
        tc_kmeans: True: TAG's temporal-coherence k-means (its ``--tckmeans``,
            used for its published tables); False: plain k-means (tag only).
        kmeans_seed: seed of the k-means++ draws, which reproduce torch's CPU
            generator after ``torch.manual_seed(kmeans_seed)`` (TAG: 60)
            (tag only).
    """

    stride: int = 20
    max_stride_factor: float = 0.5
    mask_threshold: float | None = None
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
    no_proposal: Literal["reference", "whole-video"] = "reference"
    scores: Literal["reference", "normalised"] = "reference"
    integration: Literal["reference", "paper"] = "reference"
    scoring: Literal["reference", "paper", "tag"] = "reference"
    alignment_gamma: float = 0.2
    cand_num: int = 12
    kmeans_k: int = 9
    window_radius: int = 7
    prior: float = 0.5
    temporal_window_size: int = 21
    tc_kmeans: bool = True
    kmeans_seed: int = 60

    def __post_init__(self) -> None:
        for name in ("stride", "top_k", "description_candidates", "sub_event_top_k", "query_candidates"):
            self._set(name, _whole(name, getattr(self, name), minimum=1, unit=" frames" if name == "stride" else ""))
        self._set("integrated_candidates", _whole("integrated_candidates", self.integrated_candidates, minimum=0))
        self._set("max_stride_factor", _real("max_stride_factor", self.max_stride_factor, 0.0, 1.0, low_open=True,
                                             what="the longest window as a fraction of the video"))
        if self.mask_threshold is not None:
            self._set("mask_threshold", _real("mask_threshold", self.mask_threshold, -1.0, 1.0,
                                              what="a cosine similarity (None: the encoder's own)"))
        self._set("nms_threshold", _real("nms_threshold", self.nms_threshold, 0.0, 1.0, what="a temporal IoU"))
        self._set("dynamic_threshold", _real("dynamic_threshold", self.dynamic_threshold, -1.0, 1.0,
                                             what="a change of similarity per frame"))
        self._set("gaussian_sigma", _real("gaussian_sigma", self.gaussian_sigma, 0.0, 1e6, low_open=True,
                                          what="in frames"))
        self._set("vote_gamma", _real("vote_gamma", self.vote_gamma, 0.0, 100.0, what="an exponent on IoU"))
        for name in ("nan_safe", "tc_kmeans"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
            self._set(name, bool(getattr(self, name)))
        self._set("alignment_gamma", _real("alignment_gamma", self.alignment_gamma, 0.0, 2.0, low_open=True,
                                           what="TAG's smallest range of the aligned similarity scores"))
        for name in ("cand_num", "kmeans_k", "window_radius"):
            unit = " frames" if name == "window_radius" else ""
            self._set(name, _whole(name, getattr(self, name), minimum=1, unit=unit))
        self._set("temporal_window_size", _whole("temporal_window_size", self.temporal_window_size, minimum=1,
                                                 unit=" frames"))
        if self.temporal_window_size % 2 == 0:
            raise ConfigError(f"temporal_window_size must be an odd number of frames (centred on each frame), "
                              f"got {self.temporal_window_size}")
        self._set("prior", _real("prior", self.prior, 0.0, 1.0, low_open=True,
                                 what="the longest TAG proposal as a fraction of the video"))
        self._set("kmeans_seed", _whole("kmeans_seed", self.kmeans_seed, minimum=0))
        if self.kmeans_seed >= 2 ** 32:
            raise ConfigError(f"kmeans_seed must be below 2**32, got {self.kmeans_seed}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # normalise a field of the frozen instance

    @classmethod
    def preset(cls, name: str, **overrides: object) -> GroundingConfig:
        """A named preset, optionally with some fields replaced.

        Presets: "charades" (stride 20, longest window 0.5 T), "activitynet"
        (stride 40, 1.0 T), "qvhighlights" (stride 50, 0.5 T) reproduce the
        published code exactly; "default" (stride 20, 0.5 T, ``nan_safe``)
        suits arbitrary videos sampled at 3 fps; "tag-charades" and
        "tag-activitynet" are TAG's scorer with its published
        hyper-parameters (``scoring="tag"``).
        """
        key = name.lower().replace("-", "").replace("_", "")
        key = _ALIASES.get(key, key)
        if key not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[key]
        if overrides:
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ConfigError(f"unknown GroundingConfig field(s) {unknown}; known: {sorted(known)}")
            base = replace(base, **overrides)  # type: ignore[arg-type]
        return base

    def replace(self, **changes: object) -> GroundingConfig:
        """A copy with some fields changed (the dataclass is frozen)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_CHOICES: dict[str, tuple[str, ...]] = {
    "no_proposal": ("reference", "whole-video"),
    "scores": ("reference", "normalised"),
    "integration": ("reference", "paper"),
    "scoring": ("reference", "paper", "tag"),
}


def _whole(name: str, value: object, minimum: int, unit: str = "") -> int:
    # numpy integers are whole numbers too; bools are not
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number{unit} >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{name} must be >= {minimum}{unit}, got {value!r}")
    return int(value)


def _real(name: str, value: object, low: float, high: float, *, low_open: bool = False, what: str = "") -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number ({what}), got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x > high or x < low or (low_open and x == low):
        bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise ConfigError(f"{name} must be a finite number in {bound} ({what}), got {value!r}")
    return x


PRESETS: dict[str, GroundingConfig] = {
    "charades": GroundingConfig(stride=20, max_stride_factor=0.5),
    "activitynet": GroundingConfig(stride=40, max_stride_factor=1.0),
    "qvhighlights": GroundingConfig(stride=50, max_stride_factor=0.5),
    "default": GroundingConfig(stride=20, max_stride_factor=0.5, nan_safe=True, no_proposal="whole-video",
                               scores="normalised"),
    # TAG's data_configs.py values, temporal-coherence k-means on (its tables)
    "tag-charades": GroundingConfig(scoring="tag", stride=20, max_stride_factor=0.5, alignment_gamma=0.2,
                                    cand_num=12, kmeans_k=9, window_radius=7, prior=0.5,
                                    temporal_window_size=21, tc_kmeans=True),
    "tag-activitynet": GroundingConfig(scoring="tag", stride=40, max_stride_factor=1.0, alignment_gamma=0.8,
                                       cand_num=17, kmeans_k=9, window_radius=7, prior=1.0,
                                       temporal_window_size=21, tc_kmeans=True),
}

_ALIASES = {"charadessta": "charades", "anet": "activitynet", "activitynetcaptions": "activitynet",
            "qvhighlight": "qvhighlights", "qvh": "qvhighlights",
            "tagcharades": "tag-charades", "tagcharadessta": "tag-charades",
            "tagactivitynet": "tag-activitynet", "taganet": "tag-activitynet",
            "tagactivitynetcaptions": "tag-activitynet"}
