"""The faces stage: decode each clip once at the configured fps, detect, choose the main face,
fill missing faces, sample, crop (aligned 112x112) and store per frame.

Per clip:

1. Frames are streamed from ffmpeg (``affectflow.video``) in batches. Every ``detect_every``-th
   frame is a keyframe: it is downscaled to ``detect_side`` and the batch's keyframes go through
   the detector in one call. Frames are kept in memory for cropping while they fit in
   ``frame_buffer_mb``; a longer clip is decoded a second time for the crops instead, so memory
   stays bounded whatever the clip length.
2. If the detector finds no face at all and a ``fallback`` detector is configured (paper 001:
   dlib, then MTCNN), the fallback runs on the clip.
3. Detections are linked into tracks and the main track kept (``affectflow.faces.tracks``).
4. Frames between keyframes are interpolated (``tracked``), then the missing-face policy runs
   (``affectflow.faces.fill``), then the temporal sampling (``affectflow.faces.sampling``).
5. Each kept valid frame is cropped, aligned on its 5 landmarks (``align="similarity"``) or as
   a square around the box (``align="box"``), and stored as JPEG bytes.

One bad clip never fails the shard: it gets a QC row with its status and reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import pandas as pd

from affectflow.faces.align import align_crop, transform_points
from affectflow.faces.crop import encode_jpeg, square_crop
from affectflow.faces.fill import check_policy, fill_missing
from affectflow.faces.registry import Detection, FaceDetector, create_detector
from affectflow.faces.sampling import check_sampling, max_frames, sample_frames
from affectflow.faces.tracks import choose_main_track, link_tracks
from affectflow.h5store import ShardWriter, iter_clips
from affectflow.video import DecodeError, iter_frame_batches, output_size

log = logging.getLogger(__name__)

ALIGN_MODES = ("similarity", "box")


@dataclass(frozen=True)
class FaceOptions:
    """How the faces stage works (the ``faces`` section of the config, minus the detector).

    Build with keywords; bad values fail at once naming the value and the options.
    """

    fps: float = 30.0
    max_side: int = 640
    batch_size: int = 32
    crop_size: int = 112
    align: str = "similarity"
    margin: float = 0.1  # for align="box": box side enlarged by this fraction on each side
    detect_side: int = 0  # detect on frames downscaled to this longest side (0: as decoded)
    detect_every: int = 1  # detect every k-th frame, interpolate the boxes between
    missing: str = "drop"
    max_gap: int = 12
    smooth: int = 0  # moving-average window over valid frames after interpolation (0/1: off)
    sampling: str = "all"
    num_frames: int = 32
    segment_length: int = 150
    stride: int = 150
    max_seconds: float | None = None
    frame_buffer_mb: int = 512
    jpeg_quality: int = 90
    fallback: str | None = None
    fallback_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            raise ValueError(f"unknown align {self.align!r}; options: {', '.join(ALIGN_MODES)}")
        check_policy(self.missing)
        check_sampling(mode=self.sampling, num_frames=self.num_frames, segment_length=self.segment_length,
                       stride=self.stride, max_seconds=self.max_seconds)
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, not {self.detect_every}")
        if self.fps <= 0 or self.batch_size < 1 or self.crop_size < 16:
            raise ValueError(f"need fps > 0, batch_size >= 1, crop_size >= 16; got {self.fps}, "
                             f"{self.batch_size}, {self.crop_size}")


@dataclass
class _DetectPass:
    candidates: dict[int, list[Detection]]
    n_frames: int
    frames: list[np.ndarray] | None  # the decoded batches, when they fit in the buffer
    status: str = "ok"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def _frame_stream(media: dict, opts: FaceOptions, *, warnings: list[str] | None = None):
    return iter_frame_batches(
        media["media"], width=int(media["width"]), height=int(media["height"]), fps=opts.fps,
        max_side=opts.max_side, batch_size=opts.batch_size, rotation=int(media.get("rotation", 0) or 0),
        max_seconds=opts.max_seconds, warnings=warnings,
    )


def _detect_batch(detector: FaceDetector, frames: np.ndarray, *, detect_side: int) -> list[list[Detection]]:
    """Detect on ``frames``, downscaled to ``detect_side`` first when that is smaller."""
    h, w = frames.shape[1:3]
    if detect_side and max(h, w) > detect_side:
        dw, dh = output_size(w, h, max_side=detect_side)
        small = np.stack([cv2.resize(f, (dw, dh), interpolation=cv2.INTER_AREA) for f in frames])
        factor = w / dw
        return [[d.scaled(factor) for d in faces] for faces in detector.detect_all(small)]
    return detector.detect_all(frames)


def _detect_pass(media: dict, detector: FaceDetector, opts: FaceOptions, *,
                 frames: list[np.ndarray] | None = None) -> _DetectPass:
    """Decode (or reuse ``frames``) and detect on the keyframes."""
    result = _DetectPass({}, 0, [] if frames is None else frames)
    budget = opts.frame_buffer_mb * 2**20
    kept_bytes = 0
    started = time.perf_counter()
    last_batch = None
    batches = iter(frames) if frames is not None else _frame_stream(media, opts, warnings=result.warnings)
    try:
        for batch in batches:
            first = result.n_frames
            result.n_frames += len(batch)
            if frames is None and result.frames is not None:
                kept_bytes += batch.nbytes
                if kept_bytes <= budget:
                    result.frames.append(batch)
                else:  # too long to keep: the crops will come from a second decode
                    result.frames = None
            keys = [i for i in range(len(batch)) if (first + i) % opts.detect_every == 0]
            if keys:
                found = _detect_batch(detector, batch[keys], detect_side=opts.detect_side)
                for i, faces in zip(keys, found):
                    if faces:
                        result.candidates[first + i] = faces
            last_batch = batch
            if result.n_frames // 1000 != first // 1000:
                elapsed = time.perf_counter() - started
                log.info("%s: %d frames, %.1f frames/s", media["media"], result.n_frames,
                         result.n_frames / elapsed if elapsed else 0.0)
    except DecodeError as err:
        result.status = "truncated" if err.frames_read else "undecodable"
        result.reason = str(err)
    last = result.n_frames - 1
    if opts.detect_every > 1 and last > 0 and last % opts.detect_every:
        # The last frame is a keyframe too, so the frames after the last regular keyframe are
        # interpolated rather than extrapolated.
        found = _detect_batch(detector, last_batch[-1:], detect_side=opts.detect_side)[0]
        if found:
            result.candidates[last] = found
    return result


def _iter_needed_frames(media: dict, opts: FaceOptions, frames: list[np.ndarray] | None, needed: set[int]):
    """Yield ``(index, frame)`` for the ``needed`` frame indices, from memory or a second decode."""
    if not needed:
        return
    index = 0
    last = max(needed)
    batches = frames if frames is not None else _frame_stream(media, opts)
    try:
        for batch in batches:
            for frame in batch:
                if index in needed:
                    yield index, frame
                index += 1
            if index > last:
                break
    except DecodeError:
        pass  # the first pass already recorded the failure; the frames it got are all we use
    finally:
        if hasattr(batches, "close"):
            batches.close()


def _crop(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, opts: FaceOptions):
    """Crop and the matrix from frame to crop pixels."""
    if opts.align == "similarity":
        return align_crop(frame, landmarks, size=opts.crop_size)
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(max(x2 - x1, y2 - y1) * (1 + 2 * opts.margin), 1e-3)
    scale = opts.crop_size / side
    left, top = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]])
    return square_crop(frame, box, size=opts.crop_size, margin=opts.margin), matrix


def _empty_arrays(with68: bool = False) -> dict:
    arrays = {
        "crops": [],
        "boxes": np.zeros((0, 4), np.float32),
        "landmarks": np.zeros((0, 5, 2), np.float32),
        "crop_landmarks": np.zeros((0, 5, 2), np.float32),
        "scores": np.zeros(0, np.float32),
        "valid": np.zeros(0, bool),
        "timestamps": np.zeros(0, np.float64),
        "frame_index": np.zeros(0, np.int64),
        "source_frame": np.zeros(0, np.int64),
        "fill": np.zeros(0, dtype="S12"),
        "segments": np.zeros((0, 2), np.int64),
    }
    if with68:
        arrays["landmarks68"] = np.zeros((0, 68, 2), np.float32)
    return arrays


def _expected_frames(media: dict, opts: FaceOptions) -> int:
    """Frames a clip should give at ``opts.fps`` from its probed duration (0 when unknown)."""
    duration = float(media.get("duration_s", 0) or 0)
    if opts.max_seconds:
        duration = min(duration, opts.max_seconds)
    return int(round(duration * opts.fps))


@dataclass
class ClipFaces:
    """What the stage stores for one clip, and its QC row."""

    arrays: dict
    attrs: dict
    qc: dict


@contextlib.contextmanager
def _opencv_single_thread():
    """Run OpenCV single-threaded inside the block, restoring its setting after.

    After a torch forward pass its OpenMP workers keep spinning for a while; OpenCV's own
    thread pool then fights them for the cores and a 112x112 warp + JPEG takes 7 ms instead of
    0.3 ms (measured on 2 cores). Our OpenCV calls are tiny, so one thread is the fast choice.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def process_clip(media: dict, detector: FaceDetector, opts: FaceOptions, *,
                 fallback: FaceDetector | None = None) -> ClipFaces:
    """Faces of one clip described by its media-shard attributes ``media`` (path, size, rotation...).

    Never raises for a bad file: the status says what happened (``ok``, ``no_video``,
    ``unreadable``, ``undecodable``, ``truncated``, ``no_frames``, ``no_face``).
    """
    with _opencv_single_thread():
        return _process_clip(media, detector, opts, fallback=fallback)


def _process_clip(media: dict, detector: FaceDetector, opts: FaceOptions, *,
                  fallback: FaceDetector | None) -> ClipFaces:
    started = time.perf_counter()
    flags = [f for f in str(media.get("qc_flags", "") or "").split("; ") if f]
    qc = {"status": "ok", "reason": "", "frames": 0, "kept": 0, "faces": 0, "valid": 0, "face_rate": 0.0,
          "detector_used": "", "n_tracks": 0, "decode_passes": 0}
    if not media.get("has_video"):
        status = media.get("qc_status") or "no_video"
        status = status if status in ("unreadable", "no_streams", "error") else "no_video"
        qc.update(status=status, reason=media.get("qc_reason") or "no video stream")
        return ClipFaces(_empty_arrays(), {"qc_status": qc["status"], "qc_reason": qc["reason"]}, qc)

    detected = _detect_pass(media, detector, opts)
    used = "primary"
    if not detected.candidates and fallback is not None and detected.n_frames:
        # Paper 001: clips where the first detector finds nothing at all go to the fallback.
        detected = _detect_pass(media, fallback, opts, frames=detected.frames) if detected.frames is not None \
            else _detect_pass(media, fallback, opts)
        used = "fallback"
        flags.append("fallback: the primary detector found no face; the fallback detector ran")
    passes = 1 + (used == "fallback" and detected.frames is None)
    n = detected.n_frames
    qc.update(frames=n, detector_used=used)
    if detected.status != "ok":
        qc.update(status=detected.status, reason=detected.reason)
    if detected.warnings:
        flags.append("decode_warnings: " + " | ".join(detected.warnings)[-200:])
    expected = _expected_frames(media, opts)
    if qc["status"] == "ok" and n and (
        any("partial file" in w for w in detected.warnings) or (expected >= 10 and n < 0.8 * expected)
    ):
        # ffmpeg exits 0 on a file cut short after its header: what it decoded is kept.
        qc.update(status="truncated", reason=f"decoded {n} of about {expected} frames (file cut short?)")

    tracks = link_tracks(detected.candidates, max_gap=max(opts.max_gap, opts.detect_every))
    # Aff-Wild2 tracks "<video>_left" / "<video>_right" share one video: keep that side's person.
    name = str(media.get("name", ""))
    side = "left" if name.endswith("_left") else "right" if name.endswith("_right") else None
    main, choice = choose_main_track(tracks, side=side)
    qc["n_tracks"] = choice.n_tracks
    if side and main is not None and choice.runner_up_area < 0.25 * choice.main_area:
        # one person found in a two-person video: the _left and _right tracks get the same face
        flags.append(f"one_person: {side} track kept the only substantial face")
    with68 = main is not None and any(d.landmarks68 is not None for d in main.detections.values())
    boxes = np.full((n, 4), np.nan)
    landmarks = np.full((n, 5, 2), np.nan)
    lm68 = np.full((n, 68, 2), np.nan) if with68 else None
    scores = np.zeros(n)
    found = np.zeros(n, bool)
    for frame, det in (main.detections.items() if main else []):
        boxes[frame], landmarks[frame], scores[frame], found[frame] = det.box, det.landmarks, det.score, True
        if with68 and det.landmarks68 is not None:
            lm68[frame] = det.landmarks68
    arrays = {"boxes": boxes, "landmarks": landmarks}
    if with68:
        arrays["landmarks68"] = lm68
    arrays, valid, fill, source = fill_missing(
        arrays, found, policy=opts.missing, max_gap=opts.max_gap, smooth_window=opts.smooth,
        tracked_gap=opts.detect_every - 1,
    )

    indices, segments = sample_frames(n, mode=opts.sampling, num_frames=opts.num_frames,
                                      segment_length=opts.segment_length, stride=opts.stride)
    kept_valid = indices[valid[indices]]
    needed = {int(source[i]) for i in kept_valid}
    crops_by_frame: dict[int, bytes] = {}
    crop_lm_by_frame: dict[int, np.ndarray] = {}
    passes += detected.frames is None and bool(needed)
    for index, frame in _iter_needed_frames(media, opts, detected.frames, needed):
        try:
            crop, matrix = _crop(frame, arrays["boxes"][index], arrays["landmarks"][index], opts)
        except ValueError as err:  # degenerate landmarks (all at one point): this frame only
            log.warning("%s: frame %d: no crop: %s", media["media"], index, err)
            continue
        crops_by_frame[index] = encode_jpeg(crop, quality=opts.jpeg_quality)
        crop_lm_by_frame[index] = transform_points(matrix, arrays["landmarks"][index])
    # A needed frame that a second decode could not deliver becomes invalid rather than wrong.
    valid_kept = np.array([bool(valid[i]) and int(source[i]) in crops_by_frame for i in indices], bool)
    nan5 = np.full((5, 2), np.nan)
    out = {
        "crops": [crops_by_frame[int(source[i])] if ok else b"" for i, ok in zip(indices, valid_kept)],
        "boxes": arrays["boxes"][indices].astype(np.float32).reshape(-1, 4),
        "landmarks": arrays["landmarks"][indices].astype(np.float32).reshape(-1, 5, 2),
        "crop_landmarks": np.array([crop_lm_by_frame[int(source[i])] if ok else nan5
                                    for i, ok in zip(indices, valid_kept)], np.float32).reshape(-1, 5, 2),
        "scores": np.where(fill[indices] == "none", scores[indices], 0.0).astype(np.float32),
        "valid": valid_kept,
        "timestamps": indices.astype(np.float64) / opts.fps,
        "frame_index": indices,
        "source_frame": np.where(valid_kept, source[indices], -1).astype(np.int64),
        "fill": np.where(valid_kept, fill[indices], "dropped").astype("S12"),
        "segments": segments,
    }
    if with68:
        out["landmarks68"] = arrays["landmarks68"][indices].astype(np.float32).reshape(-1, 68, 2)
    invalid_rows = ~valid_kept
    out["boxes"][invalid_rows] = np.nan
    out["landmarks"][invalid_rows] = np.nan

    n_found = int(found.sum())
    keyframes = len(range(0, n, opts.detect_every)) + int(n > 1 and (n - 1) % opts.detect_every != 0)
    qc.update(kept=len(indices), faces=n_found, valid=int(valid_kept.sum()), decode_passes=passes,
              face_rate=round(n_found / keyframes, 4) if keyframes else 0.0)
    if qc["status"] == "ok" and n == 0:
        qc.update(status="no_frames", reason="the video stream decoded to no frame at the configured fps")
    elif qc["status"] in ("ok", "truncated") and n and not found.any():
        reason = f"no face in any of {n} frames" + (" (primary and fallback detectors)" if used == "fallback" else "")
        qc.update(status="no_face", reason=reason if qc["status"] == "ok" else f"{qc['reason']}; {reason}")
    elif qc["status"] == "truncated":
        qc["reason"] = f"kept the {n} frames decoded before the error: {qc['reason']}"
    elapsed = time.perf_counter() - started
    qc["seconds"] = round(elapsed, 3)
    qc["flags"] = "; ".join(flags)
    attrs = {"qc_status": qc["status"], "qc_reason": qc["reason"], "qc_flags": qc["flags"],
             "detector_used": used, "decoded_frames": n, **choice.as_attrs()}
    log.info("%s: %d frames, %d with a face, %d tracks, %.1f frames/s", media["media"], n, n_found,
             choice.n_tracks, n / elapsed if elapsed else 0.0)
    return ClipFaces(out, attrs, qc)


def build_faces_shard(
    media_shard: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    detector: str,
    detector_params: dict,
    fps: float,
    max_side: int,
    batch_size: int,
    crop_size: int,
    **options,
) -> pd.DataFrame:
    """Write one faces shard; return its QC table (one row per clip).

    Per frame kept: ``crops`` (JPEG bytes, empty when invalid), ``boxes`` (x1, y1, x2, y2),
    ``landmarks`` (5 points, frame pixels), ``crop_landmarks`` (5 points, crop pixels),
    ``landmarks68`` (dlib only), ``scores`` (detector score; 0 when filled), ``timestamps``
    (seconds), ``frame_index`` (at ``fps``), ``valid``, ``fill`` (how a missing face was
    filled), ``source_frame`` (whose face the crop shows) and, per clip, ``segments``.
    ``options`` are the other :class:`FaceOptions` fields.
    """
    opts = FaceOptions(fps=fps, max_side=max_side, batch_size=batch_size, crop_size=crop_size, **options)
    face_detector = create_detector(detector, **detector_params)
    fallback = create_detector(opts.fallback, **opts.fallback_params) if opts.fallback else None
    qc_rows = []
    attrs = {"stage": "faces", "detector": detector, "detector_params": detector_params,
             "missing_face_policy": opts.missing, **{k: v for k, v in asdict(opts).items() if k != "missing"}}
    with ShardWriter(out_path, file_attrs=attrs) as writer:
        for clip_id, _, media in iter_clips(media_shard):
            try:
                result = process_clip(media, face_detector, opts, fallback=fallback)
            except Exception as err:  # noqa: BLE001 - one bad clip must not fail the shard
                log.exception("clip %s: unexpected error", clip_id)
                reason = f"{media.get('media')}: {type(err).__name__}: {err}"
                qc = {"status": "error", "reason": reason, "frames": 0, "kept": 0, "faces": 0, "valid": 0}
                result = ClipFaces(_empty_arrays(), {"qc_status": "error", "qc_reason": reason}, qc)
            writer.add_clip(clip_id, result.arrays, result.attrs)
            qc_rows.append({"id": clip_id, "stage": "faces", **result.qc})
    return pd.DataFrame(qc_rows)
