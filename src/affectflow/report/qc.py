"""Data-quality table and plots of a data set (Hallmen et al. 2024 (002)'s descriptive analysis, automated).

Reads the per-shard QC tables of the media and faces stages and writes:

- ``clips.tsv``: one row per clip (probe facts, statuses, reasons, flags, face-found rate);
- ``summary.tsv``: one row per measure (clip count, duration quantiles, frame rates, face-found
  rate, the count of each QC status and flag);
- the plots named in :data:`QC_PLOTS` (durations, frame rates, face-found rate, QC reasons):
  bar charts drawn with matplotlib (:mod:`affectflow.report.plots`) as SVG, each with a table
  of its bars beside it (``<plot>.tsv``: bin edges or category, and the clip count).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from affectflow.report.plots import bar_chart, new_figure, save_svg, save_table
from affectflow.runtime.atomic import write_text_atomic

__all__ = [
    "QC_PLOTS",
    "clip_table",
    "histogram",
    "qc_figure",
    "qc_plot_tables",
    "read_qc",
    "summary_table",
    "write_qc_report",
]

#: The data-quality plots, by name: the workflow's ``qc_report`` rule writes ``qc/<name>.svg``
#: and ``qc/<name>.tsv`` for each.
QC_PLOTS = ["durations", "frame_rates", "face_rate", "qc_reasons"]

# Clip-duration bins (seconds): short clips in detail, the long tail in a few wide bins.
DURATION_EDGES = [0, 0.5, 1, 2, 5, 10, 20, 60, 300, 1e9]
# Face-found rate bins: the first holds the clips without any face (rate 0).
FACE_RATE_EDGES = [0, 0.001, 0.25, 0.5, 0.75, 0.9, 1.0001]
# Title, x label, y label and orientation of each plot (``horizontal``: categories on the y axis).
PLOT_STYLE = {
    "durations": ("Clip durations", "clip duration (s)", "clips", False),
    "frame_rates": ("Source frame rates", "source frame rate (frames/s, rounded)", "clips", False),
    "face_rate": ("Share of frames with a face, per clip", "share of decoded frames with a face (0-1)", "clips",
                  False),
    "qc_reasons": ("QC statuses and flags (clips)", "clips", "stage: QC status or flag", True),
}


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


# -- plots ----------------------------------------------------------------------------------


def histogram(values: Sequence[float], edges: Sequence[float]) -> tuple[list[str], list[int]]:
    """Counts of ``values`` in the bins ``edges`` (the last bin is closed), with bin labels."""
    counts, _ = np.histogram(np.asarray(values, float), bins=np.asarray(edges, float))
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return labels, counts.tolist()


def _binned(values: Sequence[float], edges: Sequence[float], labels: Mapping[int, str]) -> pd.DataFrame:
    """A histogram as a table: ``bin_low, bin_high, label, clips``; ``labels`` renames bins by index."""
    names, counts = histogram(values, edges)
    for index, name in labels.items():
        names[index] = name
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "label": names, "clips": counts})


def _qc_reasons(clips: pd.DataFrame) -> pd.DataFrame:
    """Clips with each non-ok QC status and each flag, most frequent first: ``label, clips``."""
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
    return pd.DataFrame({"label": [k for k, _ in items], "clips": [v for _, v in items]})


def qc_plot_tables(clips: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The numbers of each plot of :data:`QC_PLOTS`, by name: one row per bar.

    Histograms (``durations``, ``face_rate``) have ``bin_low, bin_high, label, clips``; the
    others ``label, clips``.
    """
    duration = pd.to_numeric(clips.get("duration_s", pd.Series(dtype=float)), errors="coerce").fillna(0)
    tables = {"durations": _binned(duration.clip(upper=DURATION_EDGES[-1] - 1), DURATION_EDGES,
                                   {len(DURATION_EDGES) - 2: "300+"})}
    fps = pd.to_numeric(clips.get("fps", pd.Series(dtype=float)), errors="coerce").fillna(0).round().astype(int)
    by_fps = sorted(Counter(fps).items())
    tables["frame_rates"] = pd.DataFrame({"label": [str(k) if k else "no video" for k, _ in by_fps],
                                          "clips": [v for _, v in by_fps]})
    rate = pd.to_numeric(clips.get("face_rate", pd.Series(dtype=float)), errors="coerce").dropna()
    tables["face_rate"] = _binned(rate, FACE_RATE_EDGES, {0: "0", len(FACE_RATE_EDGES) - 2: "0.9-1"})
    tables["qc_reasons"] = _qc_reasons(clips)
    return tables


def qc_figure(name: str, table: pd.DataFrame) -> Figure:
    """The bar chart of plot ``name`` (one of :data:`QC_PLOTS`) from its :func:`qc_plot_tables` table."""
    title, xlabel, ylabel, horizontal = PLOT_STYLE[name]
    if horizontal:
        fig = new_figure(7.5, 1.4 + 0.28 * max(len(table), 3))
    else:
        fig = new_figure(max(5.5, 1.5 + 0.55 * len(table)), 3.8)
    ax = fig.add_subplot()
    bar_chart(ax, table["label"].tolist(), table["clips"].tolist(), xlabel=xlabel, ylabel=ylabel,
              horizontal=horizontal)
    ax.set_title(title)
    return fig


def write_qc_report(media_qc: Iterable[str | os.PathLike], faces_qc: Iterable[str | os.PathLike], *,
                    clips_tsv: str | os.PathLike, summary_tsv: str | os.PathLike,
                    plots: Mapping[str, str | os.PathLike],
                    plot_tables: Mapping[str, str | os.PathLike] | None = None) -> pd.DataFrame:
    """Write the clip table, the summary table, the SVG plots named in ``plots`` (name -> path)
    and the tables of their numbers (``plot_tables``: name -> path); return the summary."""
    plot_tables = dict(plot_tables or {})
    unknown = [name for name in [*plots, *plot_tables] if name not in PLOT_STYLE]
    if unknown:
        raise ValueError(f"unknown QC plot {unknown[0]!r}; options: {', '.join(QC_PLOTS)}")
    clips = clip_table(read_qc(media_qc), read_qc(faces_qc))
    summary = summary_table(clips)
    write_text_atomic(clips_tsv, clips.to_csv(sep="\t", index=False))
    write_text_atomic(summary_tsv, summary.to_csv(sep="\t", index=False))
    tables = qc_plot_tables(clips)
    for name, path in plot_tables.items():
        save_table(tables[name], path)
    for name, path in plots.items():
        save_svg(qc_figure(name, tables[name]), path)
    return summary
