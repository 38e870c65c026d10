"""The pure scoring pipeline: features -> similarity -> proposals ->
combination -> moments, with the configuration and the :class:`Grounder`
that runs it. numpy and numba only: nothing here reads the environment, the
disk or the network (``VideoFeatures.save/load`` and ``GroundingResult.plot``
are provided from outside, see :mod:`tfvtg.core.hooks`).

Names load on first use, so importing :mod:`tfvtg.core.errors` stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    "GroundingConfig": "config", "PRESETS": "config", "VideoFeatures": "features", "Decomposition": "decomposition",
    "Grounder": "grounder", "proposal_rows": "grounder", "GroundingResult": "moments", "Moment": "moments",
    "Proposals": "proposals", "propose": "proposals", "similarity_curves": "similarity",
    "vote": "combination", "interleave": "combination", "combine_sub_events": "combination",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tfvtg.core' has no attribute {name!r}")
    return getattr(import_module(f"tfvtg.core.{home}"), name)
