"""The features stage: run one backbone over one shard and cache (T, D) per clip in HDF5.

A config entry ``features.<key>`` holds the backbone's parameters plus a few stage keys:
``backbone`` (the registered name, when ``<key>`` is an alias such as ``densenet_fer``), ``timeline``
(``native``: the backbone's own rows and times; ``frames``: resampled onto the faces shard's frame
timestamps, for per-frame tasks), ``mask`` (``upper`` or ``lower``: every crop has that half of the
face blacked out before the backbone sees it, paper 004's data balancing for the AU task; see
:mod:`affectflow.faces.masking`; face-crop backbones only) and the runtime keys ``batch_size``,
``num_workers``, ``device``, which change speed, not results, and so stay out of the signature that
triggers re-runs.

Each clip group holds ``features`` (T, D) float32, ``timestamps`` (T,) and ``mask`` (T,) bool
(True where a row carries a value; aligned rows without a source row are zeros with mask False).
"""

from __future__ import annotations

import logging
import os
import time

import cv2
import numpy as np

from affectflow.faces.crop import decode_jpeg
from affectflow.features.align import align_to_frames
from affectflow.features.registry import create_backbone
from affectflow.features.signature import DEFAULT_TIMELINE, TIMELINES, check_mask, runtime_options
from affectflow.h5store import ShardWriter, iter_clips, open_shard, read_file_attrs, shard_errors
from affectflow.runtime.device import WORKER_TIMEOUT_S, pick_device

log = logging.getLogger(__name__)


def _frame_times(frames_shard) -> dict[str, np.ndarray]:
    return {cid: arrays.get("timestamps", np.zeros(0)) for cid, arrays, _ in iter_clips(frames_shard, ("timestamps",))}


class _CropBatches:
    """Map-style dataset whose items are whole batches of (clip, frame) crops of a faces shard.

    A batch is read with one HDF5 slice per clip it touches and decoded in the worker, so the
    main process only runs the model. Each worker opens the shard itself (h5py handles do not
    survive a fork).
    """

    def __init__(self, path, index: list[tuple[str, int]], batch_size: int, mask: str | None = None) -> None:
        self.path, self.index, self._h5, self.mask = str(path), index, None, mask
        self.batches = [range(i, min(i + batch_size, len(index))) for i in range(0, len(index), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def _clip_crops(self, clip_id: str, frames: list[int]) -> list[np.ndarray]:
        """The decoded (and, with ``mask``, masked) crops of ``frames`` of one clip."""
        group = self._h5["clips"][clip_id]
        crops = group["crops"]
        first, last = min(frames), max(frames)
        if last - first < 2 * len(frames):  # dense (every valid frame): one slice
            blobs = crops[first : last + 1]
            decoded = [decode_jpeg(blobs[f - first].tobytes()) for f in frames]
        else:  # a few frames spread over a long clip (max_frames): read just those
            decoded = [decode_jpeg(crops[f].tobytes()) for f in frames]
        if self.mask is None:
            return decoded
        if "crop_landmarks" not in group:
            raise ValueError(f"{self.path}: clip {clip_id} has no crop_landmarks (a faces shard written "
                             f"before they were stored); re-run the faces stage to use mask={self.mask!r}")
        landmarks = group["crop_landmarks"][first : last + 1]
        return [masked_crop(im, landmarks[f - first], self.mask) for im, f in zip(decoded, frames, strict=True)]

    def __getitem__(self, b: int) -> np.ndarray:
        if self._h5 is None:
            self._h5 = open_shard(self.path)
        items = [self.index[i] for i in self.batches[b]]
        images = []
        start = 0
        while start < len(items):  # runs of frames of one clip: one slice read each
            clip_id = items[start][0]
            stop = start
            while stop < len(items) and items[stop][0] == clip_id:
                stop += 1
            frames = [f for _, f in items[start:stop]]
            with shard_errors(self.path, clip_id):  # damage deep in the file: named, with the rebuild command
                decoded = self._clip_crops(clip_id, frames)
            images.extend(decoded)
            start = stop
        return _stack(images)


def masked_crop(image: np.ndarray, landmarks: np.ndarray, region: str) -> np.ndarray:
    """``image`` with the ``region`` half of the face blacked out (:func:`affectflow.faces.masking.mask_face`).

    A valid crop always has its landmarks (the faces stage aligned it on them); should they be
    missing or degenerate, the aligned template's landmarks stand in: a similarity-aligned crop
    puts the face's points there.
    """
    from affectflow.faces.align import TEMPLATE_112
    from affectflow.faces.masking import mask_face

    try:
        return mask_face(image, landmarks, region=region).image
    except ValueError:
        h, w = image.shape[:2]
        return mask_face(image, TEMPLATE_112 * [w / 112.0, h / 112.0], region=region).image


def _stack(images: list[np.ndarray]) -> np.ndarray:
    # Crops of one shard share a size; a stray one is resized rather than failing the batch.
    size = images[0].shape[:2]
    return np.stack([im if im.shape[:2] == size else cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA)
                     for im in images])


def crop_batches(path, index, *, batch_size: int, num_workers: int, pin_memory: bool = False,
                 mask: str | None = None):
    """Batches of decoded crops (uint8 (N, H, W, 3)) in ``index`` order, decoded in workers
    (with ``mask``: that half of each face blacked out, from the shard's ``crop_landmarks``)."""
    import torch

    dataset = _CropBatches(path, index, batch_size, mask)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
        # (DataLoader gives each worker one torch thread; OpenCV's pool must not be reconfigured in a
        # forked child: cv2.setNumThreads there waits for threads that were not forked, and hangs)
        prefetch_factor=4 if num_workers else None,
        multiprocessing_context="fork" if num_workers else None,
        # A worker that stops answering (a fork-safety deadlock, an OOM-killed worker) fails the
        # job after this many seconds instead of hanging it until the cluster's time limit.
        timeout=WORKER_TIMEOUT_S if num_workers else 0,
    )


def default_workers() -> int:
    """Decoding workers: enough to keep the model fed, leaving cores for its forward."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _crop_clips(backbone, in_shard, *, batch_size: int, num_workers: int, mask: str | None = None):
    """Yield (clip_id, features, timestamps, attrs) for every clip, embedding crops in batches."""
    clips, index = [], []
    for clip_id, arrays, attrs in iter_clips(in_shard, ("valid", "timestamps")):
        valid = arrays.get("valid", np.zeros(0, bool))
        chosen = backbone.select_frames(valid)
        clips.append((clip_id, np.asarray(arrays.get("timestamps", np.zeros(len(valid))))[chosen], attrs))
        index.extend((clip_id, int(f)) for f in chosen)
    pending: list[np.ndarray] = []
    n_pending = 0
    position = 0  # the next clip to emit

    def ready():
        nonlocal n_pending, position, pending
        while position < len(clips) and len(clips[position][1]) <= n_pending:
            clip_id, times, attrs = clips[position]
            rows = np.concatenate(pending) if pending else np.zeros((0, backbone.dim), np.float32)
            head, rest = rows[: len(times)], rows[len(times):]
            pending, n_pending = ([rest] if len(rest) else []), len(rest)
            position += 1
            features = head.reshape(len(times), -1) if len(times) else np.zeros((0, backbone.dim), np.float32)
            yield clip_id, features, times, attrs

    yield from ready()
    if index:
        device = pick_device(getattr(backbone, "device", "auto"))
        for batch in crop_batches(in_shard, index, batch_size=batch_size, num_workers=num_workers,
                                  pin_memory=device.startswith("cuda"), mask=mask):
            pending.append(np.asarray(backbone.embed(batch), np.float32))
            n_pending += len(batch)
            yield from ready()
    if position != len(clips):
        raise RuntimeError(f"{in_shard}: {len(clips) - position} clips left without features")


def build_feature_shard(
    name: str,
    params: dict,
    in_shard: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    timeline: str = DEFAULT_TIMELINE,
    frames_shard: str | os.PathLike | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str = "auto",
    mask: str | None = None,
) -> int:
    """Extract backbone ``name`` for every clip of ``in_shard``; return the number of clips.

    Visual backbones read a faces shard (crops decoded in ``num_workers`` DataLoader workers and
    embedded ``batch_size`` at a time), audio ones a media shard. With ``timeline="frames"`` rows
    are resampled onto the frame timestamps of ``frames_shard`` (a faces shard). Clips with
    nothing to extract (no face, no or too short audio, no file) get a (0, D) array or, on the
    frame timeline, zeros with an all-False mask, and the reason in the ``empty_reason`` attribute;
    never NaN: a non-finite value fails the shard. ``mask`` (``upper`` or ``lower``, face-crop
    backbones only) blacks out that half of every crop first (paper 004's data balancing).
    """
    if timeline not in TIMELINES:
        raise ValueError(f"timeline {timeline!r}; options: {', '.join(TIMELINES)}")
    check_mask("mask", name, mask)
    if timeline == "frames" and frames_shard is None:
        raise ValueError("timeline 'frames' needs frames_shard: the faces shard whose timestamps to align to")
    backbone = create_backbone(name, **params)
    if hasattr(backbone, "device"):
        backbone.device = device
    file_attrs = {"stage": "features", "backbone": name, "modality": backbone.modality, "params": backbone.params,
                  "dim": backbone.dim, "timeline": timeline, **backbone.provenance()}
    if hasattr(backbone, "map_shape"):
        file_attrs["map_shape"] = list(backbone.map_shape)
    if mask is not None:
        file_attrs["mask"] = mask
    frame_times = _frame_times(frames_shard) if timeline == "frames" else {}
    started, n, n_rows = time.perf_counter(), 0, 0
    with ShardWriter(out_path, file_attrs=file_attrs) as writer:
        for clip_id, features, timestamps, attrs, reason in _clip_features(
            backbone, in_shard, batch_size=batch_size or backbone_batch_size(backbone),
            num_workers=default_workers() if num_workers is None else num_workers, mask=mask,
        ):
            features = np.asarray(features, np.float32).reshape(-1, backbone.dim)
            if not np.isfinite(features).all():
                raise ValueError(f"{in_shard}: clip {clip_id}: backbone {name} produced non-finite values")
            mask = np.ones(len(features), bool)
            if timeline == "frames":
                # a row describing a window (ECAPA-TDNN) covers the frames within its half-width
                features, mask = align_to_frames(features, timestamps, frame_times.get(clip_id, np.zeros(0)),
                                                 max_gap_s=getattr(backbone, "frame_gap_s", None))
                timestamps = frame_times.get(clip_id, np.zeros(0))
            if not mask.any() and not reason:
                reason = "no rows"
            writer.add_clip(clip_id, {"features": features, "timestamps": np.asarray(timestamps, np.float64),
                                      "mask": mask},
                            {"qc_status": attrs.get("qc_status", "ok"), "n_rows": len(features),
                             "n_valid": int(mask.sum()), "empty_reason": reason})
            n += 1
            n_rows += len(features)
            log.info("clip %s: %d rows (%d valid)%s", clip_id, len(features), mask.sum(),
                     f": {reason}" if reason else "")
    elapsed = time.perf_counter() - started
    log.info("%d clips, %d rows in %.1f s (%.1f rows/s)", n, n_rows, elapsed, n_rows / max(elapsed, 1e-9))
    return n


def backbone_batch_size(backbone) -> int:
    """The backbone's default frames per forward."""
    return int(getattr(backbone, "batch_size", 64))


def reads(backbone) -> str:
    """What the backbone reads; a backbone without ``reads`` reads what its modality implies."""
    return getattr(backbone, "reads", "crops" if backbone.modality == "visual" else "audio")


def _clip_features(backbone, in_shard, *, batch_size: int, num_workers: int, mask: str | None = None):
    """Yield (clip_id, features, timestamps, attrs, empty reason) for every clip of the input shard."""
    kind = reads(backbone)
    if kind == "crops":
        for clip_id, features, timestamps, attrs in _crop_clips(backbone, in_shard, batch_size=batch_size,
                                                                num_workers=num_workers, mask=mask):
            reason = "" if len(features) else f"no valid face frame ({attrs.get('qc_status', 'ok')})"
            yield clip_id, features, timestamps, attrs, reason
    elif kind == "audio":
        sample_rate = int(read_file_attrs(in_shard)["sample_rate"])
        for clip_id, arrays, attrs in iter_clips(in_shard, ("audio",)):
            audio = np.asarray(arrays.get("audio", np.zeros(0, np.int16)))
            features, timestamps = backbone.extract(audio, sample_rate)
            reason = "" if len(features) else (f"audio of {audio.size / sample_rate:.3f} s is too short"
                                                 if audio.size else f"no audio ({attrs.get('qc_status', 'ok')})")
            yield clip_id, features, timestamps, attrs, reason
    elif kind == "clip":
        for clip_id, arrays, attrs in iter_clips(in_shard, ("timestamps",)):
            features, timestamps = backbone.extract_clip(clip_id, arrays.get("timestamps", np.zeros(0)))
            yield clip_id, features, timestamps, attrs, backbone.missing_reason if not len(features) else ""
    else:
        raise ValueError(f"backbone reads {kind!r}; options: crops, audio, clip")


def write_feature_shard(key: str, entry: dict, signature: dict, source: str | os.PathLike,
                        out_path: str | os.PathLike, *, frames_shard: str | os.PathLike | None = None) -> int:
    """The features job for config entry ``features.<key>``: :func:`build_feature_shard` with the
    entry's ``signature`` (what the output depends on) and its runtime keys (batch size, workers,
    device: speed only, read from the entry so that they trigger no re-run)."""
    return build_feature_shard(
        signature["backbone"], dict(signature["params"]), source, out_path,
        timeline=signature.get("timeline", DEFAULT_TIMELINE),  # feature_signature leaves the default out
        mask=signature.get("mask"),  # Deng et al. 2023 (004): one half of each crop blacked out
        frames_shard=frames_shard,
        **runtime_options(key, entry),
    )
