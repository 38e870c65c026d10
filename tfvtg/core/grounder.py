"""The grounding pipeline: features + sentence -> ranked moments in seconds."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ._warnings import warn_user
from .combination import combine_sub_events, interleave, vote
from .config import DEFAULT_MASK_THRESHOLD, GroundingConfig
from .decomposition import Decomposition
from .errors import DecompositionError, EncoderMismatchError, InvalidInputError, InvalidTypeError
from .features import VideoFeatures
from .moments import GroundingResult, Moment
from .proposals import Proposals, proposal_table
from .similarity import similarity_curves
from .tag import best_token_curves, frame_vectors, tag_propose, tag_rows

__all__ = ["Grounder", "TextEncoder", "Decomposer", "proposal_rows"]


class TextEncoder(Protocol):
    """Anything that embeds sentences into the frame features' space:
    ``encode_text(list[str]) -> (n, D)``. Optional attributes: ``space``
    (embedding-space id, checked against the features' ``encoder``) and
    ``mask_threshold`` (used when the config leaves it None) and
    ``frame_mask_threshold`` (TAG's threshold for one vector per frame, when
    it differs from ``mask_threshold``)."""

    def encode_text(self, texts: list[str]) -> Any:  # (n, D)
        ...


class Decomposer(Protocol):
    """Anything that splits a query into sub-events (e.g. an LLM)."""

    def decompose(self, query: str) -> Decomposition:
        ...


def _resolve_config(config: GroundingConfig | str | None) -> GroundingConfig:
    if config is None:
        return GroundingConfig.preset("default")
    if isinstance(config, str):
        return GroundingConfig.preset(config)
    if not isinstance(config, GroundingConfig):
        raise InvalidTypeError(f"config must be a GroundingConfig or a preset name, got {type(config).__name__}")
    return config


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"the query must be a non-empty sentence, got {query!r}")
    return query


class Grounder:
    """Grounds sentences in videos whose frame features are already extracted.

    Args:
        text_encoder: object with ``encode_text(list[str]) -> (n, D)``, in the
            same space as the frame features (e.g. :class:`tfvtg.Blip2Encoder`).
        config: a :class:`GroundingConfig` or a preset name ("charades",
            "activitynet", "qvhighlights", "default", and TAG's scorer:
            "tag-charades", "tag-activitynet"); default "default".
        decomposer: optional object with ``decompose(query) -> Decomposition``
            (e.g. :class:`tfvtg.OpenAIDecomposer`); used when ``ground`` gets
            no decomposition.
    """

    def __init__(self, text_encoder: TextEncoder, config: GroundingConfig | str | None = None,
                 decomposer: Decomposer | None = None):
        if not callable(getattr(text_encoder, "encode_text", None)):
            raise InvalidTypeError("text_encoder needs an encode_text(list[str]) -> (n, D) method")
        self.text_encoder = text_encoder
        config = _resolve_config(config)
        self._threshold_from_encoder = config.mask_threshold is None
        if config.mask_threshold is None:
            # a similarity-scale constant: the encoder's, not the preset's
            threshold = getattr(text_encoder, "mask_threshold", DEFAULT_MASK_THRESHOLD)
            config = config.replace(mask_threshold=float(threshold))
        self.config = config
        self.decomposer = decomposer

    # -- public -----------------------------------------------------------
    def ground(self, features: VideoFeatures, query: str,
               decomposition: Decomposition | Mapping[str, Any] | None = None) -> GroundingResult:
        """Find the moment ``query`` describes.

        Args:
            features: the video's frame features.
            query: the sentence to ground.
            decomposition: a :class:`Decomposition` or a dict in TFVTG's
                published LLM-output format; when None and a decomposer was
                given, the query is decomposed first; otherwise VLM only.

        Returns:
            A :class:`GroundingResult` with moments in seconds, best first.
        """
        self._check_features(features)
        query = _check_query(query)
        if decomposition is None and self.decomposer is not None:
            decomposition = self._decompose(query)
            if decomposition.fallback:
                # the LLM gave nothing usable: the query alone, marked as such
                if self.config.scoring == "tag":
                    result = self._ground_tag(features, [query], [None])[0]
                else:
                    result = self._ground_vlm(features, [query])[0]
                result.decomposition = decomposition
                return result
        if self.config.scoring == "tag":
            return self._ground_tag(features, [query], [decomposition])[0]
        if decomposition is None:
            return self._ground_vlm(features, [query])[0]
        if not isinstance(decomposition, Decomposition):
            decomposition = Decomposition.from_tfvtg(decomposition)
        return self._ground_decomposed(features, query, decomposition)

    def ground_many(self, features: VideoFeatures, queries: Sequence[str],
                    decompositions: Sequence[Decomposition | Mapping[str, Any] | None] | None = None
                    ) -> list[GroundingResult]:
        """Ground several sentences in one video.

        Text is encoded in one batch and the frame tokens are reused, so this
        is much faster than calling :meth:`ground` in a loop.
        """
        self._check_features(features)
        if isinstance(queries, str):
            raise InvalidTypeError(
                "ground_many takes a list of sentences; for one sentence use ground(features, query)")
        queries = [_check_query(q) for q in queries]
        if not queries:
            raise InvalidInputError("ground_many got no queries; pass at least one sentence")
        if decompositions is None and self.decomposer is None:
            if self.config.scoring == "tag":
                return self._ground_tag(features, queries, [None] * len(queries))
            return self._ground_vlm(features, queries)
        if decompositions is None:
            decompositions = [None] * len(queries)
        if len(decompositions) != len(queries):
            raise InvalidInputError(f"got {len(decompositions)} decompositions for {len(queries)} queries")
        return [self.ground(features, q, d) for q, d in zip(queries, decompositions)]

    # -- internals --------------------------------------------------------
    def _decompose(self, query: str) -> Decomposition:
        assert self.decomposer is not None
        try:
            return self.decomposer.decompose(query)
        except DecompositionError as exc:
            # an unreachable or refusing LLM degrades like a malformed answer:
            # the query stands alone, and the result says so
            warn_user(f"the LLM could not decompose the query ({exc}); grounding with the query alone")
            return Decomposition.single(query, fallback=True)

    def _check_features(self, features: Any) -> None:
        if not isinstance(features, VideoFeatures):
            raise InvalidTypeError(
                f"features must be a VideoFeatures, got {type(features).__name__}; "
                "wrap an array with VideoFeatures(array, duration=seconds)")
        space = getattr(self.text_encoder, "space", None)
        if features.encoder and isinstance(space, str) and space != features.encoder:
            raise EncoderMismatchError(
                f"the features were made by encoder {features.encoder!r} but the text encoder is {space!r}: "
                "similarities across embedding spaces mean nothing; use the encoder that made the features")

    def _curves(self, features: VideoFeatures, texts: list[str]) -> np.ndarray:
        embeddings = self.text_encoder.encode_text(list(texts))
        curves = similarity_curves(features, embeddings)
        if curves.shape[0] != len(texts):
            raise InvalidInputError(f"the text encoder returned {curves.shape[0]} embeddings for {len(texts)} texts")
        return curves

    def _ground_vlm(self, features: VideoFeatures, queries: list[str]) -> list[GroundingResult]:
        curves = self._curves(features, queries)
        results = []
        for query, curve in zip(queries, curves):
            rows = _curve_rows(curve, features, self.config)
            results.append(GroundingResult(query=query, moments=_moments(rows), duration=features.duration,
                                           curve=curve, config=self.config))
        return results

    def _ground_decomposed(self, features: VideoFeatures, query: str, dec: Decomposition) -> GroundingResult:
        cfg = self.config
        # every description is localised on its own, as the reference does
        query_texts = [query, *dec.query_descriptions]
        event_texts = [list(ev) for ev in dec.sub_events]
        all_texts = query_texts + [t for ev in event_texts for t in ev]
        unique = list(dict.fromkeys(all_texts))
        curves = self._curves(features, unique)
        rows_of = {text: _curve_rows(curve, features, cfg)
                   for text, curve in zip(unique, curves)}

        depth = cfg.description_candidates
        sub_candidates = []
        sub_curves = []
        for texts in event_texts:
            merged = interleave([rows_of[t] for t in texts], depth)
            sub_candidates.append(vote(merged, cfg.vote_gamma)[: cfg.sub_event_top_k])
            sub_curves.append(curves[[unique.index(t) for t in texts]].mean(axis=0))
        # the paper keeps its best combination; the code votes and keeps integrated_candidates
        keep = min(1, cfg.integrated_candidates) if cfg.integration == "paper" else cfg.integrated_candidates
        integrated = combine_sub_events(sub_candidates, dec.relationship, integration=cfg.integration,
                                        gamma=cfg.vote_gamma, keep=keep)
        query_rows = interleave([rows_of[t] for t in query_texts], depth)[: cfg.query_candidates]
        final, support = vote(np.concatenate([query_rows, integrated]), cfg.vote_gamma, return_scores=True)
        if cfg.scores == "normalised":
            final = final.copy()
            best = support[0] if len(support) else 0.0
            final[:, 2] = support / best if best > 0 else 0.0
        return GroundingResult(
            query=query,
            moments=_moments(final),
            duration=features.duration,
            curve=curves[0],
            decomposition=dec,
            sub_event_moments=[_moments(c) for c in sub_candidates],
            sub_event_curves=sub_curves,
            config=cfg,
        )

    # -- TAG scoring (config.scoring == "tag") ------------------------------
    def _tag_threshold(self, features: VideoFeatures) -> float:
        """The mask threshold TAG applies to these features.

        One vector per frame (CLIP-style, Q = 1) takes TAG's frame rule: the
        text encoder's ``frame_mask_threshold`` when it has one, unless the
        config names a threshold; every other case the config's (resolved)
        ``mask_threshold``. Never a preset value: it is a property of the
        model's similarity scale."""
        threshold = self.config.mask_threshold
        if features.shape[1] == 1 and self._threshold_from_encoder:
            frame = getattr(self.text_encoder, "frame_mask_threshold", None)
            if frame is not None:
                threshold = frame
        return float(DEFAULT_MASK_THRESHOLD if threshold is None else threshold)

    def _ground_tag(self, features: VideoFeatures, queries: list[str],
                    decompositions: Sequence[Decomposition | Mapping[str, Any] | None]) -> list[GroundingResult]:
        # TAG grounds the sentence and, with an LLM answer, each paraphrase of
        # the whole query (query_json[0]) on its own, and votes all their
        # cand_num best proposals together; the sub-events are not used
        cfg = self.config
        decs = [d if d is None or isinstance(d, Decomposition) else Decomposition.from_tfvtg(d)
                for d in decompositions]
        texts_of = [[q, *(d.query_descriptions if d is not None and not d.fallback else ())]
                    for q, d in zip(queries, decs)]
        unique = list(dict.fromkeys(t for texts in texts_of for t in texts))
        curves, best = best_token_curves(features, self.text_encoder.encode_text(unique))
        if curves.shape[0] != len(unique):
            raise InvalidInputError(f"the text encoder returned {curves.shape[0]} embeddings for {len(unique)} texts")
        threshold = self._tag_threshold(features)
        rows_of = {}
        for text, curve, token in zip(unique, curves, best):
            proposals = tag_propose(curve, frame_vectors(features, token), cfg, mask_threshold=threshold)
            rows_of[text] = tag_rows(proposals, features, cfg.cand_num)
        results = []
        for query, dec, texts in zip(queries, decs, texts_of):
            final, support = vote(np.concatenate([rows_of[t] for t in texts]), cfg.vote_gamma, return_scores=True)
            if cfg.scores == "normalised":
                final = final.copy()
                top = support[0] if len(support) else 0.0
                final[:, 2] = support / top if top > 0 else 0.0
            results.append(GroundingResult(query=query, moments=_moments(final), duration=features.duration,
                                           curve=curves[unique.index(query)], decomposition=dec, config=cfg))
        return results


def proposal_rows(proposals: Proposals, features: VideoFeatures, config: GroundingConfig) -> np.ndarray:
    """(k, 3) ``[start, end, score]`` rows in seconds for one curve's proposals.

    With no proposal at all (no frame above the mask threshold) the answer
    is ``config.no_proposal``'s: "reference" gives three empty spans at 0 s
    with score 1 (the published code), "whole-video" the whole video with
    score 0. Scores follow ``config.scores`` (see :class:`GroundingConfig`).
    """
    if len(proposals) == 0:
        return _no_proposal_rows(features, config)
    rows = np.empty((len(proposals), 3))
    rows[:, 0] = proposals.start
    rows[:, 1] = proposals.end
    rows[:, :2] = features.frames_to_seconds(rows[:, :2])  # both columns in one conversion
    rows[:, 2] = proposals.confidence() if config.scores == "reference" else proposals.normalised_scores()
    return rows


def _no_proposal_rows(features: VideoFeatures, config: GroundingConfig) -> np.ndarray:
    if config.no_proposal == "whole-video":
        return np.array([[0.0, features.duration, 0.0]])
    return np.array([[0.0, 0.0, 1.0]] * 3)


def _curve_rows(curve: np.ndarray, features: VideoFeatures, config: GroundingConfig) -> np.ndarray:
    # proposal_rows(propose(curve, config), features, config) in one compiled call
    rows = proposal_table(curve, config, features.duration)
    return rows if len(rows) else _no_proposal_rows(features, config)


def _moments(rows: np.ndarray) -> list[Moment]:
    return list(map(Moment._make, rows.tolist()))
