"""The one table of benchmark datasets: name, aliases, reader, default
preset, metrics and named splits.

``evaluate`` and ``tfvtg eval --dataset`` look every dataset name up here.
A name is matched without regard to case, ``-``, ``_`` or spaces, so
"Charades-STA", "charades_sta" and "charadessta" are one name. A split is
named after its dataset: "charades-ood-1" is Charades-STA with 10 s of noise
features before every video.

The out-of-distribution splits are those of the official TFVTG code
(``data_configs.py`` of github.com/minghangz/TFVTG, the settings behind the
paper's Charades-STA and ActivityNet OOD tables): Charades-STA OOD-1 pads
10 s and OOD-2 15 s; ActivityNet Captions OOD-1 pads 30 s and OOD-2 60 s.
(The Charades-CD "test-ood" and Charades-CG "novel-composition" /
"novel-word" splits are other annotation files, evaluated as "charades".)

Add a dataset with :func:`register_dataset`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tfvtg.errors import InvalidInputError, MissingFileError

from .datasets import QueryList, load_charades_sta, load_qvhighlights, load_tfvtg_json

__all__ = ["Split", "DatasetSpec", "DatasetChoice", "register_dataset", "resolve_dataset", "list_datasets",
           "dataset_names", "load_dataset", "DATASETS"]


@dataclass(frozen=True)
class Split:
    """A named variant of a dataset's evaluation.

    Attributes:
        name: e.g. "ood-1" (the dataset's name goes before it: "charades-ood-1").
        pad_sec: seconds of standard-normal noise features before every video.
        description: one line for listings.
    """

    name: str
    pad_sec: float = 0.0
    description: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark dataset.

    Attributes:
        name: the canonical name ("charades").
        loader: ``loader(path, *, strict=False, durations=None, features=None)
            -> QueryList`` reading its annotation file.
        default_preset: the grounding preset its published numbers use.
        aliases: other names it answers to.
        splits: named splits ("ood-1", ...).
        metrics: "grounding" (R1/R5 at IoU 0.3/0.5/0.7, mIoU) or
            "qvhighlights" (those plus moment_detr's MR and HL metrics).
        description: one line for listings.
    """

    name: str
    loader: Callable[..., QueryList]
    default_preset: str
    aliases: tuple[str, ...] = ()
    splits: tuple[Split, ...] = ()
    metrics: Literal["grounding", "qvhighlights"] = "grounding"
    description: str = ""


@dataclass(frozen=True)
class DatasetChoice:
    """A resolved dataset name: the dataset and, for a split's name, the split."""

    spec: DatasetSpec
    split: Split | None = None

    @property
    def name(self) -> str:
        """Canonical name: "charades" or "charades-ood-1"."""
        return self.spec.name if self.split is None else f"{self.spec.name}-{self.split.name}"

    @property
    def pad_sec(self) -> float:
        return 0.0 if self.split is None else self.split.pad_sec


_REGISTRY: dict[str, DatasetSpec] = {}
_LOOKUP: dict[str, tuple[str, str | None]] = {}  # normalised name -> (dataset, split)

#: name -> reader, for callers of the old ``DATASETS`` table (kept in step with the registry)
DATASETS: dict[str, Callable[..., QueryList]] = {}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "-_ .")


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry (its name, aliases and split names
    become valid ``dataset`` arguments of ``evaluate`` and ``tfvtg eval``)."""
    if not isinstance(spec, DatasetSpec):
        raise InvalidInputError(f"register_dataset takes a DatasetSpec, got {type(spec).__name__}")
    if not callable(spec.loader):
        raise InvalidInputError(f"the loader of dataset {spec.name!r} must be callable")
    names = [spec.name, *spec.aliases]
    keys: dict[str, tuple[str, str | None]] = {}
    for base in names:
        keys[_key(base)] = (spec.name, None)
        for split in spec.splits:
            keys[_key(f"{base}{split.name}")] = (spec.name, split.name)
    for k in keys:
        taken = _LOOKUP.get(k)
        if taken is not None and taken[0] != spec.name and not overwrite:
            raise InvalidInputError(f"dataset name {k!r} already belongs to {taken[0]!r}; pass overwrite=True")
    if spec.name in _REGISTRY:
        old = _REGISTRY[spec.name]
        if not overwrite:
            raise InvalidInputError(f"a dataset named {spec.name!r} is registered already; pass overwrite=True")
        for k in [k for k, v in _LOOKUP.items() if v[0] == old.name]:
            del _LOOKUP[k]
    _REGISTRY[spec.name] = spec
    _LOOKUP.update(keys)
    DATASETS[spec.name] = spec.loader
    return spec


def dataset_names() -> list[str]:
    """Canonical dataset names."""
    return sorted(_REGISTRY)


def list_datasets() -> list[str]:
    """Every name ``evaluate`` takes without aliases: datasets and their
    splits ("charades", "charades-ood-1", ...)."""
    out = []
    for name in sorted(_REGISTRY):
        out.append(name)
        out.extend(f"{name}-{s.name}" for s in _REGISTRY[name].splits)
    return out


def resolve_dataset(name: str | DatasetChoice) -> DatasetChoice:
    """The dataset (and split) a name means; InvalidInputError listing the
    choices for an unknown one."""
    if isinstance(name, DatasetChoice):
        return name
    if not isinstance(name, str):
        raise InvalidInputError(f"a dataset name must be a string, got {type(name).__name__}")
    hit = _LOOKUP.get(_key(name))
    if hit is None:
        raise InvalidInputError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    spec = _REGISTRY[hit[0]]
    split = next((s for s in spec.splits if s.name == hit[1]), None)
    return DatasetChoice(spec, split)


def load_dataset(dataset: str | DatasetChoice, annotations: str | os.PathLike[str], *, strict: bool = False,
                 durations: str | os.PathLike[str] | Mapping[str, float] | None = None,
                 features: str | os.PathLike[str] | None = None, **_ignored: Any) -> QueryList:
    """Read ``annotations`` of a named dataset.

    Charades-STA annotations may be TFVTG's JSON or the original ``.txt``
    format (chosen by suffix; ``durations`` and ``features`` give the text
    format its durations). Returns a :class:`QueryList` (``.skipped`` counts
    the queries refused).
    """
    choice = resolve_dataset(dataset)
    if not Path(annotations).exists():
        raise MissingFileError(f"annotation file not found: {annotations}")
    return choice.spec.loader(annotations, strict=strict, durations=durations, features=features)


# ---------------------------------------------------------------- the built-in datasets

def _charades_loader(path: str | os.PathLike[str], *, strict: bool = False, durations: Any = None,
                     features: Any = None) -> QueryList:
    if str(path).lower().endswith(".txt"):
        return load_charades_sta(path, durations=durations, features=features, strict=strict)
    return load_tfvtg_json(path, strict=strict)


def _json_loader(path: str | os.PathLike[str], *, strict: bool = False, **_: Any) -> QueryList:
    return load_tfvtg_json(path, strict=strict)


def _qvh_loader(path: str | os.PathLike[str], *, strict: bool = False, **_: Any) -> QueryList:
    return load_qvhighlights(path, strict=strict)


register_dataset(DatasetSpec(
    "charades", _charades_loader, "charades", aliases=("charades-sta", "charadessta"),
    splits=(Split("ood-1", 10.0, "10 s of noise features before every video (TFVTG's OOD-1)"),
            Split("ood-2", 15.0, "15 s of noise features before every video (TFVTG's OOD-2)")),
    description="Charades-STA: TFVTG's JSON or the original 'vid start end##sentence' text"))
register_dataset(DatasetSpec(
    "activitynet", _json_loader, "activitynet", aliases=("anet", "activitynet-captions"),
    splits=(Split("ood-1", 30.0, "30 s of noise features before every video (TFVTG's OOD-1)"),
            Split("ood-2", 60.0, "60 s of noise features before every video (TFVTG's OOD-2)")),
    description="ActivityNet Captions: {video: {duration, timestamps, sentences}} JSON"))
register_dataset(DatasetSpec(
    "qvhighlights", _qvh_loader, "qvhighlights", aliases=("qvhighlight", "qvh"), metrics="qvhighlights",
    description="QVHighlights: JSONL, one query per line"))
