"""The data balancing of Deng et al. 2023 (004) for the AU task: face-masked copies of training tracks.

For each region of a run's ``mask_augment``, a training track gets a copy whose visual features
come from the same backbone run on crops with that half of the face blacked out (the features
stage's ``mask`` key) and whose labels follow :func:`mask_copy_labels`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from affectflow.training.frames import frame_targets
from affectflow.training.sequences import ShardPaths
from affectflow.training.settings import TrainSettings
from affectflow.training.track_store import TrackView, index_tracks, store_tracks

if TYPE_CHECKING:
    from affectflow.training.tracks import FoldTracks

log = logging.getLogger(__name__)


def mask_copy_labels(y: np.ndarray, targets: list[str], region: str) -> np.ndarray | None:
    """The per-step labels of a track's ``region``-masked copy (the data balancing of Deng et al.
    2023, 004), or None when the track gets no such copy.

    Deng et al. 2023 (004, section 3.1) adds masked copies for the AUs with below-average positives
    (:data:`affectflow.faces.masking.AUGMENTED_AUS`) and sets the AUs under the mask to 0. Per
    track, the rule here: a copy is kept when the track has at least one labelled step on which an
    augmented AU that stays *visible* under the mask is positive (upper mask: AU12, AU15, AU23,
    AU24, AU26; lower mask: AU1, AU2, AU4 of the ABAW set), so that each copy adds positives of a
    rare AU; a copy of a track without one would only add negatives. In the copy, the AUs under
    the mask (:data:`~affectflow.faces.masking.UPPER_AUS` / ``LOWER_AUS``) are 0 on every labelled
    step; unlabelled steps (NaN) stay unlabelled; the visible AUs keep their labels.
    """
    # faces.masking loads OpenCV and the face detectors: only in runs that mask
    from affectflow.faces.masking import AUGMENTED_AUS, LOWER_AUS, REGIONS, UPPER_AUS

    if region not in REGIONS:
        raise ValueError(f"region {region!r}; options: {', '.join(REGIONS)}")
    y = np.asarray(y, np.float32)
    if y.ndim != 2 or y.shape[1] != len(targets):
        raise ValueError(f"expected labels (T, {len(targets)}), not shape {y.shape}")
    hidden_set = UPPER_AUS if region == "upper" else LOWER_AUS
    hidden = [j for j, t in enumerate(targets) if t in hidden_set]
    rare_visible = [j for j, t in enumerate(targets) if t in AUGMENTED_AUS and t not in hidden_set]
    labelled = np.isfinite(y) & (y >= 0)
    if not rare_visible or not ((y[:, rare_visible] > 0.5) & labelled[:, rare_visible]).any():
        return None
    out = y.copy()
    out[:, hidden] = np.where(labelled[:, hidden], 0.0, y[:, hidden])
    return out


def masked_layouts(shard_paths: dict[str, list[str]], grouped: Mapping[str, list[str]],
                   mask_augment: Mapping[str, str]) -> dict[str, dict[str, list[str]]]:
    """For each region of ``mask_augment``, ``shard_paths`` ({backbone: shards}, the run's own
    backbone first) with the run's own backbone swapped for its masked copy, whose shards are
    ``grouped[<features key>]``; fused backbones stay."""
    fused = list(shard_paths)[1:]
    return {region: {key: list(grouped[key]), **{b: list(shard_paths[b]) for b in fused}}
            for region, key in mask_augment.items()}


def masked_copies(s: TrainSettings, masked_shards: dict[str, ShardPaths] | None, train_ids: list[int],
                  tracks: FoldTracks, targets: list[str], *, mean: np.ndarray, std: np.ndarray
                  ) -> list[tuple[str, int, TrackView, np.ndarray]]:
    """The masked copies of a fold's training tracks: (region, track id, features as a view
    normalised with ``mean`` and ``std``, labels) per kept copy; [] when ``s.mask_augment`` is empty.

    ``masked_shards`` gives each region's shards laid out like the run's (see
    :func:`masked_layouts`); ``tracks`` are the run's own (their fused widths, labels and frame
    rates). Only the copies kept are read, into a store of their own (``s.loader``).
    """
    from affectflow.faces.masking import REGIONS

    if not s.mask_augment:
        return []
    if s.task != "au":
        raise ValueError(f"mask_augment (paper 004's face-masked copies) is for task au, not {s.task!r}")
    layouts = masked_shards or {}
    missing = {region: key for region, key in s.mask_augment.items() if region not in layouts}
    if missing:
        raise ValueError(f"mask_augment {missing}: no masked_shards for the region(s) (masked_shards has "
                         f"{sorted(layouts)}); the training job passes the masked copies' feature shards")
    copies = []
    for region in (r for r in REGIONS if r in s.mask_augment):
        index = index_tracks(layouts[region], [i for i in train_ids if i in tracks.labels_of])
        masked_dims = index.dims if len(index.dims) > 1 else None
        if index.times and (masked_dims != tracks.dims or index.width != tracks.index.width):
            raise ValueError(f"mask_augment.{region}: feature widths {masked_dims or index.width} differ from the "
                             f"run's {tracks.dims or tracks.index.width}")
        kept = {}
        for i in train_ids:
            if i not in index.times or not index.steps(i) or i not in tracks.labels_of:
                continue
            y = mask_copy_labels(frame_targets(index.times[i], tracks.fps(i), *tracks.labels_of[i]), targets, region)
            if y is not None:
                kept[i] = y
        store = store_tracks(index, list(kept), loader=s.loader)
        store.normalise(mean, std)
        copies += [(region, i, store.view(i), y) for i, y in kept.items()]
        log.info("mask_augment.%s: %d of %d training tracks copied", region, len(kept), len(train_ids))
    return copies
