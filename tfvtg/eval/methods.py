"""Grounding methods an evaluation can run.

* "tfvtg" (default): :class:`tfvtg.Grounder` with the run's config, on
  frame features (``features=`` or encoded from ``videos=``).
* "tag": the Grounder with the preset ``tag-<dataset>`` (e.g.
  "tag-charades"), looked up when the method is chosen.
* any other name: a plug-in found in the entry-point group
  ``tfvtg.methods``. The entry point is a factory, ``factory(**options) ->
  method``; the method works on video files (``videos=`` is required) and
  implements :class:`VideoMethod`. A method object can also be passed to
  ``evaluate(method=obj)`` directly.

A package registers a method in its ``pyproject.toml``::

    [project.entry-points."tfvtg.methods"]
    numpro = "numpro.methods:make_numpro"
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from tfvtg.errors import ConfigError, InvalidInputError, TfvtgError

__all__ = ["VideoMethod", "MethodError", "ENTRY_POINT_GROUP", "BUILTIN_METHODS", "method_names", "find_method", "load_method",
           "check_method", "tag_preset"]

ENTRY_POINT_GROUP = "tfvtg.methods"
#: methods that run tfvtg's Grounder on frame features
BUILTIN_METHODS = ("tfvtg", "tag")


class MethodError(InvalidInputError):
    """A grounding method cannot be found, created or used."""


@runtime_checkable
class VideoMethod(Protocol):
    """A grounding method that works on video files (e.g. a video MLLM).

    Attributes:
        name: what the method is (recorded with the results).

    ``saliency`` is optional: per-clip scores for QVHighlights' highlight
    metrics (``clip`` seconds per clip, from the video's start).
    """

    name: str

    def ground_video(self, video: str, query: str, duration: float) -> Sequence[Sequence[float]]:
        """Rows [start, end, score] in seconds, best first."""
        ...


def _entry_points() -> dict[str, Any]:
    # looked up through the module each time, so that a test (or a freshly
    # installed plug-in) is seen
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """"tfvtg", "tag" and every installed plug-in's name."""
    return list(BUILTIN_METHODS) + sorted(set(_entry_points()) - set(BUILTIN_METHODS))


def find_method(name: str) -> Any:
    """The entry point of plug-in ``name``; MethodError listing the choices
    when there is none."""
    eps = _entry_points()
    if name not in eps:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(method_names())} "
                          f"(plug-ins register in the entry-point group {ENTRY_POINT_GROUP!r})")
    return eps[name]


def load_method(name: str, **options: Any) -> Any:
    """Create the plug-in method ``name`` with ``factory(**options)``.

    Raises MethodError for an unknown name, a plug-in that cannot be
    imported, a factory that fails (a :class:`~tfvtg.TfvtgError` it raises,
    such as a missing extra, passes through) or an object that is not a
    :class:`VideoMethod`.
    """
    ep = find_method(name)
    try:
        factory = ep.load()
    except Exception as exc:
        raise MethodError(f"method {name!r} ({getattr(ep, 'value', '?')}) cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from exc
    try:
        method = factory(**options)
    except TfvtgError:
        raise
    except TypeError as exc:
        raise MethodError(f"method {name!r} does not take the options {sorted(options)}: {exc}") from exc
    except Exception as exc:
        raise MethodError(f"method {name!r} could not be created: {type(exc).__name__}: {exc}") from exc
    return check_method(method, name)


def check_method(method: Any, label: str | None = None) -> Any:
    """``method`` when it implements :class:`VideoMethod`, else MethodError."""
    if not callable(getattr(method, "ground_video", None)):
        what = label or type(method).__name__
        raise MethodError(f"method {what!r} has no ground_video(video, query, duration) method; "
                          "see tfvtg.eval.methods.VideoMethod")
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise MethodError(f"method {label or type(method).__name__!r} needs a non-empty 'name' string")
    return method


def tag_preset(dataset: str) -> Any:
    """The grounding config of the "tag" method on ``dataset`` (the preset
    ``tag-<dataset>``); MethodError when this tfvtg has no such preset."""
    from tfvtg.core.config import GroundingConfig

    name = f"tag-{dataset}"
    try:
        return GroundingConfig.preset(name)
    except ConfigError as exc:
        raise MethodError(f"method 'tag' needs the grounding preset {name!r}, which this tfvtg does not have "
                          f"({exc})") from None
