"""The detection pass of the faces stage: decode a clip once, detect on its keyframes.

Frames are streamed from ffmpeg (``affectflow.video``) in batches. Every ``detect_every``-th
frame is a keyframe: it is downscaled to ``detect_side`` and the batch's keyframes go through
the detector in one call. Frames are kept in memory for cropping while they fit in
``frame_buffer_mb``; a longer clip is decoded a second time for the crops instead
(:func:`iter_needed_frames`), so memory stays bounded whatever the clip length.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from affectflow.faces.options import FaceOptions
from affectflow.faces.registry import Detection, FaceDetector
from affectflow.video import DecodeError, iter_frame_batches, output_size

__all__ = ["DetectPass", "detect_batch", "detect_pass", "expected_frames", "frame_stream", "iter_needed_frames"]

log = logging.getLogger(__name__)


@dataclass
class DetectPass:
    """What one decode-and-detect pass over a clip found."""

    candidates: dict[int, list[Detection]]  # keyframe index -> every face found there
    n_frames: int
    frames: list[np.ndarray] | None  # the decoded batches, when they fit in the buffer
    status: str = "ok"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def frame_stream(media: dict, opts: FaceOptions, *, warnings: list[str] | None = None):
    """Batches of RGB frames of the clip ``media`` at ``opts.fps``, scaled to ``opts.max_side``."""
    return iter_frame_batches(
        media["media"], width=int(media["width"]), height=int(media["height"]), fps=opts.fps,
        max_side=opts.max_side, batch_size=opts.batch_size, rotation=int(media.get("rotation", 0) or 0),
        max_seconds=opts.max_seconds, warnings=warnings,
    )


def detect_batch(detector: FaceDetector, frames: np.ndarray, *, detect_side: int) -> list[list[Detection]]:
    """Detect on ``frames``, downscaled to ``detect_side`` first when that is smaller."""
    h, w = frames.shape[1:3]
    if detect_side and max(h, w) > detect_side:
        dw, dh = output_size(w, h, max_side=detect_side)
        small = np.stack([cv2.resize(f, (dw, dh), interpolation=cv2.INTER_AREA) for f in frames])
        factor = w / dw
        return [[d.scaled(factor) for d in faces] for faces in detector.detect_all(small)]
    return detector.detect_all(frames)


def detect_pass(media: dict, detector: FaceDetector, opts: FaceOptions, *,
                frames: list[np.ndarray] | None = None) -> DetectPass:
    """Decode (or reuse ``frames``) and detect on the keyframes."""
    result = DetectPass({}, 0, [] if frames is None else frames)
    budget = opts.frame_buffer_mb * 2**20
    kept_bytes = 0
    started = time.perf_counter()
    last_batch = None
    batches = iter(frames) if frames is not None else frame_stream(media, opts, warnings=result.warnings)
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
                found = detect_batch(detector, batch[keys], detect_side=opts.detect_side)
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
        found = detect_batch(detector, last_batch[-1:], detect_side=opts.detect_side)[0]
        if found:
            result.candidates[last] = found
    return result


def iter_needed_frames(media: dict, opts: FaceOptions, frames: list[np.ndarray] | None, needed: set[int]):
    """Yield ``(index, frame)`` for the ``needed`` frame indices, from memory or a second decode."""
    if not needed:
        return
    index = 0
    last = max(needed)
    batches = frames if frames is not None else frame_stream(media, opts)
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


def expected_frames(media: dict, opts: FaceOptions) -> int:
    """Frames a clip should give at ``opts.fps`` from its probed duration (0 when unknown)."""
    duration = float(media.get("duration_s", 0) or 0)
    if opts.max_seconds:
        duration = min(duration, opts.max_seconds)
    return int(round(duration * opts.fps))
