"""Feature steps and video frames of per-frame tasks (VA, AU): which frame a step shows, which
step a frame's prediction reads, and each step's label.

Training labels a step with the frame it shows (:func:`frame_targets`); prediction gives a frame
the step that shows it, else the nearest one in time (:func:`steps_for_frames`), so a frame's
prediction comes from the step its label trained.
"""

from __future__ import annotations

import numpy as np


def frames_at_steps(times: np.ndarray, fps: float) -> np.ndarray:
    """The 1-based video frame shown at each feature timestamp (frame k spans [(k-1)/fps, k/fps))."""
    return np.floor(np.asarray(times, np.float64) * fps + 1e-6).astype(np.int64) + 1


def steps_for_frames(times: np.ndarray, frames: np.ndarray, fps: float) -> np.ndarray:
    """For each 1-based video frame, the index of the feature step that shows it (the inverse of
    :func:`frames_at_steps`, the mapping training labels with), else the step nearest to the
    frame's middle in time.

    Feature steps may be missing (frames without a face dropped, a coarser feature rate, a video
    rate such as 29.97 against features at 30/s); the nearest step is the papers' "nearest valid
    frame" rule (Liu et al. 2023, 003; Deng et al. 2023, 004).
    """
    times = np.asarray(times, np.float64)
    frames = np.asarray(frames, np.int64)
    shown = frames_at_steps(times, fps)  # non-decreasing, as the timestamps are
    first = np.clip(np.searchsorted(shown, frames, side="left"), 0, len(times) - 1)
    centre = (frames - 0.5) / fps
    right = np.clip(np.searchsorted(times, centre), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(times[right] - centre) < np.abs(times[left] - centre), right, left)
    return np.where(shown[first] == frames, first, nearest)


def frame_targets(times: np.ndarray, fps: float, frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-step labels (T, K) of a track: the label of the frame each step shows; NaN where that
    frame has no valid label."""
    out = np.full((len(times), values.shape[1]), np.nan, np.float32)
    if len(frames) == 0 or len(times) == 0:
        return out
    table = np.full((int(frames.max()) + 2, values.shape[1]), np.nan, np.float32)
    table[frames] = values
    shown = frames_at_steps(times, fps)
    inside = shown < len(table)
    out[inside] = table[shown[inside]]
    return out
