"""The tracks of a fine-tuning run: each clip's face crops or audio, read when a batch needs them.

A run with a ``finetune`` block (:mod:`affectflow.training.finetune_spec`) trains its encoder on
the faces shards' crops or the media shards' audio instead of cached features. :class:`ClipTracks`
gives the fold job and :class:`~affectflow.training.tracks.Predictor` what
:class:`~affectflow.training.tracks.FoldTracks` gives them (usable and trainable ids, per-frame
labels on each track's steps), with :class:`~affectflow.training.clip_inputs.CropClip` or
:class:`~affectflow.training.clip_inputs.AudioClip` as each track's model input; there are no
feature statistics (the encoder reads pixels or samples normalised as its weights expect).

:func:`fold_tracks` is the one entry point of the fold and test-prediction jobs: cached features
(:func:`~affectflow.training.tracks.load_tracks`) or raw inputs, as the run's settings say.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from affectflow.training.batching import subsample_rows
from affectflow.training.clip_inputs import AudioClip, CropClip, audio_clips, crop_clips
from affectflow.training.finetune_spec import FinetuneSpec
from affectflow.training.sequences import ShardPaths
from affectflow.training.settings import TrainSettings
from affectflow.training.track_store import TrackIndex
from affectflow.training.tracks import FoldTracks, label_frames, load_tracks

__all__ = ["ClipTracks", "NO_STATISTICS", "fold_tracks", "load_clip_tracks"]

#: What ``model.pt`` of a fine-tuned fold holds as its feature mean and std: nothing (input_dim 0).
NO_STATISTICS = (np.zeros(0, np.float32), np.ones(0, np.float32))


@dataclass
class ClipTracks(FoldTracks):
    """:class:`FoldTracks` whose inputs are each clip's crops or audio (``clips``), not features."""

    clips: dict[int, CropClip | AudioClip] = field(default_factory=dict)

    def load(self, ids) -> None:
        """Nothing to read ahead: a batch reads its clips' crops or audio."""

    def mean_std(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """No feature statistics (:data:`NO_STATISTICS`): the encoder normalises its own input."""
        return NO_STATISTICS[0].copy(), NO_STATISTICS[1].copy()

    def normalise(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Only empty statistics (a fine-tuned fold's ``model.pt``) apply to raw inputs."""
        if len(mean) or len(std):
            raise ValueError(f"raw crops or audio take no feature statistics (given {len(mean)} values): was this "
                             "model trained on cached features?")

    def model_input(self, i: int, settings: TrainSettings) -> CropClip | AudioClip:
        """Clip ``i``'s crops (clip tasks: at most ``max_steps`` of its sampled frames) or audio window."""
        x = self.clips[i]
        if isinstance(x, CropClip) and not self.per_frame:
            return x[subsample_rows(len(x), settings.max_steps)]
        return x

    def widths(self) -> set[int]:
        return set()


def load_clip_tracks(manifest: pd.DataFrame, shard_paths: Iterable[str | os.PathLike], targets: list[str], *,
                     spec: FinetuneSpec, per_frame: bool, frame_labels: pd.DataFrame | None = None) -> ClipTracks:
    """The crops (``spec.input`` crops: faces shards) or audio (``audio``: media shards) of
    ``manifest``'s clips in ``shard_paths``, indexed (nothing decoded); per-frame tasks get their
    labels on the sampled frames' times, as :func:`~affectflow.training.tracks.load_tracks` puts them
    on feature steps. A clip without a valid face or audio is not usable (no prediction)."""
    by_id = manifest.set_index("id")
    ids = [int(i) for i in by_id.index]
    paths = [os.fspath(p) for p in shard_paths]
    if spec.input == "crops":
        clips = crop_clips(paths, ids, frames=spec.frames, size=spec.size) if ids else {}
        times = {i: c.times for i, c in clips.items()}
    else:
        if per_frame:
            raise ValueError("a per-frame task fine-tunes from crops (finetune.input crops): audio samples have "
                             "no frame timeline")
        clips = audio_clips(paths, ids, window_s=spec.window_s) if ids else {}
        times = {i: np.zeros(0) for i in clips}  # clip tasks: one prediction per clip, no steps to place
    usable = set(clips)
    tracks = ClipTracks(TrackIndex([], [], []), times, None, by_id, per_frame, usable, set(usable), clips=clips)
    return label_frames(tracks, targets, frame_labels) if per_frame else tracks


def fold_tracks(manifest: pd.DataFrame, shard_paths: ShardPaths, targets: list[str], *, settings: TrainSettings,
                per_frame: bool, frame_labels: pd.DataFrame | None = None) -> FoldTracks:
    """The tracks a fold or test-prediction job reads: raw crops or audio for a fine-tuning run
    (``settings.finetune``; ``shard_paths`` its faces or media shards), else cached features."""
    spec = settings.finetune_spec()
    if spec is None:
        return load_tracks(manifest, shard_paths, targets, per_frame=per_frame, frame_labels=frame_labels,
                           loader=settings.loader)
    if isinstance(shard_paths, dict):
        raise ValueError("a fine-tuning run reads one input (its faces or media shards), not fused backbones")
    return load_clip_tracks(manifest, shard_paths, targets, spec=spec, per_frame=per_frame, frame_labels=frame_labels)
