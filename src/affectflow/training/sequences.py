"""Training sequences: a backbone's cached features read by clip id, several backbones aligned on
one timeline, and :class:`Example` (one sequence with its labels).

A train or predict job reads its features through :mod:`affectflow.training.track_store`, one
track at a time; :func:`load_features` reads a whole shard list into memory (benchmarks, tests).
"""

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


def shards_by_backbone(paths: list[str | os.PathLike], backbones: list[str]) -> dict[str, list[str]]:
    """Group ``.../features/<backbone>/shard-*.h5`` paths by backbone, in the order of ``backbones``."""
    grouped = {b: [str(p) for p in paths if Path(p).parent.name == b] for b in backbones}
    missing = [b for b, found in grouped.items() if not found]
    if missing:
        raise ValueError(f"no feature shards for backbone(s) {missing} among {len(paths)} paths")
    return grouped


@dataclass
class Example:
    """One training sequence: features (T, D), targets (K,) or (T, K), and which targets are valid.

    ``x`` is a tensor, or a :class:`~affectflow.training.track_store.TrackView` (any object with
    ``len``, slicing and ``read()``) whose rows are read when a batch needs them."""

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def make(cls, x, y, *, task: str = "clip") -> Example:
        """From arrays (or a track view, kept as it is); invalid labels (NaN, -5 VA, -1 AU) are masked out."""
        if not hasattr(x, "read"):
            x = torch.as_tensor(np.asarray(x, np.float32))
        y = torch.as_tensor(np.asarray(y, np.float32))
        return cls(x, y, label_mask(y, task))
