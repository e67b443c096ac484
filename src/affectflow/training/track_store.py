"""Feature tracks read as a train or predict job needs them, in memory bounded by the batch.

A job's tracks are indexed first (:func:`index_tracks`: per clip, each backbone's shard, step count
and timestamps; no features read), then the tracks a step needs are written once, aligned on the
fused timeline, into one contiguous float32 array (:class:`TrackStore`, built by
:func:`store_tracks`): a memory-mapped temporary file by default (loader ``memmap``), whose pages
are the kernel's reclaimable page cache, not the job's private memory; or an array in RAM (loader
``memory``, the same code, for comparison). A fold's feature mean and standard deviation are
running float64 sums over its training tracks' stored rows (:func:`fold_mean_std`), one track at
a time; then its stores are normalised in place, once (:meth:`TrackStore.normalise`), and a batch
copies its rows through a :class:`TrackView`.

The temporary file lives in ``$TMPDIR`` (Python's :func:`tempfile.gettempdir`) and is unlinked as
soon as it is created: a killed job leaves nothing behind. It needs 4 bytes per step and feature
dimension of the tracks stored (Aff-Wild2's ~3M frames at 1792 fused dimensions: about 21 GB).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from affectflow.h5store import clip_groups, open_shard, shard_errors
from affectflow.training.sequences import ShardPaths, align_modalities
from affectflow.training.settings import LOADERS

__all__ = ["TrackIndex", "TrackStore", "TrackView", "as_tensor", "fold_mean_std", "index_tracks", "store_tracks"]


@dataclass
class TrackIndex:
    """Where each clip's features are, without them: per backbone, (shard, steps, timestamps) by id."""

    backbones: list[str]
    dims: list[int]  # each backbone's width
    parts: list[dict[int, tuple[str, str, int, np.ndarray]]]  # per backbone: id -> (shard, group name, steps, times)
    times: dict[int, np.ndarray] = field(default_factory=dict)  # the fused timeline (s) of every indexed id

    @property
    def width(self) -> int:
        """The stored tracks' width: the backbones' widths added."""
        return int(sum(self.dims))

    def steps(self, i: int) -> int:
        """Track ``i``'s steps on the fused timeline."""
        return len(self.times[i])


def index_tracks(shard_paths: ShardPaths, ids: Iterable[int]) -> TrackIndex:
    """The :class:`TrackIndex` of clips ``ids`` in ``shard_paths`` (one backbone's shard list, or
    {backbone: shards} to fuse on the first non-empty backbone's timeline). Reads each clip's
    timestamps and the shape of its features, never the features. Clips of the shards that are not
    in ``ids`` are skipped (their widths still count); a clip in no shard is not indexed. A fused
    backbone whose clips differ in width, or have none, fails naming it; so does a clip whose
    timestamps and feature rows differ in number, naming the shard and the clip."""
    grouped = shard_paths if isinstance(shard_paths, dict) else {"features": shard_paths}
    wanted = {int(i) for i in ids}
    parts, dims = [], []
    for name, paths in grouped.items():
        found: dict[int, tuple[str, str, int, np.ndarray]] = {}
        widths: set[int] = set()
        for path in paths:
            for clip, group in clip_groups(path):  # every clip: the widths of those not listed count too
                with shard_errors(path, clip):
                    shape = group["features"].shape
                    if len(shape) == 2:  # an empty (0, D) array of a clip without a face says D too
                        widths.add(int(shape[1]))
                    if int(clip) not in wanted:
                        continue
                    times = group["timestamps"][()] if "timestamps" in group else np.arange(shape[0])
                if len(times) != shape[0]:
                    raise ValueError(f"{path}: clip {clip} has {shape[0]} feature rows but {len(times)} "
                                     "timestamps; rebuild the shard")
                found[int(clip)] = (str(path), clip, int(shape[0]), np.asarray(times, np.float64))
        if len(widths) > 1 or (not widths and len(grouped) > 1):
            raise ValueError(f"backbone {name!r}: feature widths {sorted(widths)} (need exactly one)")
        parts.append(found)
        dims.append(widths.pop() if widths else 0)
    index = TrackIndex(list(grouped), dims, parts)
    for i in sorted(set().union(*parts)):
        timeline = next((p[i][3] for p in parts if i in p and p[i][2]), None)
        index.times[i] = np.zeros(0) if timeline is None else timeline
    return index


@dataclass
class TrackStore:
    """Tracks stored one after another in ``array``: rows ``start:start + steps`` by id."""

    array: np.ndarray
    rows: dict[int, tuple[int, int]]  # id -> (start, steps)

    def view(self, i: int) -> TrackView:
        """Track ``i``'s rows, read when a batch needs them."""
        start, steps = self.rows[i]
        return TrackView(self.array, range(start, start + steps))

    def normalise(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Normalise every stored track in place, once: ``(x - mean) / std`` in float32, element by
        element, as a whole normalised track in memory had it (the same values); a batch then only
        copies its rows."""
        for i in self.rows:
            x = self.track(i)
            x -= mean
            x /= std
        if isinstance(self.array, np.memmap):
            self.array.flush()

    def track(self, i: int) -> np.ndarray:
        """Track ``i``'s stored rows (a view of the array; normalised once :meth:`normalise` ran)."""
        start, steps = self.rows[i]
        return self.array[start : start + steps]


def store_tracks(index: TrackIndex, ids: Iterable[int], *, loader: str = "memmap") -> TrackStore:
    """Write the tracks ``ids`` (indexed, non-empty ones) of ``index`` into one :class:`TrackStore`,
    one clip in memory at a time; ``loader`` (:data:`LOADERS`) says where the array lives.

    Clips are read shard by shard (in the order of their shards, then of ``ids``), with only the
    shards of the current clip open."""
    if loader not in LOADERS:
        raise ValueError(f"loader {loader!r}; known: {', '.join(LOADERS)}")
    ids = [int(i) for i in ids if int(i) in index.times and index.steps(int(i))]

    def shards_of(i: int) -> tuple[str, ...]:
        return tuple(part[i][0] if i in part else "" for part in index.parts)

    ids = sorted(ids, key=shards_of)  # stable: within a shard, the order of ids
    array = _allocate(sum(index.steps(i) for i in ids), index.width, loader)
    store = TrackStore(array, {})
    handles: dict[str, object] = {}
    try:
        start = 0
        for i in ids:
            for path in set(handles) - set(shards_of(i)):  # only the current clip's shards stay open
                handles.pop(path).close()
            x = _read_track(index, i, handles)
            array[start : start + len(x)] = x
            store.rows[i] = (start, len(x))
            start += len(x)
    finally:
        for h5 in handles.values():
            h5.close()
    if isinstance(array, np.memmap):
        array.flush()
    return store


def _allocate(steps: int, width: int, loader: str) -> np.ndarray:
    """A (steps, width) float32 array: in an unlinked temporary file (``memmap``) or in RAM."""
    if loader == "memory" or steps * width == 0:
        return np.empty((steps, width), np.float32)
    # TemporaryFile has no name on Linux (or is unlinked at once): the mapping keeps the pages, and
    # a killed job leaves no file behind
    with tempfile.TemporaryFile(prefix="affectflow-tracks-") as handle:
        size = steps * width * 4
        try:
            # blocks reserved now: a full disk fails here, with a reason, not as a SIGBUS mid-epoch
            # (where the system has no posix_fallocate, e.g. macOS, a sparse file: no such check)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, size)
            else:
                handle.truncate(size)
        except OSError as err:
            raise OSError(err.errno, f"the feature tracks of this job need {size / 2**30:.2f} GiB in "
                                     f"{tempfile.gettempdir()} ($TMPDIR): {err.strerror}; free space there, point "
                                     f"TMPDIR at a larger disk, or set the run's loader: memory") from None
        return np.memmap(handle, dtype=np.float32, mode="r+", shape=(steps, width))


def _read_track(index: TrackIndex, i: int, handles: dict) -> np.ndarray:
    """Track ``i``'s features as float32, the backbones aligned on the fused timeline."""
    parts = []
    for part in index.parts:
        if i not in part or not part[i][2]:
            parts.append((np.zeros((0, 1), np.float32), np.zeros(0)))
            continue
        path, name, _, times = part[i]
        if path not in handles:
            handles[path] = open_shard(path)
        with shard_errors(path, name):
            features = handles[path]["clips"][name]["features"][()]
        parts.append((features.astype(np.float32), times))
    if len(parts) == 1:
        return parts[0][0]
    return align_modalities(parts, index.dims)


def fold_mean_std(stores: Iterable[TrackStore], ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (+1e-6) over the steps of tracks ``ids`` (each in
    the first store that holds it), from running float64 sums of each track added in the order of
    ``ids``: one track in memory at a time, never one concatenated copy of them all."""
    stores = list(stores)
    total = squares = None
    count = 0
    for i in ids:
        x = next(s for s in stores if i in s.rows).track(i)
        part, part_squares = x.sum(0, dtype=np.float64), np.square(x, dtype=np.float64).sum(0)
        total = part if total is None else total + part
        squares = part_squares if squares is None else squares + part_squares
        count += len(x)
    if total is None:
        raise ValueError("no track to compute feature statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    return mean.astype(np.float32), std.astype(np.float32)


class TrackView:
    """Rows of a stored track, read only when a batch needs them.

    Slicing gives another view; :meth:`read` copies the rows out as a float32 tensor. An
    :class:`~affectflow.training.sequences.Example` holds one in place of a tensor.
    """

    __slots__ = ("_array", "_rows")

    def __init__(self, array: np.ndarray, rows: range | np.ndarray) -> None:
        self._array, self._rows = array, rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self._rows), int(self._array.shape[1])

    def __getitem__(self, key: slice | np.ndarray) -> TrackView:
        # a range slices to a range (rows read as one block); an index array needs an array of rows
        rows = self._rows[key] if isinstance(self._rows, range) and isinstance(key, slice) \
            else np.asarray(self._rows)[key]
        return TrackView(self._array, rows)

    def read(self) -> torch.Tensor:
        """The rows as a (T, D) float32 tensor of their own (a copy: the store stays as it is)."""
        rows = self._rows
        if isinstance(rows, range) and rows.step == 1:
            return torch.from_numpy(np.array(self._array[rows.start : rows.stop], np.float32))
        return torch.from_numpy(np.asarray(self._array[np.asarray(rows, np.int64)], np.float32))


def as_tensor(x) -> torch.Tensor:
    """A sequence as a tensor: a lazy input (a :class:`TrackView`, or any object with ``read()``,
    e.g. :mod:`affectflow.training.clip_inputs`) read, a tensor as it is, an array converted."""
    if hasattr(x, "read"):
        return x.read()
    return torch.as_tensor(x)
