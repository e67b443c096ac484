"""Putting features on the visual timeline, for per-frame tasks (VA, AU on Aff-Wild2)."""

from __future__ import annotations

import numpy as np


def align_to_frames(
    features: np.ndarray, timestamps: np.ndarray, frame_times: np.ndarray, *, max_gap_s: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample (T, D) rows at ``timestamps`` onto ``frame_times``: ((F, D) float32, (F,) bool mask).

    Frame f takes the mean of the rows whose time falls within half a frame period of it; a frame
    with no such row takes the nearest row if it lies within ``max_gap_s`` (default: the larger of
    the row spacing and the frame period), else zeros with ``mask`` False. Both time axes must
    be increasing. No rows give all-zero features and an all-False mask, never NaN.
    """
    features = np.asarray(features, np.float32)
    times = np.asarray(timestamps, np.float64)
    frames = np.asarray(frame_times, np.float64)
    if features.ndim != 2 or len(features) != len(times):
        raise ValueError(f"expected (T, D) features with T timestamps, not shape {features.shape} and {times.shape}")
    n_frames, dim = len(frames), features.shape[1]
    aligned = np.zeros((n_frames, dim), np.float32)
    mask = np.zeros(n_frames, bool)
    if not n_frames or not len(times):
        return aligned, mask
    period = float(np.median(np.diff(frames))) if n_frames > 1 else 1.0
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else period
    max_gap = max(spacing, period) if max_gap_s is None else float(max_gap_s)
    # rows within half a frame period: a mean through cumulative sums, O(T + F)
    lo = np.searchsorted(times, frames - period / 2, side="left")
    hi = np.searchsorted(times, frames + period / 2, side="left")
    cumulative = np.concatenate([np.zeros((1, dim)), np.cumsum(features, axis=0, dtype=np.float64)])
    counts = hi - lo
    inside = counts > 0
    aligned[inside] = ((cumulative[hi[inside]] - cumulative[lo[inside]]) / counts[inside, None]).astype(np.float32)
    mask[inside] = True
    # otherwise the nearest row, if close enough
    right = np.clip(np.searchsorted(times, frames), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(times[left] - frames) <= np.abs(times[right] - frames), left, right)
    near = ~inside & (np.abs(times[nearest] - frames) <= max_gap)
    aligned[near] = features[nearest[near]]
    mask[near] = True
    return aligned, mask
