"""The faces of one clip: detect, choose the main face, fill missing faces, sample, crop.

Per clip:

1. The detection pass (:mod:`affectflow.faces.detection`) decodes the clip at the configured
   fps and detects on its keyframes.
2. If the detector finds no face at all and a ``fallback`` detector is configured (Yu et al.
   2023 (001): dlib, then MTCNN), the fallback runs on the clip.
3. Detections are linked into tracks and the main track kept (``affectflow.faces.tracks``).
4. Frames between keyframes are interpolated (``tracked``), then the missing-face policy runs
   (``affectflow.faces.fill``), then the temporal sampling (``affectflow.faces.sampling``).
5. Each kept valid frame is cropped, aligned on its 5 landmarks (``align="similarity"``) or as
   a square around the box (``align="box"``), and stored as JPEG bytes.

A bad file never raises: the QC status says what happened.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from affectflow.faces.align import align_crop, transform_points
from affectflow.faces.crop import encode_jpeg, square_crop
from affectflow.faces.detection import DetectPass, detect_pass, expected_frames, iter_needed_frames
from affectflow.faces.fill import fill_missing
from affectflow.faces.options import FaceOptions
from affectflow.faces.registry import Detection, FaceDetector
from affectflow.faces.sampling import sample_frames
from affectflow.faces.tracks import TrackChoice, choose_main_track, link_tracks

__all__ = ["ClipFaces", "empty_arrays", "process_clip"]

log = logging.getLogger(__name__)


@dataclass
class ClipFaces:
    """What the stage stores for one clip, and its QC row."""

    arrays: dict
    attrs: dict
    qc: dict


@dataclass
class _MainFace:
    """The main track's detections laid out per decoded frame (NaN / False where it has none)."""

    arrays: dict  # boxes (n, 4), landmarks (n, 5, 2) and landmarks68 (n, 68, 2) when the detector has them
    scores: np.ndarray
    found: np.ndarray
    choice: TrackChoice


def empty_arrays(with68: bool = False) -> dict:
    """The per-frame arrays of a clip with no kept frame."""
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


def _no_video(media: dict, qc: dict) -> ClipFaces:
    """The result of a clip without a video stream (its media QC status kept when it says why)."""
    status = media.get("qc_status") or "no_video"
    status = status if status in ("unreadable", "no_streams", "error") else "no_video"
    qc.update(status=status, reason=media.get("qc_reason") or "no video stream")
    return ClipFaces(empty_arrays(), {"qc_status": qc["status"], "qc_reason": qc["reason"]}, qc)


def _detect(media: dict, detector: FaceDetector, opts: FaceOptions, fallback: FaceDetector | None,
            flags: list[str]) -> tuple[DetectPass, str]:
    """The detection pass, and which detector's it is (``primary`` or ``fallback``)."""
    detected = detect_pass(media, detector, opts)
    if not detected.candidates and fallback is not None and detected.n_frames:
        # Yu et al. 2023 (001): clips where the first detector finds nothing at all go to the fallback.
        detected = detect_pass(media, fallback, opts, frames=detected.frames) if detected.frames is not None \
            else detect_pass(media, fallback, opts)
        flags.append("fallback: the primary detector found no face; the fallback detector ran")
        return detected, "fallback"
    return detected, "primary"


def _record_decode(qc: dict, detected: DetectPass, media: dict, opts: FaceOptions, flags: list[str]) -> None:
    """Decode failures, ffmpeg's warnings and a clip cut short into ``qc`` and ``flags``."""
    n = detected.n_frames
    if detected.status != "ok":
        qc.update(status=detected.status, reason=detected.reason)
    if detected.warnings:
        flags.append("decode_warnings: " + " | ".join(detected.warnings)[-200:])
    expected = expected_frames(media, opts)
    if qc["status"] == "ok" and n and (
        any("partial file" in w for w in detected.warnings) or (expected >= 10 and n < 0.8 * expected)
    ):
        # ffmpeg exits 0 on a file cut short after its header: what it decoded is kept.
        qc.update(status="truncated", reason=f"decoded {n} of about {expected} frames (file cut short?)")


def _main_face(candidates: dict[int, list[Detection]], n: int, media: dict, opts: FaceOptions,
               flags: list[str]) -> _MainFace:
    """Link the detections into tracks and lay out the main one over the ``n`` decoded frames."""
    tracks = link_tracks(candidates, max_gap=max(opts.max_gap, opts.detect_every))
    # Aff-Wild2 tracks "<video>_left" / "<video>_right" share one video: keep that side's person.
    name = str(media.get("name", ""))
    side = "left" if name.endswith("_left") else "right" if name.endswith("_right") else None
    main, choice = choose_main_track(tracks, side=side)
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
    return _MainFace(arrays, scores, found, choice)


def _crops(media: dict, opts: FaceOptions, frames: list[np.ndarray] | None, arrays: dict,
           needed: set[int]) -> tuple[dict[int, bytes], dict[int, np.ndarray]]:
    """JPEG crop and crop-pixel landmarks of each ``needed`` frame that could be cropped."""
    crops_by_frame: dict[int, bytes] = {}
    crop_lm_by_frame: dict[int, np.ndarray] = {}
    for index, frame in iter_needed_frames(media, opts, frames, needed):
        try:
            crop, matrix = _crop(frame, arrays["boxes"][index], arrays["landmarks"][index], opts)
        except ValueError as err:  # degenerate landmarks (all at one point): this frame only
            log.warning("%s: frame %d: no crop: %s", media["media"], index, err)
            continue
        crops_by_frame[index] = encode_jpeg(crop, quality=opts.jpeg_quality)
        crop_lm_by_frame[index] = transform_points(matrix, arrays["landmarks"][index])
    return crops_by_frame, crop_lm_by_frame


def _stored_arrays(indices: np.ndarray, segments: np.ndarray, arrays: dict, valid_kept: np.ndarray,
                   fill: np.ndarray, source: np.ndarray, scores: np.ndarray,
                   crops: tuple[dict[int, bytes], dict[int, np.ndarray]], opts: FaceOptions) -> dict:
    """The per-frame arrays stored for the kept frames ``indices`` (invalid rows: NaN, no crop)."""
    crops_by_frame, crop_lm_by_frame = crops
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
    if "landmarks68" in arrays:
        out["landmarks68"] = arrays["landmarks68"][indices].astype(np.float32).reshape(-1, 68, 2)
    invalid_rows = ~valid_kept
    out["boxes"][invalid_rows] = np.nan
    out["landmarks"][invalid_rows] = np.nan
    return out


def _final_status(qc: dict, n: int, found: np.ndarray, used: str) -> None:
    """No frame, no face, or the frames kept from a truncated clip: the clip's final status."""
    if qc["status"] == "ok" and n == 0:
        qc.update(status="no_frames", reason="the video stream decoded to no frame at the configured fps")
    elif qc["status"] in ("ok", "truncated") and n and not found.any():
        reason = f"no face in any of {n} frames" + (" (primary and fallback detectors)" if used == "fallback" else "")
        qc.update(status="no_face", reason=reason if qc["status"] == "ok" else f"{qc['reason']}; {reason}")
    elif qc["status"] == "truncated":
        qc["reason"] = f"kept the {n} frames decoded before the error: {qc['reason']}"


def _process_clip(media: dict, detector: FaceDetector, opts: FaceOptions, *,
                  fallback: FaceDetector | None) -> ClipFaces:
    """:func:`process_clip` without the OpenCV thread setting."""
    started = time.perf_counter()
    flags = [f for f in str(media.get("qc_flags", "") or "").split("; ") if f]
    qc = {"status": "ok", "reason": "", "frames": 0, "kept": 0, "faces": 0, "valid": 0, "face_rate": 0.0,
          "detector_used": "", "n_tracks": 0, "decode_passes": 0}
    if not media.get("has_video"):
        return _no_video(media, qc)

    detected, used = _detect(media, detector, opts, fallback, flags)
    passes = 1 + (used == "fallback" and detected.frames is None)
    n = detected.n_frames
    qc.update(frames=n, detector_used=used)
    _record_decode(qc, detected, media, opts, flags)
    face = _main_face(detected.candidates, n, media, opts, flags)
    qc["n_tracks"] = face.choice.n_tracks
    arrays, valid, fill, source = fill_missing(
        face.arrays, face.found, policy=opts.missing, max_gap=opts.max_gap, smooth_window=opts.smooth,
        tracked_gap=opts.detect_every - 1,
    )

    indices, segments = sample_frames(n, mode=opts.sampling, num_frames=opts.num_frames,
                                      segment_length=opts.segment_length, stride=opts.stride)
    needed = {int(source[i]) for i in indices[valid[indices]]}
    passes += detected.frames is None and bool(needed)
    crops = _crops(media, opts, detected.frames, arrays, needed)
    # A needed frame that a second decode could not deliver becomes invalid rather than wrong.
    valid_kept = np.array([bool(valid[i]) and int(source[i]) in crops[0] for i in indices], bool)
    out = _stored_arrays(indices, segments, arrays, valid_kept, fill, source, face.scores, crops, opts)

    n_found = int(face.found.sum())
    keyframes = len(range(0, n, opts.detect_every)) + int(n > 1 and (n - 1) % opts.detect_every != 0)
    qc.update(kept=len(indices), faces=n_found, valid=int(valid_kept.sum()), decode_passes=passes,
              face_rate=round(n_found / keyframes, 4) if keyframes else 0.0)
    _final_status(qc, n, face.found, used)
    elapsed = time.perf_counter() - started
    qc["seconds"] = round(elapsed, 3)
    qc["flags"] = "; ".join(flags)
    attrs = {"qc_status": qc["status"], "qc_reason": qc["reason"], "qc_flags": qc["flags"],
             "detector_used": used, "decoded_frames": n, **face.choice.as_attrs()}
    log.info("%s: %d frames, %d with a face, %d tracks, %.1f frames/s", media["media"], n, n_found,
             face.choice.n_tracks, n / elapsed if elapsed else 0.0)
    return ClipFaces(out, attrs, qc)
