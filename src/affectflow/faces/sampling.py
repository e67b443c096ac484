"""Temporal sampling of a clip's frames, as the papers do it.

- ``all``: every frame (at the decoding rate).
- ``uniform``: ``num_frames`` frames spread evenly over the clip (32 in paper 001, 300 in 000);
  a clip with fewer frames repeats frames (nearest index), so every clip gives exactly T.
- ``segments``: every frame, plus windows of ``segment_length`` frames every ``stride`` frames
  (paper 003: l = 150, stride = l); the last window is cut at the clip's end.

``max_seconds`` (paper 002: 12 s) cuts the clip before any of these.
"""

from __future__ import annotations

import math

import numpy as np

MODES = ("all", "uniform", "segments")


def check_sampling(*, mode: str, num_frames: int = 32, segment_length: int = 150, stride: int = 150,
                   max_seconds: float | None = None) -> None:
    """Reject bad combinations at once, naming the value and the options."""
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; options: {', '.join(MODES)}")
    if mode == "uniform" and num_frames < 1:
        raise ValueError(f"uniform sampling needs num_frames >= 1, not {num_frames}")
    if mode == "segments" and (segment_length < 1 or stride < 1):
        raise ValueError(f"segments need segment_length >= 1 and stride >= 1, not {segment_length}, {stride}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 (or null for no cut), not {max_seconds}")


def max_frames(max_seconds: float | None, fps: float) -> int | None:
    """Frames kept by a cut to ``max_seconds`` at ``fps`` (None: no cut)."""
    return None if not max_seconds else max(1, int(math.floor(max_seconds * fps + 1e-9)))


def uniform_indices(n: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread evenly over ``range(n)``, first and last included (empty if n = 0)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if num_frames == 1:
        return np.array([(n - 1) // 2], dtype=np.int64)
    return np.round(np.linspace(0, n - 1, num_frames)).astype(np.int64)


def segment_bounds(n: int, *, segment_length: int, stride: int) -> np.ndarray:
    """(S, 2) ``[start, stop)`` windows of ``segment_length`` every ``stride`` frames over ``range(n)``."""
    if n <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    starts = np.arange(0, max(1, n - segment_length + stride), stride)
    starts = starts[starts < n]
    return np.stack([starts, np.minimum(starts + segment_length, n)], axis=1).astype(np.int64)


def sample_frames(n: int, *, mode: str, num_frames: int = 32, segment_length: int = 150,
                  stride: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, segments)`` for a clip of ``n`` frames: which frames to keep, and the windows
    (over the kept frames) when ``mode == "segments"`` (else an empty (0, 2) array)."""
    check_sampling(mode=mode, num_frames=num_frames, segment_length=segment_length, stride=stride)
    empty = np.zeros((0, 2), dtype=np.int64)
    if mode == "uniform":
        return uniform_indices(n, num_frames), empty
    indices = np.arange(n, dtype=np.int64)
    if mode == "segments":
        return indices, segment_bounds(n, segment_length=segment_length, stride=stride)
    return indices, empty
