"""Evaluation methods for ``tfvtg eval --method numpro|ensemble``.

tfvtg finds them through the entry-point group ``tfvtg.methods`` (names
"numpro" and "ensemble"); each entry point is a factory
``factory(**options) -> method`` whose method has ``name`` and
``ground_video(video, query, duration) -> [(start, end, score), ...]``
(seconds, best first) and, for NumPro, ``saliency(video, query, duration,
clip=2.0) -> [score per clip]``.

A query whose model call fails, times out or answers nothing usable gives
no rows (NumPro) or the scorer's ranking (ensemble); ``method.last`` keeps
the details of the latest query (its error, raw answer and settings). A
model that cannot be used at all raises
:class:`numpro.MLLMConfigurationError` and the run stops.
"""
from __future__ import annotations

import os
from typing import Any

from tfvtg.errors import InvalidInputError, MissingFileError

from .grounding import NumProSettings, _run
from .mllm import backend_class, load_mllm
from .source import VideoFile

__all__ = ["NumProMethod", "EnsembleMethod", "numpro_method", "ensemble_method"]

_MODEL_OPTIONS = ("api_key", "timeout", "max_retries", "device", "dtype", "max_new_tokens", "max_tokens",
                  "jpeg_quality", "max_side", "min_pixels", "text_timestamps")


def _model(mllm: Any, base_url: str | None, options: dict[str, Any]) -> Any:
    """The MLLM; model options the chosen backend does not take are dropped
    (an evaluation passes the same options to every backend)."""
    import inspect

    if mllm is None:
        raise InvalidInputError("the method needs an MLLM: pass mllm=<model name or directory> "
                                "(with base_url=<server URL> for a served model) or an MLLM object")
    given = {k: options.pop(k) for k in _MODEL_OPTIONS if k in options}
    if callable(getattr(mllm, "answer", None)):
        return mllm
    accepted = set(inspect.signature(backend_class(mllm, base_url)).parameters)
    if options.get("max_pixels"):  # the model's own image limit too, so grids and frames agree with it
        given["max_pixels"] = options["max_pixels"]
    return load_mllm(mllm, base_url=base_url, **{k: v for k, v in given.items() if k in accepted and v is not None})


class _CachedVideo:
    """The video file last asked about, decoded once for all its queries."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._source: VideoFile | None = None

    def get(self, video: str | os.PathLike[str]) -> VideoFile:
        path = os.fspath(video)
        if self._source is None or self._path != path:
            if not os.path.exists(path):
                raise MissingFileError(f"video not found: {path}")
            self._path, self._source = path, VideoFile(path, cache=True)
        return self._source


def _rows(moments: Any, duration: float | None) -> list[tuple[float, float, float]]:
    rows = []
    for m in moments:
        end = min(m.end, duration) if duration else m.end
        rows.append((float(min(m.start, end)), float(end), float(m.score)))
    return rows


class NumProMethod:
    """NumPro (optionally grid layout and coarse-to-fine) as an evaluation method."""

    name = "numpro"

    def __init__(self, mllm: Any = None, base_url: str | None = None, **options: Any):
        self.mllm = _model(mllm, base_url, options)
        self.settings = NumProSettings.make(**options)
        self.last: Any = None
        self._video = _CachedVideo()

    def ground_video(self, video: str, query: str, duration: float | None = None) -> list[tuple[float, float, float]]:
        res = _run(video, query, self.mllm, self.settings, catch=True, source=self._video.get(video))
        res.frames = None
        if res.coarse is not None:
            res.coarse.frames = None
        self.last = res
        return [] if res.moment is None else _rows([res.moment], duration)

    def saliency(self, video: str, query: str, duration: float | None = None, clip: float = 2.0) -> list[float]:
        from .saliency import highlights

        display = {k: getattr(self.settings, k) for k in ("layout", "rows", "cols", "grid_stride", "max_pixels",
                                                          "min_tile", "tile_size", "font_size", "color", "position")}
        res = highlights(self._video.get(video), query, self.mllm, clip=clip, **display)
        self.last = res
        scores = [float(x) for x in res.scores]
        if duration:  # as many clips as the annotation's duration holds
            n = max(1, -(-int(round(duration * 1000)) // int(round(clip * 1000))))
            scores = (scores + [scores[-1] if scores else 0.0] * n)[:n]
        return scores


class EnsembleMethod:
    """A scorer's top proposals (TFVTG through :func:`tfvtg.ground`),
    chosen among by the MLLM (:func:`numpro.rerank`).

    Options: ``config`` (a tfvtg preset name or GroundingConfig, default
    "default"), ``encoder`` (the BLIP-2 encoder or its directory; default
    tfvtg's), ``feature_fps`` (3), ``features`` (a folder of extracted
    ``<video id>.npy`` features to use instead of extracting), ``use_llm``
    (query decomposition by the configured LLM, default False), and the
    :func:`numpro.rerank` options ``top_k``, ``frames_per_candidate``,
    ``layout``, ``sample_fps``, ``max_pixels``.
    """

    name = "ensemble"

    def __init__(self, mllm: Any = None, base_url: str | None = None, config: Any = None, encoder: Any = None,
                 feature_fps: float = 3.0, features: str | os.PathLike[str] | None = None, use_llm: bool = False,
                 **options: Any):
        self.mllm = _model(mllm, base_url, options)
        rerank_options = {"top_k", "frames_per_candidate", "layout", "sample_fps", "max_pixels", "font_size",
                          "color", "position"}
        unknown = sorted(set(options) - rerank_options)
        if unknown:
            raise InvalidInputError(f"unknown ensemble option(s) {', '.join(unknown)}")
        self.options = options
        self.config = config
        self.feature_fps = float(feature_fps)
        self.features = None if features is None else os.fspath(features)
        self.use_llm = bool(use_llm)
        if isinstance(encoder, (str, os.PathLike)):
            from tfvtg import Blip2Encoder

            encoder = Blip2Encoder(os.fspath(encoder))
        self.encoder = encoder
        self.last: Any = None
        self._video = _CachedVideo()

    def _score(self, video: str, query: str) -> Any:
        from tfvtg import VideoFeatures
        from tfvtg import ground as tfvtg_ground

        target: Any = video
        if self.features is not None:
            stem = os.path.splitext(os.path.basename(video))[0]
            path = os.path.join(self.features, stem + ".npy")
            if not os.path.exists(path):
                raise MissingFileError(f"no features for {stem} in {self.features} (expected {path})")
            target = VideoFeatures.load(path)
        return tfvtg_ground(target, query, text_encoder=self.encoder, config=self.config, fps=self.feature_fps,
                            use_llm=self.use_llm)

    def ground_video(self, video: str, query: str, duration: float | None = None) -> list[tuple[float, float, float]]:
        from .reranking import rerank

        source = self._video.get(video)
        result = self._score(video, query)
        out = rerank(result, source, self.mllm, query=query, **self.options)
        self.last = out
        return _rows(out.result.moments, duration)


def numpro_method(**options: Any) -> NumProMethod:
    """Entry point ``tfvtg.methods:numpro``: options ``mllm`` (model name,
    directory or MLLM object), ``base_url``, model options (``api_key``,
    ``timeout``, ``device``, ...) and :class:`numpro.NumProSettings` fields."""
    return NumProMethod(**options)


def ensemble_method(**options: Any) -> EnsembleMethod:
    """Entry point ``tfvtg.methods:ensemble`` (see :class:`EnsembleMethod`)."""
    return EnsembleMethod(**options)
