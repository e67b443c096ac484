"""The tracks a fold model reads and the prediction tables it writes, shared by training and test prediction.

:func:`load_tracks` indexes the feature shards of a manifest's clips (one backbone, or several
fused on one timeline) into :class:`FoldTracks`, which reads a track's features only when a step
needs them (:mod:`affectflow.training.track_store`); per-frame tasks put each track on its video's
frame timeline. :class:`Predictor` turns a model's outputs on those tracks into the tables a fold
writes: one row per clip, or one per video frame (the OOF rows of :mod:`affectflow.training.fold`,
the test rows of :mod:`affectflow.training.predict`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from affectflow.runtime.atomic import atomic_path
from affectflow.training.batching import subsample_rows
from affectflow.training.frames import frame_targets, frames_at_steps, steps_for_frames
from affectflow.training.inference import predict
from affectflow.training.sequences import ShardPaths
from affectflow.training.settings import TrainSettings
from affectflow.training.track_store import TrackIndex, TrackStore, TrackView, fold_mean_std, index_tracks, store_tracks

__all__ = ["FoldTracks", "Predictor", "label_frames", "load_tracks", "write_table"]

log = logging.getLogger(__name__)

#: How prediction tables write their values (6 decimals: far below any score's resolution).
FLOAT_FORMAT = "%.6f"


@dataclass
class FoldTracks:
    """The tracks a fold job reads: their index (where each one's features are; see
    :mod:`affectflow.training.track_store`), the stores of the tracks read so far, their timestamps
    (s), the fused backbones' widths, the manifest by id, and for per-frame tasks the labels.

    Features are read only for the tracks a step asks for (:meth:`load`, which :class:`Predictor`
    calls too); :meth:`model_input` gives a track's rows as a view that a batch reads, normalised
    (once :meth:`normalise` has set the statistics) in the store.
    """

    index: TrackIndex
    times: dict[int, np.ndarray]
    dims: list[int] | None  # each fused backbone's width; None for one backbone
    by_id: pd.DataFrame
    per_frame: bool
    usable: set[int]  # tracks with features (per frame: and a frame rate); only these are predicted
    trainable: set[int]  # usable tracks with a label to fit on
    # per frame: (labelled frames, their values) by id
    labels_of: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # per frame: (T, K) labels of each usable labelled track's steps
    step_labels: dict[int, np.ndarray] = field(default_factory=dict)
    loader: str = "memmap"
    stores: list[TrackStore] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fps(self, i: int) -> float:
        """Track ``i``'s video frame rate."""
        return float(self.by_id.at[i, "fps"])

    def load(self, ids) -> None:
        """Read the usable tracks of ``ids`` that no store holds yet into a new store."""
        missing = [i for i in ids if i in self.usable and self._store_of(i) is None]
        if missing:
            store = store_tracks(self.index, missing, loader=self.loader)
            if self.mean is not None:  # read after the statistics were set: normalised as it is stored
                store.normalise(self.mean, self.std)
            self.stores.append(store)

    def stored(self) -> set[int]:
        """The ids whose features have been read."""
        return {i for store in self.stores for i in store.rows}

    def mean_std(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The feature mean and standard deviation over the steps of ``ids`` (read first if need be)."""
        if self.mean is not None:
            raise RuntimeError("the tracks are normalised already: their statistics come first")
        self.load(ids)
        return fold_mean_std(self.stores, ids)

    def normalise(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Normalise every track with ``mean`` and ``std``: those stored now, in place, and those read
        later as they are stored."""
        if self.mean is not None:
            raise RuntimeError("the tracks are normalised already")
        self.mean, self.std = mean, std
        for store in self.stores:
            store.normalise(mean, std)

    def model_input(self, i: int, settings: TrainSettings) -> TrackView:
        """Track ``i``'s features as the model reads them (read into a store first if need be)."""
        self.load([i])
        x = self._store_of(i).view(i)
        # clip tasks subsample long clips to max_steps; per-frame tasks keep every step (segments
        # bound the length instead) because every frame needs its own prediction
        return x if self.per_frame else x[subsample_rows(len(x), settings.max_steps)]

    def widths(self) -> set[int]:
        """The feature widths of the usable tracks (one value, the index's, when there are any)."""
        return {self.index.width} if self.usable else set()

    def _store_of(self, i: int) -> TrackStore | None:
        return next((store for store in self.stores if i in store.rows), None)


def load_tracks(manifest: pd.DataFrame, shard_paths: ShardPaths, targets: list[str], *, per_frame: bool,
                frame_labels: pd.DataFrame | None = None, loader: str = "memmap") -> FoldTracks:
    """The tracks of ``manifest``'s clips in ``shard_paths``, indexed (no features read: see
    :meth:`FoldTracks.load`); with ``frame_labels`` (per-frame training) their labels put on the
    feature steps. ``loader`` says where read features are kept (:data:`~affectflow.training.settings.LOADERS`).

    Clips of the shards that the manifest does not list are dropped (a shard may hold clips another
    job predicts). An empty manifest reads no shard. Per-frame tasks (``per_frame``) need the
    manifest's ``fps``: a track without a usable frame rate is not :attr:`FoldTracks.usable`.
    """
    by_id = manifest.set_index("id")
    if by_id.empty:
        return FoldTracks(TrackIndex([], [], []), {}, None, by_id, per_frame, set(), set(), loader=loader)
    index = index_tracks(shard_paths, by_id.index)
    times = index.times
    usable = {i for i in times if index.steps(i) > 0}
    dims = index.dims if isinstance(shard_paths, dict) and len(shard_paths) > 1 else None
    tracks = FoldTracks(index, times, dims, by_id, per_frame, usable, usable, loader=loader)
    return label_frames(tracks, targets, frame_labels) if per_frame else tracks


def label_frames(tracks: FoldTracks, targets: list[str], frame_labels: pd.DataFrame | None) -> FoldTracks:
    """Put per-frame ``tracks`` on their videos' frame timelines: tracks without a usable frame rate
    (the manifest's ``fps``) are no longer usable; with ``frame_labels`` (per-frame training) each
    step gets the label of the frame it shows, and the tracks with a valid label are trainable."""
    by_id, usable = tracks.by_id, tracks.usable
    # a track whose frame rate could not be probed cannot be put on the frame timeline
    fps_of = pd.to_numeric(by_id["fps"], errors="coerce")
    no_rate = sorted(i for i in usable if not (np.isfinite(fps_of[i]) and fps_of[i] > 0))
    if no_rate:
        names = by_id.loc[no_rate, "name"].astype(str).tolist() if "name" in by_id else no_rate
        log.warning("%d track(s) without a usable frame rate get no prediction from this run: %s",
                    len(no_rate), names[:10])
        tracks.usable = usable - set(no_rate)
    tracks.trainable = set()
    if frame_labels is not None:
        tracks.labels_of = {int(i): (g["frame"].to_numpy(np.int64), g[targets].to_numpy(np.float32))
                            for i, g in frame_labels.groupby("id", sort=False)}
        tracks.step_labels = {i: frame_targets(tracks.times[i], tracks.fps(i), *tracks.labels_of[i])
                              for i in tracks.usable if i in tracks.labels_of}
        tracks.trainable = {i for i, y in tracks.step_labels.items() if np.isfinite(y).any()}
    return tracks


class Predictor:
    """A trained model's prediction tables on :class:`FoldTracks`: one row per clip, or per video frame."""

    def __init__(self, model: torch.nn.Module, tracks: FoldTracks, targets: list[str], s: TrainSettings,
                 device: str) -> None:
        self.model, self.tracks, self.targets, self.settings, self.device = model, tracks, targets, s, device

    def _predict(self, ids: list[int]) -> list[np.ndarray]:
        self.tracks.load(ids)  # one store for the tracks predicted here (test, out-of-fold)
        xs = [self.tracks.model_input(i, self.settings) for i in ids]
        return predict(self.model, xs, settings=self.settings, device=self.device)

    def oof(self, ids: list[int]) -> pd.DataFrame:
        """Out-of-fold rows: each clip, or each labelled frame of each track."""
        if not self.tracks.per_frame:
            return self.clips(ids)
        labels_of = self.tracks.labels_of
        return self.frames({i: labels_of[i][0] if i in labels_of else np.zeros(0, np.int64) for i in ids})

    def test(self, ids: list[int]) -> pd.DataFrame:
        """Test rows: each clip, or frames 1..frames of each track."""
        if not self.tracks.per_frame:
            return self.clips(ids)
        return self.frames({i: np.arange(1, self._frame_count(i) + 1) for i in ids})

    def clips(self, ids: list[int]) -> pd.DataFrame:
        """One row per clip (id, targets); NaN for a clip without features."""
        frame = pd.DataFrame({"id": ids})
        values = np.full((len(ids), len(self.targets)), np.nan, np.float32)
        have = [n for n, i in enumerate(ids) if i in self.tracks.usable]
        if have:
            values[have] = np.stack(self._predict([ids[n] for n in have]))
        frame[self.targets] = values
        return frame

    def frames(self, wanted: dict[int, np.ndarray]) -> pd.DataFrame:
        """One row per wanted frame of each track (id, frame, targets), each from the step that shows
        the frame (else the nearest); NaN for a track without features."""
        tracks, targets = self.tracks, self.targets
        have = [i for i in wanted if i in tracks.usable]
        preds = dict(zip(have, self._predict(have), strict=True)) if have else {}
        parts = []
        for i, ks in wanted.items():
            values = np.full((len(ks), len(targets)), np.nan, np.float32)
            if i in preds and len(ks):
                values = preds[i][steps_for_frames(tracks.times[i], ks, tracks.fps(i))]
            part = pd.DataFrame(values, columns=targets)
            part.insert(0, "frame", ks.astype(np.int64))
            part.insert(0, "id", i)
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "frame", *targets])

    def _frame_count(self, i: int) -> int:
        # the probed count; when the probe gave none, up to the frame the last feature step shows
        tracks = self.tracks
        n = pd.to_numeric(pd.Series([tracks.by_id.at[i, "frames"]]), errors="coerce").iloc[0]
        if np.isfinite(n) and n > 0:
            return int(n)
        if i in tracks.usable and len(tracks.times[i]):
            return int(frames_at_steps(tracks.times[i][-1:], tracks.fps(i))[0])
        return 0


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a prediction table (``oof.csv``, ``test.csv``) atomically, values as :data:`FLOAT_FORMAT`."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
