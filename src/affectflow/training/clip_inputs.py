"""Raw per-clip inputs for end-to-end fine-tuning: face crops or audio, read when a batch needs them.

A fine-tuning run trains a backbone on the cached face crops (faces shards) or audio (media shards)
rather than on cached features. Its examples hold a :class:`CropClip` or an :class:`AudioClip` as
``Example.x``: like :class:`~affectflow.training.track_store.TrackView`, an object with ``len()``,
slicing and ``read()``, that knows where its clip is and reads nothing until a batch needs it.

:func:`crop_clips` indexes the clips (their ``valid`` flags and crop counts, never the JPEGs) and
samples each clip's frames uniformly over its valid frames (Yu et al. 2023, paper 001: "we
uniformly extract 32 frames from each sample"); :func:`audio_clips` cuts each clip to its first
seconds (Hallmen et al. 2024, paper 002: "cut to a maximum length of 12s").
:func:`affectflow.training.read_ahead.prefetched` reads batches in DataLoader workers, so that JPEG
decoding runs there while the main process trains.

HDF5 handles are opened once per shard and process and kept (h5py handles do not survive a fork:
the cache is keyed by process id, so a worker opens its own); :func:`close_handles` closes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import cv2
import h5py
import numpy as np
import torch

from affectflow.faces.crop import decode_jpeg
from affectflow.features.backbones.torch_image import IMAGENET_MEAN, IMAGENET_STD
from affectflow.h5store import clip_groups, open_shard, read_file_attrs, shard_errors

__all__ = ["AudioClip", "CropClip", "audio_clips", "close_handles", "crop_clips", "crops_tensor", "uniform_frames"]

#: Added to the variance before its square root, as Wav2Vec2FeatureExtractor(do_normalize=True) does.
AUDIO_NORM_EPS = 1e-7

# process id -> {shard path -> open handle}. A forked worker inherits its parent's entries but never
# uses them (nor closes them: they are the parent's); it opens its own under its own id.
_HANDLES: dict[int, dict[str, h5py.File]] = {}


def _handle(path: str) -> h5py.File:
    """This process's open handle of shard ``path`` (opened on first use)."""
    handles = _HANDLES.setdefault(os.getpid(), {})
    if path not in handles:
        handles[path] = open_shard(path)
    return handles[path]


def close_handles() -> None:
    """Close the shard handles this process opened (the next read opens them again)."""
    for h5 in _HANDLES.pop(os.getpid(), {}).values():
        h5.close()


def _rows(n: int, key) -> np.ndarray:
    """The positions ``key`` (a slice, or an integer array/list) selects among ``n`` rows."""
    if isinstance(key, (int, np.integer)):
        raise TypeError("a clip input is indexed with a slice or an index array, not a single index")
    return np.arange(n)[key]


class CropClip:
    """Face crops of frames ``frames`` (rows of its ``crops``) of clip ``clip`` of faces shard ``path``.

    ``read()`` decodes them into a float32 (T, 3, size, size) tensor, normalised per channel with
    ``mean`` and ``std`` (of [0, 1] pixel values); slicing gives another CropClip over those frames.
    ``times`` (seconds, one per frame, or None when not given) follows the frames through slicing.
    """

    __slots__ = ("path", "clip", "frames", "times", "size", "mean", "std")

    def __init__(self, path: str | os.PathLike, clip: str | int, frames: np.ndarray, *, size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 times: np.ndarray | None = None) -> None:
        if int(size) < 1:
            raise ValueError(f"crop size must be >= 1, got {size}")
        self.path, self.clip = os.fspath(path), str(clip)
        self.frames = np.asarray(frames, np.int64).reshape(-1)
        self.times = None if times is None else np.asarray(times, np.float64).reshape(-1)
        if self.times is not None and len(self.times) != len(self.frames):
            raise ValueError(f"{len(self.frames)} frames but {len(self.times)} timestamps")
        self.size = int(size)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (R, G, B), got {self.mean} and {self.std}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.frames), 3, self.size, self.size

    def __getitem__(self, key) -> CropClip:
        rows = _rows(len(self.frames), key)
        return CropClip(self.path, self.clip, self.frames[rows], size=self.size, mean=self.mean, std=self.std,
                        times=None if self.times is None else self.times[rows])

    def __repr__(self) -> str:
        return f"CropClip({self.path!r}, clip {self.clip}, {len(self)} frames, {self.size}px)"

    def images(self) -> list[np.ndarray]:
        """The decoded crops (H, W, 3) uint8 RGB, as stored (not resized or normalised)."""
        if not len(self.frames):
            return []
        with shard_errors(self.path, self.clip):
            crops = _handle(self.path)["clips"][self.clip]["crops"]
            wanted = np.unique(self.frames)
            if wanted[0] < 0 or wanted[-1] >= len(crops):
                raise ValueError(f"{self.path}: clip {self.clip} has {len(crops)} crops; frames "
                                 f"{wanted[(wanted < 0) | (wanted >= len(crops))].tolist()} are out of range")
            first, last = int(wanted[0]), int(wanted[-1])
            if last - first < 2 * len(wanted):  # dense (every valid frame): one slice read
                blobs = crops[first : last + 1]
                by_frame = {int(f): blobs[f - first] for f in wanted}
            else:  # a few frames spread over a long clip: read just those
                by_frame = {int(f): crops[int(f)] for f in wanted}
        return [self._decode(by_frame[int(f)], int(f)) for f in self.frames]

    def _decode(self, blob: np.ndarray, frame: int) -> np.ndarray:
        if len(blob) == 0:
            raise ValueError(f"{self.path}: clip {self.clip} frame {frame} has no crop (an invalid frame)")
        try:
            return decode_jpeg(blob.tobytes())
        except cv2.error as err:  # imdecode gives None for bytes that are not a JPEG; cvtColor then fails
            raise ValueError(f"{self.path}: clip {self.clip} frame {frame}: the crop is not a readable "
                             f"JPEG ({len(blob)} bytes); re-run the faces stage") from err

    def read(self) -> torch.Tensor:
        """The crops as a float32 (T, 3, size, size) tensor: :func:`crops_tensor` of :meth:`images`."""
        return crops_tensor(self.images(), size=self.size, mean=self.mean, std=self.std)


def crops_tensor(images: Sequence[np.ndarray], *, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(H, W, 3) uint8 RGB crops as a float32 (N, 3, size, size) tensor: resized (bilinear,
    antialiased) when their size differs, scaled to [0, 1] and normalised with ``mean`` and ``std``;
    what a fine-tuned encoder reads, in training and when its features are dumped."""
    if not len(images):
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    # crops of one shard share a size (one batch); a stray one is resized on its own
    groups = [images] if len({im.shape for im in images}) == 1 else [[im] for im in images]
    parts = []
    for group in groups:
        x = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (size, size):
            # as TorchImageBackbone.embed resizes: the fine-tuned backbone sees what the cached one saw
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)
        parts.append(x)
    x = parts[0] if len(parts) == 1 else torch.cat(parts)
    mean = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def uniform_frames(valid: np.ndarray, frames: int) -> np.ndarray:
    """Rows of ``frames`` frames sampled uniformly over the valid ones (all of them when there are no
    more, or ``frames`` is 0): ``np.linspace(0, n_valid - 1, frames).round()`` of the valid rows."""
    if frames < 0:
        raise ValueError(f"frames must be >= 0 (0: every valid frame), got {frames}")
    rows = np.flatnonzero(np.asarray(valid, bool))
    if frames == 0 or len(rows) <= frames:
        return rows
    # more valid frames than asked: the positions are > 1 apart, so rounding never repeats a frame
    return rows[np.linspace(0, len(rows) - 1, frames).round().astype(np.int64)]


def crop_clips(faces_shard_paths: Iterable[str | os.PathLike], ids: Iterable[int], *, frames: int, size: int,
               mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict[int, CropClip]:
    """A :class:`CropClip` per clip ``ids`` of the faces shards, of ``frames`` frames sampled uniformly
    over its valid frames (:func:`uniform_frames`; 0: all), with their timestamps as ``times``.

    Reads each clip's ``valid``, ``timestamps`` and number of crops, never the JPEGs. A clip with no
    valid frame, or in no shard, is left out (the caller treats it as one without features). A clip
    in two shards, or whose arrays differ in length, fails naming the shard(s) and the clip."""
    wanted = {int(i) for i in ids}
    found: dict[int, CropClip] = {}
    for path in faces_shard_paths:
        path = os.fspath(path)
        for name, group in clip_groups(path, wanted):
            with shard_errors(path, name):
                n_crops = group["crops"].shape[0]
                valid = np.asarray(group["valid"][()], bool)
                times = np.asarray(group["timestamps"][()], np.float64)
            if not len(valid) == len(times) == n_crops:
                raise ValueError(f"{path}: clip {name} has {n_crops} crops, {len(valid)} valid flags and "
                                 f"{len(times)} timestamps; rebuild the shard")
            if int(name) in found:
                raise ValueError(f"clip {name} is in two faces shards: {found[int(name)].path} and {path}")
            rows = uniform_frames(valid, frames)
            if len(rows):
                found[int(name)] = CropClip(path, name, rows, size=size, mean=mean, std=std, times=times[rows])
    return found


class AudioClip:
    """Samples ``start:stop`` of clip ``clip``'s ``audio`` (int16) in media shard ``path``.

    ``read()`` gives them as a float32 (S,) tensor (int16 / 32768), normalised (``normalize``) to zero
    mean and unit variance over the window the clip was cut to, as Wav2Vec2FeatureExtractor
    (do_normalize=True) normalises a whole input. A slice keeps the window's statistics, so the
    samples it reads are those of the whole window's read at the same places.
    """

    __slots__ = ("path", "clip", "start", "stop", "normalize", "_window")

    def __init__(self, path: str | os.PathLike, clip: str | int, start: int, stop: int, *,
                 normalize: bool = True, _window: list | None = None) -> None:
        if not 0 <= int(start) <= int(stop):
            raise ValueError(f"audio window {start}:{stop} (need 0 <= start <= stop)")
        self.path, self.clip, self.start, self.stop = os.fspath(path), str(clip), int(start), int(stop)
        self.normalize = bool(normalize)
        # [start, stop, mean, var] of the window the statistics are over; shared by reference with
        # the slices, so that the window is read for them once per process
        self._window = [self.start, self.stop, None, None] if _window is None else _window

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, key) -> AudioClip:
        if not isinstance(key, slice):
            raise TypeError(f"an audio clip is sliced (x[a:b]), not indexed with {type(key).__name__}")
        first, last, step = key.indices(len(self))
        if step != 1:
            raise ValueError("an audio clip is sliced to contiguous samples (a slice with step 1)")
        start = self.start + first
        return AudioClip(self.path, self.clip, start, start + max(0, last - first), normalize=self.normalize,
                         _window=self._window)

    def __repr__(self) -> str:
        return f"AudioClip({self.path!r}, clip {self.clip}, samples {self.start}:{self.stop})"

    def _samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` as float32 in [-1, 1)."""
        with shard_errors(self.path, self.clip):
            audio = _handle(self.path)["clips"][self.clip]["audio"]
            if stop > len(audio):
                raise ValueError(f"{self.path}: clip {self.clip} has {len(audio)} audio samples, not {stop}")
            return audio[start:stop].astype(np.float32) / np.float32(32768.0)

    def window_stats(self) -> tuple[np.float32, np.float32]:
        """The mean and variance of the window the clip was cut to (read once, then kept)."""
        window = self._window
        if window[2] is None:
            y = self._samples(window[0], window[1])
            # float32, as Wav2Vec2FeatureExtractor and the speech backbones' extract() compute them
            window[2], window[3] = (y.mean(), y.var()) if len(y) else (np.float32(0), np.float32(0))
        return window[2], window[3]

    def read(self) -> torch.Tensor:
        """The samples as a float32 (S,) tensor (normalised over the window with ``normalize``)."""
        y = self._samples(self.start, self.stop)
        if self.normalize:
            mean, var = self.window_stats()
            y = (y - mean) / np.sqrt(var + np.float32(AUDIO_NORM_EPS))
        return torch.from_numpy(np.ascontiguousarray(y, np.float32))


def audio_clips(media_shard_paths: Iterable[str | os.PathLike], ids: Iterable[int], *, window_s: float,
                sample_rate: int = 16000, normalize: bool = True) -> dict[int, AudioClip]:
    """An :class:`AudioClip` per clip ``ids`` of the media shards: its first ``window_s`` seconds
    (0: all of it). Reads the shards' attributes and each clip's audio length, never the audio.

    A shard whose ``sample_rate`` is not ``sample_rate`` fails naming it; a clip with no audio, or in
    no shard, is left out; one that is not int16, or in two shards, fails naming shard and clip."""
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0 (0: whole clips), got {window_s}")
    wanted = {int(i) for i in ids}
    found: dict[int, AudioClip] = {}
    for path in media_shard_paths:
        path = os.fspath(path)
        rate = read_file_attrs(path).get("sample_rate")
        if rate is None or int(rate) != int(sample_rate):
            raise ValueError(f"{path}: audio at {rate} Hz, not the {sample_rate} Hz this run needs "
                             "(rebuild the media shards with that sample_rate)")
        limit = int(round(window_s * sample_rate)) if window_s else None
        for name, group in clip_groups(path, wanted):
            with shard_errors(path, name):
                audio = group["audio"]
                n, dtype = audio.shape[0], audio.dtype
            if dtype != np.int16:
                raise ValueError(f"{path}: clip {name} audio is {dtype}, not int16; rebuild the shard")
            if int(name) in found:
                raise ValueError(f"clip {name} is in two media shards: {found[int(name)].path} and {path}")
            stop = n if limit is None else min(n, limit)
            if stop:
                found[int(name)] = AudioClip(path, name, 0, stop, normalize=normalize)
    return found
