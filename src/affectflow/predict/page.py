"""What a user sees of a prediction run: one timeline plot per video and one HTML page per set.

- :func:`timeline_figure` / :func:`write_timeline_svg`: a video's predicted targets over time
  (per-frame tasks: VA as lines, action units as a heatmap) or as bars (clip tasks, with a strip
  of face presence below), frames without a face shaded grey; without a prediction, the reason.
- :func:`write_predict_page`: a self-contained HTML page: a summary table (one row per video)
  and every video's plot inline, so that the page still works when moved on its own.

Drawing follows :mod:`affectflow.report.plots` (object API, deterministic SVG).
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from affectflow.report.plots import PALETTE, RASTER_POINTS, new_figure, save_svg, series_colours
from affectflow.runtime.atomic import write_text_atomic
from affectflow.tasks import task_spec

__all__ = ["MAX_LINE_POINTS", "no_face_spans", "timeline_figure", "write_predict_page", "write_timeline_svg"]

# A 20-minute video at 30 fps has 36,000 frames: far more than a plot ~1000 pixels wide can show.
# Lines are reduced to at most this many points (min and max of each time bin, so peaks stay
# visible) and the AU heatmap to this many time columns; the SVG stays small and quick to open.
MAX_LINE_POINTS = 2000
NO_FACE_COLOUR = "#bbbbbb"
NO_FACE_LABEL = "no face"


def no_face_spans(times_s: np.ndarray, face: np.ndarray) -> list[tuple[float, float]]:
    """Runs of consecutive frames without a face as (start, end) seconds; frame ``k`` lasts until
    frame ``k + 1`` starts (the last one for the median frame step)."""
    times = np.asarray(times_s, dtype=float)
    missing = ~np.asarray(face, dtype=bool)
    if not missing.any():
        return []
    ends = np.append(times[1:], _end(times))
    change = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(change == 1), np.flatnonzero(change == -1)  # stops: exclusive
    return list(zip(times[starts].tolist(), ends[stops - 1].tolist(), strict=True))


def _end(times: np.ndarray) -> float:
    """When the last frame ends: its start plus the median frame step (1/25 s for a lone frame)."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    return float(times[-1]) + step if len(times) else 0.0


def _shade_no_face(ax: Axes, spans: list[tuple[float, float]], *, alpha: float, zorder: float) -> None:
    """Grey full-height bands over ``spans``: one collection (not one patch per frame), rasterised
    when a flickering detector gives thousands of spans."""
    if not spans:
        return
    verts = [[(s, 0.0), (e, 0.0), (e, 1.0), (s, 1.0)] for s, e in spans]
    bands = PolyCollection(verts, facecolors=NO_FACE_COLOUR, edgecolors="none", alpha=alpha, zorder=zorder,
                           transform=ax.get_xaxis_transform(), label=NO_FACE_LABEL,
                           rasterized=len(spans) > RASTER_POINTS)
    ax.add_collection(bands, autolim=False)  # x in data, y in axes units: the y limits stay the data's


def _min_max_points(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`MAX_LINE_POINTS` points of a line: each bin's minimum and maximum, in time
    order; a bin without any value stays NaN, so that the gap still breaks the line."""
    if len(values) <= MAX_LINE_POINTS:
        return times, values
    size = math.ceil(len(values) / (MAX_LINE_POINTS // 2))
    pad = (-len(values)) % size
    v = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, size)
    low = np.argmin(np.where(np.isnan(v), np.inf, v), axis=1)  # index 0 of an all-NaN bin: its NaN
    high = np.argmax(np.where(np.isnan(v), -np.inf, v), axis=1)
    index = (np.sort(np.stack([low, high], axis=1), axis=1) + (np.arange(len(v)) * size)[:, None]).ravel()
    return times[index], values[index]


def _time_limits(*arrays: np.ndarray, end: float = 0.0) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] + [np.array([end])])
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low, low + 1.0)


def _no_values(values, targets: Sequence[str]) -> bool:
    if values is None:
        return True
    if isinstance(values, pd.DataFrame):
        present = [t for t in targets if t in values]
        return not present or values[present].isna().all().all()
    return all(not math.isfinite(float(values.get(t, math.nan))) for t in targets)


def timeline_figure(*, title: str, task: str, times_s: np.ndarray, face: np.ndarray,
                    values: pd.DataFrame | Mapping[str, float] | None, reason: str = "") -> Figure:
    """A video's prediction: targets over time (per-frame tasks) or as bars (clip tasks).

    ``times_s``/``face``: the face timeline, one entry per decoded frame (may be empty);
    ``values``: per-frame tasks a table with ``time_s`` and the task's targets, clip tasks a
    mapping target -> value (NaN allowed), or None. Frames without a face are shaded grey
    (legend "no face"). With no value, or no frame, the figure shows ``reason`` instead.
    """
    spec = task_spec(task)
    times = np.asarray(times_s, dtype=float)
    face = np.asarray(face, dtype=bool)
    if len(times) != len(face):
        raise ValueError(f"times_s has {len(times)} entries but face {len(face)}")
    spans, end = no_face_spans(times, face), _end(times)
    if not len(times) or _no_values(values, spec.targets):
        fig = new_figure(8.0, 2.4 if len(times) else 1.6)
        ax = fig.add_subplot(2, 1, 1) if len(times) else fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"No prediction: {reason or 'no predicted value'}", ha="center", va="center",
                fontsize=11, transform=ax.transAxes, parse_math=False)
        if len(times):
            _face_strip(fig.add_subplot(2, 1, 2), times, spans, end)
        fig.suptitle(title, parse_math=False)
        return fig
    if not spec.per_frame:
        return _clip_figure(title, spec, times, spans, end, values)
    frame_times = values["time_s"].to_numpy(float)
    xlim = _time_limits(times, frame_times, end=end)
    fig = new_figure(9.0, 3.2 if not spec.binary else 1.6 + 0.25 * len(spec.targets))
    ax = fig.add_subplot()
    if spec.binary:
        _heatmap(fig, ax, spec.targets, frame_times, values, xlim)
        _shade_no_face(ax, spans, alpha=0.7, zorder=3)  # over the image: the heatmap hides anything below
    else:
        _shade_no_face(ax, spans, alpha=0.5, zorder=0)
        for target, colour in zip(spec.targets, series_colours(len(spec.targets)), strict=True):
            x, y = _min_max_points(frame_times, values[target].to_numpy(float))
            ax.plot(x, y, color=colour, linewidth=1.0, label=target)
        ax.axhline(0.0, color="#999999", linewidth=0.6, zorder=0.5)
        ax.set_ylim(spec.low - 0.05 * (spec.high - spec.low), spec.high + 0.05 * (spec.high - spec.low))
        ax.set_ylabel("predicted value")
        ax.grid(axis="y", color="#eeeeee")
    ax.set_xlim(*xlim)
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, parse_math=False)  # a name or reason may hold '$': not maths
    return fig


def _heatmap(fig: Figure, ax: Axes, targets: Sequence[str], times: np.ndarray, values: pd.DataFrame,
             xlim: tuple[float, float]) -> None:
    """Action units as rows over time: the mean prediction per time bin (at most
    :data:`MAX_LINE_POINTS` bins), drawn as one image; a bin without any prediction is white."""
    bins = max(1, min(MAX_LINE_POINTS, len(times)))
    column = np.clip(((times - xlim[0]) / (xlim[1] - xlim[0]) * bins).astype(int), 0, bins - 1)
    grid = np.full((len(targets), bins), np.nan)
    for row, target in enumerate(targets):
        v = values[target].to_numpy(float)
        ok = np.isfinite(v)
        count = np.bincount(column[ok], minlength=bins)
        total = np.bincount(column[ok], weights=v[ok], minlength=bins)
        grid[row, count > 0] = total[count > 0] / count[count > 0]
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0,
                      extent=(xlim[0], xlim[1], len(targets) - 0.5, -0.5))
    ax.set_yticks(np.arange(len(targets)), list(targets))
    fig.colorbar(image, ax=ax, label="predicted probability", fraction=0.04, pad=0.01)


def _face_strip(ax: Axes, times: np.ndarray, spans: list[tuple[float, float]], end: float) -> None:
    """A thin axis of face presence over time: grey where no face was found."""
    _shade_no_face(ax, spans, alpha=1.0, zorder=1)
    ax.set_xlim(*_time_limits(times, end=end))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("time (s); face presence")
    if spans:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _clip_figure(title: str, spec, times: np.ndarray, spans: list[tuple[float, float]], end: float,
                 values: Mapping[str, float]) -> Figure:
    """Horizontal bars of the clip's values (in the task's range) over a face-presence strip."""
    targets = list(spec.targets)
    numbers = [float(values.get(t, math.nan)) for t in targets]
    fig = new_figure(7.5, 1.6 + 0.3 * len(targets))
    bar_ax, strip_ax = fig.subplots(2, 1, height_ratios=[len(targets), 1.2])
    positions = np.arange(len(targets))
    shown = [v if math.isfinite(v) else 0.0 for v in numbers]  # NaN: no bar, "n/a" written instead
    bars = bar_ax.barh(positions, shown, color=PALETTE[0])
    bar_ax.bar_label(bars, [f"{v:.3f}" if math.isfinite(v) else "n/a" for v in numbers], padding=2, fontsize=8)
    bar_ax.set_yticks(positions, targets)
    bar_ax.invert_yaxis()  # the first target on top
    bar_ax.set_xlim(spec.low, spec.high * 1.1)  # headroom for the labels
    bar_ax.set_xlabel("predicted value")
    bar_ax.grid(axis="x", color="#eeeeee")
    bar_ax.set_title(title, parse_math=False)
    _face_strip(strip_ax, times, spans, end)
    return fig


def write_timeline_svg(path: str | os.PathLike, **kwargs) -> None:
    """:func:`timeline_figure` with ``kwargs``, written to ``path`` as deterministic SVG."""
    save_svg(timeline_figure(**kwargs), path)


def _inline_svg(path: str | os.PathLike, prefix: str) -> str:
    """The ``<svg>`` element of an SVG file, its ids prefixed: several plots on one page share ids."""
    text = Path(path).read_text()
    text = text[text.find("<svg"):]  # drop the XML prolog and doctype, invalid inside HTML
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', text)
    return re.sub(r'(url\(#|href="#)', rf"\1{prefix}", text)


def _number(value, fmt: str) -> str:
    value = float(value) if value is not None else math.nan
    return format(value, fmt) if math.isfinite(value) else ""


def write_predict_page(out_html: str | os.PathLike, *, title: str, task: str, videos: Sequence[Mapping]) -> None:
    """One self-contained HTML page for a set of videos: a summary table, then every video's plot.

    Each item of ``videos`` has ``video, status, reason, frames, face_frames, means`` (target ->
    mean predicted value), ``csv`` and ``svg`` (paths). The SVGs are embedded inline and the csv
    links are relative to the page's folder. A video counts as predicted when any mean is a number.
    """
    spec = task_spec(task)
    folder = Path(out_html).resolve().parent
    e = html.escape
    predicted = sum(any(math.isfinite(float(m)) for m in (v.get("means") or {}).values()) for v in videos)
    head = "".join(f"<th>{e(t)}</th>" for t in ["video", "status", "reason", "frames", "face %",
                                                 *(f"mean {t}" for t in spec.targets), "csv"])
    rows, sections = [], []
    for i, video in enumerate(videos):
        anchor, name = f"video-{i + 1}", str(video["video"])
        frames, faces = int(video.get("frames") or 0), int(video.get("face_frames") or 0)
        means = video.get("means") or {}
        href = quote(Path(os.path.relpath(Path(video["csv"]).resolve(), folder)).as_posix())
        face_share = _number(100 * faces / frames if frames else None, ".1f")
        cells = [f'<a href="#{anchor}">{e(name)}</a>', e(str(video.get("status", ""))),
                 e(str(video.get("reason") or "")), str(frames), face_share,
                 *(_number(means.get(t), ".3f") for t in spec.targets), f'<a href="{e(href)}">csv</a>']
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        reason = f'<p class="reason">{e(str(video["reason"]))}</p>' if video.get("reason") else ""
        sections.append(f'<section id="{anchor}"><h2>{e(name)}</h2>{reason}'
                        f'<div class="plot">{_inline_svg(video["svg"], f"{anchor}-")}</div></section>')
    kind = "per frame" if spec.per_frame else "per clip"
    intro = (f"Task {e(task)} ({e(', '.join(spec.targets))}; {kind}). {len(videos)} videos: {predicted} predicted, "
             f"{len(videos) - predicted} without prediction. Grey in a plot: frames where no face was found.")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}} .plot svg{{max-width:100%;height:auto}}
.reason{{color:#a33}}</style></head>
<body><h1>{e(title)}</h1><p class="intro">{intro}</p>
<table class="summary"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>
{chr(10).join(sections)}
</body></html>
"""
    write_text_atomic(out_html, page)
