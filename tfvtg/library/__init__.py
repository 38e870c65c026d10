"""A searchable video library: index many videos once, find moments across
all of them.

    from tfvtg import Library
    lib = Library("videos.tfvtg", encoder="blip2-coco")
    lib.add_many(paths)                      # or engine="ray"
    hits = lib.search("a person opens the fridge", top_k=10)
    lib.cut(hits[0], "fridge.mp4", pad=1.0)

Modules: catalogue (SQLite, WAL), store (memory-mapped float16 feature
files), index (the coarse index), search (hits and the cross-video score),
engines (local and Ray), export (clips), library (``Library``). See
docs/library.md.
"""
from __future__ import annotations

from .library import AddReport, Library
from .search import Hit, Hits

__all__ = ["Library", "Hit", "Hits", "AddReport"]
