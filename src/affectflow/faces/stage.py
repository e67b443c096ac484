"""The faces stage: one faces shard from one media shard, one face track per clip.

Each clip goes through :func:`affectflow.faces.clip.process_clip` (decode once at the
configured fps, detect, choose the main face, fill missing faces, sample, crop aligned
112x112 and store per frame). One bad clip never fails the shard: it gets a QC row with its
status and reason.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict

import pandas as pd

from affectflow.faces.clip import ClipFaces, empty_arrays, process_clip
from affectflow.faces.options import FaceOptions
from affectflow.faces.registry import create_detector
from affectflow.h5store import ShardWriter, iter_clips
from affectflow.runtime.atomic import atomic_path

__all__ = ["build_faces_shard"]

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
    **options,
) -> pd.DataFrame:
    """Write one faces shard; return its QC table (one row per clip).

    Per frame kept: ``crops`` (JPEG bytes, empty when invalid), ``boxes`` (x1, y1, x2, y2),
    ``landmarks`` (5 points, frame pixels), ``crop_landmarks`` (5 points, crop pixels),
    ``landmarks68`` (dlib only), ``scores`` (detector score; 0 when filled), ``timestamps``
    (seconds), ``frame_index`` (at ``fps``), ``valid``, ``fill`` (how a missing face was
    filled), ``source_frame`` (whose face the crop shows) and, per clip, ``segments``.
    ``options`` are the other :class:`~affectflow.faces.options.FaceOptions` fields.
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
                result = ClipFaces(empty_arrays(), {"qc_status": "error", "qc_reason": reason}, qc)
            writer.add_clip(clip_id, result.arrays, result.attrs)
            qc_rows.append({"id": clip_id, "stage": "faces", **result.qc})
    return pd.DataFrame(qc_rows)


def write_faces_shard(media_shard: str | os.PathLike, out_path: str | os.PathLike, qc_path: str | os.PathLike,
                      *, detector: str, detector_params: dict, fps: float, max_side: int, batch_size: int,
                      crop_size: int, options: dict) -> pd.DataFrame:
    """The faces job: :func:`build_faces_shard`, and its QC table written (tab-separated,
    atomically) to ``qc_path``. ``options`` are the resolved :class:`FaceOptions` fields
    (:func:`affectflow.config.faces.stage_options`)."""
    qc = build_faces_shard(media_shard, out_path, detector=detector, detector_params=dict(detector_params), fps=fps,
                           max_side=max_side, batch_size=batch_size, crop_size=crop_size, **dict(options))
    with atomic_path(qc_path) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    return qc
