"""Missing-face policies: what a frame without a detected face gets.

- ``drop`` (paper 000): nothing; the frame stays invalid and later stages skip it.
- ``interpolate`` (paper 001): boxes and landmarks are interpolated linearly over gaps of at
  most ``max_gap`` frames between two detected frames, then smoothed; longer gaps and the clip's
  ends stay invalid.
- ``nearest`` (papers 003, 004): the frame takes the face of the nearest detected frame (its
  crop too).

Each frame's ``fill`` label says what happened: ``none`` (detected), ``tracked`` (between two
detection keyframes), ``interpolated``, ``nearest`` or ``dropped``.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("drop", "interpolate", "nearest")
FILL_LABELS = ("none", "tracked", "interpolated", "nearest", "dropped")


def check_policy(policy: str) -> str:
    """``policy`` if known, else a ValueError naming the options."""
    if policy not in POLICIES:
        raise ValueError(f"unknown missing-face policy {policy!r}; options: {', '.join(POLICIES)}")
    return policy


def gap_fill_mask(valid: np.ndarray, *, max_gap: int) -> np.ndarray:
    """Frames inside gaps of at most ``max_gap`` invalid frames with valid frames on both sides."""
    valid = np.asarray(valid, bool)
    fill = np.zeros_like(valid)
    if max_gap <= 0:
        return fill
    idx = np.flatnonzero(valid)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_gap + 1:
            fill[a + 1 : b] = True
    return fill


def interpolate(values: np.ndarray, valid: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) with the ``fill`` frames linearly interpolated from the ``valid`` ones."""
    values = np.array(values, dtype=np.float64, copy=True)
    idx = np.flatnonzero(valid)
    targets = np.flatnonzero(fill)
    if len(idx) == 0 or len(targets) == 0:
        return values
    flat = values.reshape(len(values), -1)
    for col in range(flat.shape[1]):
        flat[targets, col] = np.interp(targets, idx, flat[idx, col])
    return flat.reshape(values.shape)


def smooth(values: np.ndarray, valid: np.ndarray, *, window: int) -> np.ndarray:
    """Centred moving average of ``window`` frames within each run of consecutive valid frames.

    Near a run's ends the window shrinks symmetrically, so a run's first and last frames keep
    their values and nothing leaks across an invalid gap.
    """
    values = np.array(values, dtype=np.float64, copy=True)
    if window <= 1:
        return values
    valid = np.asarray(valid, bool)
    half = window // 2
    out = values.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        for i in range(start, stop):
            h = min(half, i - start, stop - 1 - i)
            out[i] = values[i - h : i + h + 1].mean(0)
    return out


def nearest_valid(valid: np.ndarray) -> np.ndarray:
    """Per frame the index of the nearest valid frame (the earlier one on a tie); -1 when none."""
    valid = np.asarray(valid, bool)
    idx = np.flatnonzero(valid)
    out = np.full(len(valid), -1, dtype=np.int64)
    if len(idx) == 0:
        return out
    pos = np.searchsorted(idx, np.arange(len(valid)))
    before = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    after = idx[np.clip(pos, 0, len(idx) - 1)]
    frames = np.arange(len(valid))
    use_after = (np.abs(after - frames) < np.abs(frames - before)) | (before > frames)
    return np.where(use_after, after, before)


def fill_missing(
    arrays: dict[str, np.ndarray],
    detected: np.ndarray,
    *,
    policy: str,
    max_gap: int = 12,
    smooth_window: int = 0,
    tracked_gap: int = 0,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Apply a missing-face policy to per-frame ``arrays`` (each (T, ...), NaN where undetected).

    First, frames between two detection keyframes at most ``tracked_gap`` apart are
    interpolated (label ``tracked``: detecting every k-th frame uses ``tracked_gap = k - 1``).
    Then the policy. Returns ``(arrays, valid, fill_labels, source)``: ``source[i]`` is the frame
    whose face frame ``i`` shows (``i`` itself unless ``nearest`` borrowed one; -1 when invalid).
    """
    check_policy(policy)
    detected = np.asarray(detected, bool)
    n = len(detected)
    labels = np.where(detected, "none", "dropped").astype(object)
    out = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    tracked = gap_fill_mask(detected, max_gap=tracked_gap)
    if tracked.any():
        out = {k: interpolate(v, detected, tracked) for k, v in out.items()}
        labels[tracked] = "tracked"
    valid = detected | tracked
    source = np.where(valid, np.arange(n), -1)
    if policy == "interpolate":
        gaps = gap_fill_mask(valid, max_gap=max_gap)
        out = {k: interpolate(v, valid, gaps) for k, v in out.items()}
        labels[gaps] = "interpolated"
        valid = valid | gaps
        source = np.where(valid, np.arange(n), -1)
        if smooth_window > 1:
            out = {k: smooth(v, valid, window=smooth_window) for k, v in out.items()}
    elif policy == "nearest":
        near = nearest_valid(valid)
        borrowed = ~valid & (near >= 0)
        for value in out.values():
            value[borrowed] = value[near[borrowed]]
        labels[borrowed] = "nearest"
        source = np.where(valid, np.arange(n), near)
        valid = valid | borrowed
    return out, valid, labels.astype(str), source
