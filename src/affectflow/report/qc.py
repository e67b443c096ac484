"""Data-quality table and plots of a data set (paper 002's descriptive analysis, automated).

Reads the per-shard QC tables of the media and faces stages and writes:

- ``clips.tsv``: one row per clip (probe facts, statuses, reasons, flags, face-found rate);
- ``summary.tsv``: one row per measure (clip count, duration quantiles, frame rates, face-found
  rate, the count of each QC status and flag);
- SVG plots: durations, frame rates, face-found rate, QC reasons.

The plots are plain SVG written here (no plotting library needed).
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.runtime.atomic import write_text_atomic


def read_qc(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate per-shard QC tables (tab-separated); ids are read as strings."""
    frames = [pd.read_csv(p, sep="\t", dtype={"id": str}, keep_default_na=False) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"id": pd.Series(dtype=str)})


def clip_table(media_qc: pd.DataFrame, faces_qc: pd.DataFrame) -> pd.DataFrame:
    """One row per clip: media facts and status, faces status and face-found rate."""
    media_cols = ["id", "status", "reason", "flags", "duration_s", "fps", "width", "height", "rotation",
                  "has_video", "has_audio", "audio_s"]
    media = media_qc[[c for c in media_cols if c in media_qc]].rename(
        columns={"status": "media_status", "reason": "media_reason", "flags": "media_flags"})
    face_cols = ["id", "status", "reason", "flags", "frames", "valid", "face_rate", "n_tracks", "detector_used"]
    faces = faces_qc[[c for c in face_cols if c in faces_qc]].rename(
        columns={"status": "faces_status", "reason": "faces_reason", "flags": "faces_flags"})
    table = media.merge(faces, on="id", how="outer") if len(faces.columns) > 1 else media
    return table.sort_values("id", key=lambda s: s.map(_sort_key)).reset_index(drop=True)


def _sort_key(value: str):
    return (0, int(value), "") if str(value).isdigit() else (1, 0, str(value))


def _flag_names(column: pd.Series) -> Counter:
    counts: Counter = Counter()
    for flags in column.fillna(""):
        for flag in str(flags).split("; "):
            if flag:
                counts[flag.split(":")[0]] += 1
    return counts


def summary_table(clips: pd.DataFrame) -> pd.DataFrame:
    """Measures of the whole data set, one per row: ``measure``, ``value``."""
    rows: list[tuple[str, object]] = [("clips", len(clips))]
    duration = pd.to_numeric(clips.get("duration_s", pd.Series(dtype=float)), errors="coerce").dropna()
    duration = duration[duration > 0]
    if len(duration):
        rows += [("duration_total_h", round(duration.sum() / 3600, 3))]
        rows += [(f"duration_{name}_s", round(float(v), 3)) for name, v in
                 [("min", duration.min()), ("median", duration.median()), ("mean", duration.mean()),
                  ("max", duration.max())]]
    fps = pd.to_numeric(clips.get("fps", pd.Series(dtype=float)), errors="coerce")
    for value, count in sorted(Counter(fps[fps > 0].round().astype(int)).items()):
        rows.append((f"fps_{value}_share", round(count / len(clips), 4)))
    if "face_rate" in clips:
        rate = pd.to_numeric(clips["face_rate"], errors="coerce")
        status = clips["faces_status"].astype(str) if "faces_status" in clips else pd.Series("", index=clips.index)
        video = rate[~status.isin(["no_video", "unreadable", "no_streams"])].dropna()
        if len(video):
            rows += [("face_rate_mean", round(float(video.mean()), 4)),
                     ("clips_without_any_face", int((video == 0).sum()))]
    for stage in ("media", "faces"):
        column = f"{stage}_status"
        if column in clips:
            for status, count in sorted(Counter(clips[column].fillna("missing").astype(str)).items()):
                rows.append((f"{stage}_status_{status}", count))
        flags = f"{stage}_flags"
        if flags in clips:
            for flag, count in sorted(_flag_names(clips[flags]).items()):
                rows.append((f"{stage}_flag_{flag}", count))
    # object dtype keeps counts as integers next to the float measures
    return pd.DataFrame({"measure": [m for m, _ in rows], "value": pd.Series([v for _, v in rows], dtype=object)})


# -- SVG plots ------------------------------------------------------------------------------


def svg_bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str = "",
             width: int = 640, height: int = 320) -> str:
    """A vertical bar chart as an SVG document."""
    left, right, top, bottom = 50, 10, 30, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max([float(v) for v in values] + [1e-9])
    n = max(len(values), 1)
    bar_w = plot_w / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
             f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{top_value:g}</text>',
             f'<text x="{left - 5}" y="{top + plot_h}" text-anchor="end">0</text>']
    for i, (label, value) in enumerate(zip(labels, values)):
        h = plot_h * float(value) / top_value
        x = left + i * bar_w
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#4878a8"><title>{html.escape(str(label))}: {value:g}</title></rect>')
        if n <= 30:
            cx, cy = x + bar_w / 2, top + plot_h + 12
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{html.escape(str(label))}</text>')
    if xlabel:
        parts.append(f'<text x="{left + plot_w / 2}" y="{height - 5}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(values: Sequence[float], edges: Sequence[float]) -> tuple[list[str], list[int]]:
    """Counts of ``values`` in the bins ``edges`` (the last bin is closed), with bin labels."""
    counts, _ = np.histogram(np.asarray(values, float), bins=np.asarray(edges, float))
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    return labels, counts.tolist()


def qc_plots(clips: pd.DataFrame) -> dict[str, str]:
    """SVG documents by name: ``durations``, ``frame_rates``, ``face_rate``, ``qc_reasons``."""
    duration = pd.to_numeric(clips.get("duration_s", pd.Series(dtype=float)), errors="coerce").fillna(0)
    edges = [0, 0.5, 1, 2, 5, 10, 20, 60, 300, 1e9]
    labels, counts = histogram(duration.clip(upper=1e9 - 1), edges)
    labels[-1] = "300+"
    plots = {"durations": svg_bars(labels, counts, title="Clip durations", xlabel="seconds")}
    fps = pd.to_numeric(clips.get("fps", pd.Series(dtype=float)), errors="coerce").fillna(0).round().astype(int)
    by_fps = sorted(Counter(fps).items())
    plots["frame_rates"] = svg_bars([str(k) if k else "no video" for k, _ in by_fps], [v for _, v in by_fps],
                                    title="Source frame rates", xlabel="frames/s (rounded)")
    rate = pd.to_numeric(clips.get("face_rate", pd.Series(dtype=float)), errors="coerce").dropna()
    labels, counts = histogram(rate, [0, 0.001, 0.25, 0.5, 0.75, 0.9, 1.0001])
    labels[0], labels[-1] = "0", "0.9-1"
    plots["face_rate"] = svg_bars(labels, counts, title="Share of frames with a face, per clip")
    reasons: Counter = Counter()
    for stage in ("media", "faces"):
        if f"{stage}_status" in clips:
            for status in clips[f"{stage}_status"].fillna("missing").astype(str):
                if status != "ok":
                    reasons[f"{stage}: {status}"] += 1
        if f"{stage}_flags" in clips:
            for flag, count in _flag_names(clips[f"{stage}_flags"]).items():
                reasons[f"{stage}: {flag}"] += count
    items = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])) or [("none", 0)]
    plots["qc_reasons"] = svg_bars([k for k, _ in items], [v for _, v in items],
                                   title="QC statuses and flags (clips)")
    return plots


def write_qc_report(media_qc: Iterable[str | os.PathLike], faces_qc: Iterable[str | os.PathLike], *,
                    clips_tsv: str | os.PathLike, summary_tsv: str | os.PathLike,
                    plots: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Write the clip table, the summary table and the SVG plots named in ``plots``; return the summary."""
    clips = clip_table(read_qc(media_qc), read_qc(faces_qc))
    summary = summary_table(clips)
    write_text_atomic(clips_tsv, clips.to_csv(sep="\t", index=False))
    write_text_atomic(summary_tsv, summary.to_csv(sep="\t", index=False))
    drawn = qc_plots(clips)
    for name, path in plots.items():
        if name not in drawn:
            raise ValueError(f"unknown QC plot {name!r}; options: {', '.join(drawn)}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, drawn[name])
    return summary
