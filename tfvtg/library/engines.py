"""Where videos are decoded and encoded: here ("local") or on Ray ("ray").

An engine runs ``task(encoder, path, **kwargs)`` for every path and yields
``(path, result)`` as results come in, with the exception's text in place of
the result when a path fails (one bad video never stops the batch). The
process that called it writes every result itself: on Ray the actors only
decode and encode, the driver alone touches the library's catalogue.

Ray (``pip install "tfvtg[ray]"``): ``RayEngine(address)`` connects to
``address``, else ``RAY_ADDRESS``, else a Ray already initialised in this
process, else starts a local one. It starts one actor per GPU of the cluster
(each holding one encoder on its GPU), or one per CPU when there is no GPU,
and keeps two videos in flight per actor so that decoding the next video
overlaps encoding the current one across actors.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._extras import require
from ..errors import InvalidInputError

__all__ = ["LocalEngine", "RayEngine", "make_engine", "encode_for_library", "encoder_spec", "build_encoder"]

Task = Callable[..., Any]


def encode_for_library(encoder: Any, path: str, *, fps: float, segment_frames: int) -> Any:
    """Decode and encode one video, in the library's stored form
    (:class:`tfvtg.library.library.Prepared`)."""
    from .library import prepare_features

    features = encoder.encode_video(path, fps=fps)
    return prepare_features(features, segment_frames)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class LocalEngine:
    """One video after another, in this process."""

    def run(self, encoder: Any, paths: Sequence[str], task: Task, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        for path in paths:
            try:
                result = task(encoder, path, **kwargs)
            except Exception as exc:  # reported per video; the batch goes on
                if type(exc).__name__ in ("ModelUnavailableError", "MissingExtraError"):
                    raise  # no video can succeed: stop
                yield path, _describe(exc)
                continue
            yield path, result

    def close(self) -> None:
        pass


def encoder_spec(encoder: Any) -> tuple[str, Any]:
    """A small picklable recipe for rebuilding ``encoder`` in a Ray actor:
    a BLIP-2 encoder travels as its checkpoint name and options (never its
    loaded weights); anything else is sent as it is (Ray pickles it)."""
    from ..encoders.blip2 import Blip2Encoder

    if isinstance(encoder, Blip2Encoder):
        return ("blip2", {"model": encoder.model_name, "dtype": getattr(encoder, "_dtype", None),
                          "batch_size": getattr(encoder, "_batch_size", None), "space": encoder.space})
    return ("object", encoder)


def build_encoder(spec: tuple[str, Any]) -> Any:
    kind, value = spec
    if kind == "blip2":
        from ..encoders.blip2 import Blip2Encoder

        return Blip2Encoder(**value)  # device: the actor's (its GPU when it has one)
    return value


class _EncoderActor:
    """Holds one encoder; runs tasks on it (one at a time)."""

    def __init__(self, spec: tuple[str, Any]):
        self.encoder = build_encoder(spec)

    def run(self, task: Task, path: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        try:
            return True, task(self.encoder, path, **kwargs)
        except Exception as exc:  # sent back as text: the driver reports it and goes on
            return False, _describe(exc)


class RayEngine:
    """Decode and encode on a Ray cluster; results stream back to the driver.

    Args:
        address: the cluster ("ray://host:10001", "auto", ...); default
            RAY_ADDRESS, else a Ray already initialised here, else a local one.
        num_actors: encoder actors (default: the cluster's GPUs, else its CPUs).
        in_flight: videos queued per actor.
    """

    def __init__(self, address: str | None = None, num_actors: int | None = None, in_flight: int = 2):
        self.ray = require("ray")
        self._started = False
        if not self.ray.is_initialized():
            target = address or os.environ.get("RAY_ADDRESS") or None
            if target is None:  # a local Ray for this run: no dashboard
                self.ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
            else:  # an existing cluster ("auto", "ray://head:10001", ...)
                self.ray.init(address=target, ignore_reinit_error=True)
            self._started = True
        elif address:
            pass  # already connected in this process: that cluster is used
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        if num_actors is not None and (isinstance(num_actors, bool) or not isinstance(num_actors, int)
                                       or num_actors < 1):
            raise InvalidInputError(f"num_actors must be a whole number >= 1, got {num_actors!r}")
        self.num_actors = num_actors or (gpus if gpus else cpus)
        self.gpus_per_actor = 1.0 if gpus and self.num_actors <= gpus else (gpus / self.num_actors if gpus else 0.0)
        self.in_flight = max(1, int(in_flight))

    def run(self, encoder: Any, paths: Sequence[str], task: Task, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        ray = self.ray
        if not paths:
            return
        actor_cls = ray.remote(_EncoderActor)
        n = min(self.num_actors, len(paths))
        cpus = 1  # the actor decodes its videos on one CPU (and encodes on its GPU when it has one)
        actors = [actor_cls.options(num_cpus=cpus, num_gpus=self.gpus_per_actor).remote(encoder_spec(encoder))
                  for _ in range(n)]
        try:
            queue = list(paths)[::-1]
            pending: dict[Any, tuple[str, Any]] = {}

            def submit(actor: Any) -> None:
                path = queue.pop()
                pending[actor.run.remote(task, path, kwargs)] = (path, actor)

            for actor in actors:
                for _ in range(self.in_flight):
                    if queue:
                        submit(actor)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                path, actor = pending.pop(ref)
                try:
                    _, value = ray.get(ref)  # (True, result) or (False, the error's text)
                except Exception as exc:  # the actor died (e.g. out of memory): report the video
                    value = _describe(exc)
                if queue:
                    submit(actor)
                yield path, value  # the result, or the error's text
        finally:
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception:  # already gone
                    pass

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_engine(engine: str | Any, address: str | None = None, num_actors: int | None = None) -> Any:
    """``"local"``, ``"ray"``, or an engine object (with ``run`` and ``close``)."""
    if engine == "local":
        return LocalEngine()
    if engine == "ray":
        return RayEngine(address, num_actors)
    if callable(getattr(engine, "run", None)):
        return engine
    raise InvalidInputError(f"engine must be 'local' or 'ray', got {engine!r}")
