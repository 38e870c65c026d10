"""Video decoding and TFVTG's frame sampling (decord where installed, PyAV everywhere)."""
from __future__ import annotations

from .decode import (
                     VIDEO_SUFFIXES,
                     DecodedVideo,
                     VideoInfo,
                     iter_frame_batches,
                     probe,
                     read_frames,
                     sample_frame_indices,
)

__all__ = ["VIDEO_SUFFIXES", "DecodedVideo", "VideoInfo", "iter_frame_batches", "probe", "read_frames",
           "sample_frame_indices"]
