"""What a person gets from predicting a set of videos: per video a table and a timeline plot, a
summary of the set, and one page.

- ``videos/<name>.csv``: clip tasks (EMI, ERI): one row (``video``, ``status``, ``reason``,
  ``frames``, ``face_frames``, then the targets); per-frame tasks (VA, AU): one row per video frame
  (``frame`` from 1, ``time_s`` its start, ``face`` 1 where the faces stage found a face in the
  frame, then the targets);
- ``videos/<name>.svg``: the targets over time, frames without a face shaded
  (:mod:`affectflow.predict.page`);
- ``summary.csv``: one row per video, every video listed: name, file, status, reason, frames,
  face frames, and each target's value (clip tasks) or mean (per-frame tasks);
- ``index.html``: the summary and every plot (:func:`affectflow.predict.page.write_predict_page`).

A video's ``status``: ``ok``; ``partial`` when it was predicted although a stage reported a
problem (no audio: the audio members left out of the ensemble's mean; a face in too few frames);
``no_prediction`` when no member could predict it, the ``reason`` saying why (the media and faces
stages' QC reasons: cannot be decoded, no face in any frame, no audio stream). Nothing is dropped:
a video that cannot be read still has its row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.data import read_manifest
from affectflow.h5store import iter_clips
from affectflow.keys import read_prediction_table
from affectflow.predict.page import write_predict_page, write_timeline_svg
from affectflow.report.qc import clip_table, read_qc
from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import key_columns, task_spec
from affectflow.training.frames import steps_for_frames

__all__ = ["STATUSES", "face_timelines", "video_status", "write_predict_outputs"]

#: a predicted video's status (see the module docstring)
STATUSES = ("ok", "partial", "no_prediction")


#: the faces stage's ``fill`` labels of a frame where the face was found (detected, or tracked
#: between detections on keyframes), not borrowed from another frame by the missing-face policy
FOUND_FILLS = (b"none", b"tracked")


def face_timelines(faces_shards: Iterable[str | os.PathLike]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each clip's ``(timestamps in s, face found)`` over the frames the faces stage kept: found
    where the frame has a crop of its own (:data:`FOUND_FILLS`); a crop the missing-face policy
    filled in (interpolated, nearest: papers 001, 003, 004) is no face found."""
    out = {}
    for shard in faces_shards:
        for clip_id, arrays, _ in iter_clips(shard, names=("timestamps", "valid", "fill")):
            valid = np.asarray(arrays.get("valid", []), bool)
            if "fill" in arrays:
                valid &= np.isin(np.asarray(arrays["fill"]).astype("S12"), FOUND_FILLS)
            out[int(clip_id)] = (np.asarray(arrays.get("timestamps", []), np.float64), valid)
    return out


def video_status(predicted: bool, qc: pd.Series | None) -> tuple[str, str]:
    """``(status, reason)`` of one video from whether it was predicted and its QC row (media and
    faces statuses and reasons, :func:`affectflow.report.qc.clip_table`)."""
    problems = []
    if qc is None:
        problems.append("not processed by the media stage")
    else:
        for stage in ("media", "faces"):
            status, reason = str(qc.get(f"{stage}_status", "") or ""), str(qc.get(f"{stage}_reason", "") or "")
            if status and status != "ok" and reason not in problems:
                problems.append(reason or status)
    if not predicted:
        return "no_prediction", "; ".join(problems) or "no member of the ensemble predicted it"
    return ("partial", "; ".join(problems)) if problems else ("ok", "")


def _clip_rows(table: pd.DataFrame, targets: list[str]) -> dict[int, dict[str, float]]:
    return {int(r["id"]): {t: float(r[t]) for t in targets} for _, r in table.iterrows()}


def write_predict_outputs(predictions_csv: str | os.PathLike, manifest_tsv: str | os.PathLike,
                          media_qc: Iterable[str | os.PathLike], faces_shards: Iterable[str | os.PathLike],
                          faces_qc: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                          summary_csv: str | os.PathLike, page_html: str | os.PathLike, *, task: str,
                          title: str) -> pd.DataFrame:
    """Write the per-video tables and plots under ``out_dir``, the summary and the page (see the
    module docstring) from the ensemble's ``predictions_csv`` of the videos in ``manifest_tsv``.
    Returns the summary table."""
    spec = task_spec(task)
    keys, targets = key_columns(spec), list(spec.targets)
    manifest = read_manifest(manifest_tsv)
    predictions = read_prediction_table(predictions_csv, keys, targets)
    qc = clip_table(read_qc(media_qc), read_qc(faces_qc))
    qc_by_id = {int(i): row for i, row in zip(qc["id"], (r for _, r in qc.iterrows()), strict=True)} if len(qc) else {}
    timelines = face_timelines(faces_shards)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_clip = None if spec.per_frame else _clip_rows(predictions, targets)
    summary, videos = [], []
    for clip in manifest.itertuples(index=False):
        clip_id, name = int(clip.id), str(clip.name)
        times, face = timelines.get(clip_id, (np.zeros(0), np.zeros(0, bool)))
        if spec.per_frame:
            table = _frame_table(predictions[predictions["id"] == clip_id], float(clip.fps), times, face, targets)
            predicted = bool(np.isfinite(table[targets].to_numpy(np.float64)).any())
            means = {t: float(table[t].mean()) if table[t].notna().any() else float("nan") for t in targets}
            values = table[["time_s", *targets]] if predicted else None
        else:
            means = by_clip.get(clip_id, dict.fromkeys(targets, float("nan")))
            predicted = bool(np.isfinite(list(means.values())).any())
            values = means if predicted else None
        status, reason = video_status(predicted, qc_by_id.get(clip_id))
        row = {"video": name, "file": str(clip.media), "status": status, "reason": reason, "frames": len(times),
               "face_frames": int(face.sum()), **means}
        if not spec.per_frame:
            table = pd.DataFrame([{k: row[k] for k in ("video", "status", "reason", "frames", "face_frames")} | means])
        csv, svg = out_dir / f"{name}.csv", out_dir / f"{name}.svg"
        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6f")
        write_timeline_svg(svg, title=name, task=spec.name, times_s=times, face=face, values=values, reason=reason)
        summary.append(row)
        videos.append({**row, "means": means, "csv": csv, "svg": svg})
    summary_table = pd.DataFrame(summary, columns=["video", "file", "status", "reason", "frames", "face_frames",
                                                   *targets])
    with atomic_path(summary_csv) as tmp:
        summary_table.to_csv(tmp, index=False, float_format="%.6f")
    write_predict_page(page_html, title=title, task=spec.name, videos=videos)
    return summary_table


def _frame_table(rows: pd.DataFrame, fps: float, times: np.ndarray, face: np.ndarray,
                 targets: list[str]) -> pd.DataFrame:
    """A per-frame video's table: its predicted frames with their start time and face flag (the
    faces stage's frame that shows the video frame, else the nearest, as prediction reads it)."""
    rows = rows.sort_values("frame", kind="stable")
    frames = rows["frame"].to_numpy(np.int64)
    rate = fps if np.isfinite(fps) and fps > 0 else 0.0
    time_s = (frames - 1) / rate if rate else np.full(len(frames), np.nan)
    if len(times) and rate:
        found = face[steps_for_frames(times, frames, rate)].astype(np.int64)
    else:
        found = np.zeros(len(frames), np.int64)
    return pd.DataFrame({"frame": frames, "time_s": time_s, "face": found,
                         **{t: rows[t].to_numpy(np.float64) for t in targets}})
