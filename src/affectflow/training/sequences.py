"""Training sequences: a backbone's cached features read by clip id, several backbones aligned on
one timeline, their normalisation statistics, and :class:`Example` (one sequence with its labels)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from affectflow.h5store import iter_clips
from affectflow.training.losses import label_mask

#: Feature shards of one backbone, or {backbone: shards} of two or more to fuse (first: the timeline).
ShardPaths = list[str | os.PathLike] | dict[str, list[str | os.PathLike]]


def load_features(shard_paths: list[str | os.PathLike], *, with_times: bool = False) -> dict:
    """Every clip's (T, D) feature array, by integer clip id, from a backbone's shard files
    (with ``with_times``: ``(features, timestamps)`` pairs)."""
    sequences = {}
    for path in shard_paths:
        for clip_id, arrays, _ in iter_clips(path):
            features = arrays["features"].astype(np.float32)
            if with_times:
                times = np.asarray(arrays.get("timestamps", np.arange(len(features))), np.float64)
                sequences[int(clip_id)] = (features, times)
            else:
                sequences[int(clip_id)] = features
    return sequences


def align_modalities(parts: list[tuple[np.ndarray, np.ndarray]], dims: list[int]) -> np.ndarray:
    """Concatenate per-modality (features, timestamps) on one timeline: the first non-empty
    modality's timestamps, each other modality taking its nearest step in time. A modality with
    no steps (no face, no audio) is zeros, which modality-dropout training prepares a model for.
    """
    timeline = next((t for f, t in parts if len(f)), None)
    if timeline is None:
        return np.zeros((0, sum(dims)), np.float32)
    columns = []
    for (features, times), dim in zip(parts, dims, strict=True):
        if len(features) == 0:
            columns.append(np.zeros((len(timeline), dim), np.float32))
            continue
        right = np.clip(np.searchsorted(times, timeline), 1, max(len(times) - 1, 1))
        left = right - 1
        nearest = np.where(np.abs(times[np.minimum(right, len(times) - 1)] - timeline)
                           < np.abs(times[left] - timeline), np.minimum(right, len(times) - 1), left)
        columns.append(features[nearest])
    return np.concatenate(columns, axis=1).astype(np.float32)


def _fuse_loaded(names: list[str], loaded: list[dict]
                 ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list[int]]:
    """Align already loaded per-backbone ``{id: (features, times)}`` (consumed: each clip's
    originals are dropped once aligned, so the peak stays near one copy of the features)."""
    dims = []
    for name, clips in zip(names, loaded, strict=True):
        widths = {f.shape[1] for f, _ in clips.values() if f.ndim == 2}
        if len(widths) != 1:
            raise ValueError(f"backbone {name!r}: feature widths {sorted(widths)} (need exactly one)")
        dims.append(widths.pop())
    empty = (np.zeros((0, 1), np.float32), np.zeros(0))
    sequences, times = {}, {}
    for i in sorted(set().union(*loaded)):
        parts = [clips.pop(i, empty) for clips in loaded]
        timeline = next((t for f, t in parts if len(f)), None)
        sequences[i] = align_modalities(parts, dims)
        times[i] = np.zeros(0) if timeline is None else timeline
    return sequences, times, dims


def load_timed(shard_paths: ShardPaths) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list[int] | None]:
    """Features by clip id, their timestamps (s), and each backbone's width when two or more are fused
    (on the first non-empty backbone's timeline, see :func:`align_modalities`). Each shard is read
    once."""
    if isinstance(shard_paths, dict) and len(shard_paths) > 1:
        return _fuse_loaded(list(shard_paths), [load_features(p, with_times=True) for p in shard_paths.values()])
    paths = next(iter(shard_paths.values())) if isinstance(shard_paths, dict) else shard_paths
    timed = load_features(paths, with_times=True)
    return {i: f for i, (f, _) in timed.items()}, {i: t for i, (_, t) in timed.items()}, None


def shards_by_backbone(paths: list[str | os.PathLike], backbones: list[str]) -> dict[str, list[str]]:
    """Group ``.../features/<backbone>/shard-*.h5`` paths by backbone, in the order of ``backbones``."""
    grouped = {b: [str(p) for p in paths if Path(p).parent.name == b] for b in backbones}
    missing = [b for b, found in grouped.items() if not found]
    if missing:
        raise ValueError(f"no feature shards for backbone(s) {missing} among {len(paths)} paths")
    return grouped


def mean_std(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (+1e-6) over the steps of ``arrays``, from running
    float64 sums rather than one concatenated copy of them all."""
    total = np.zeros(arrays[0].shape[1], np.float64)
    squares = np.zeros_like(total)
    count = 0
    for x in arrays:
        total += x.sum(0, dtype=np.float64)
        squares += np.square(x, dtype=np.float64).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    return mean.astype(np.float32), std.astype(np.float32)


@dataclass
class Example:
    """One training sequence: features (T, D), targets (K,) or (T, K), and which targets are valid."""

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def make(cls, x, y, *, task: str = "clip") -> Example:
        """From arrays; invalid labels (NaN, -5 VA, -1 AU) are masked out."""
        x = torch.as_tensor(np.asarray(x, np.float32))
        y = torch.as_tensor(np.asarray(y, np.float32))
        return cls(x, y, label_mask(y, task))
