"""The faces stage: decode each clip at the configured fps, detect, crop, store per frame."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd

from affectflow.faces.crop import encode_jpeg, square_crop
from affectflow.faces.registry import create_detector
from affectflow.h5store import ShardWriter, iter_clips
from affectflow.video import iter_frame_batches

log = logging.getLogger(__name__)


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
) -> pd.DataFrame:
    """Write one faces shard: per frame crop (JPEG), box, landmarks, score, timestamp, valid flag.

    Frames without a face are kept with ``valid = False`` (policy "drop": later stages skip
    them). A clip that fails to decode gets a QC row and empty arrays; the shard goes on.
    """
    face_detector = create_detector(detector, **detector_params)
    qc_rows = []
    attrs = {"stage": "faces", "detector": detector, "detector_params": detector_params, "fps": fps,
             "crop_size": crop_size, "missing_face_policy": "drop"}
    with ShardWriter(out_path, file_attrs=attrs) as writer:
        for clip_id, _, media in iter_clips(media_shard):
            started = time.perf_counter()
            status, reason = "ok", ""
            crops: list[bytes] = []
            boxes, scores, landmarks, valid = [], [], [], []
            n_frames = 0
            if media["has_video"]:
                try:
                    for frames in iter_frame_batches(
                        media["media"], width=media["width"], height=media["height"], fps=fps,
                        max_side=max_side, batch_size=batch_size,
                    ):
                        for frame, det in zip(frames, face_detector.detect(frames)):
                            n_frames += 1
                            if det is None:
                                crops.append(b"")
                                boxes.append(np.full(4, np.nan, np.float32))
                                landmarks.append(np.full((5, 2), np.nan, np.float32))
                                scores.append(0.0)
                                valid.append(False)
                            else:
                                crops.append(encode_jpeg(square_crop(frame, det.box, size=crop_size)))
                                boxes.append(det.box)
                                landmarks.append(det.landmarks)
                                scores.append(det.score)
                                valid.append(True)
                except RuntimeError as err:
                    log.warning("%s", err)
                    status, reason = "undecodable", str(err)
            else:
                status, reason = "no_video", media.get("qc_reason") or "no video stream"
            if status == "ok" and not any(valid):
                status, reason = "no_face", f"no face in any of {n_frames} frames"
            writer.add_clip(
                clip_id,
                {
                    "crops": crops,
                    "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                    "landmarks": np.asarray(landmarks, np.float32).reshape(-1, 5, 2),
                    "scores": np.asarray(scores, np.float32),
                    "valid": np.asarray(valid, bool),
                    "timestamps": np.arange(n_frames, dtype=np.float64) / fps,
                    "fill": np.asarray(["none" if v else "dropped" for v in valid], dtype="S8"),
                },
                {"qc_status": status, "qc_reason": reason},
            )
            elapsed = time.perf_counter() - started
            log.info("clip %s: %d frames, %d faces, %.1f frames/s", clip_id, n_frames, sum(valid),
                     n_frames / elapsed if elapsed else 0.0)
            qc_rows.append({"id": clip_id, "stage": "faces", "status": status, "reason": reason,
                            "frames": n_frames, "faces": int(sum(valid))})
    return pd.DataFrame(qc_rows)
