"""Figures of the Snakemake report: OOF scores, OOF predictions against truth, learning curves.

Every figure is plain SVG written here (no plotting library needed, like :mod:`affectflow.report.qc`):

- :func:`score_bars_svg`: the per-target out-of-fold score of every run (mean over its folds) and
  every ensemble (its pooled OOF predictions), as grouped bars;
- :func:`oof_svg`: truth against out-of-fold prediction, one panel per target (a scatter for
  continuous targets; for action units, histograms of the predicted probability split by truth);
- :func:`learning_curves_svg`: training loss and monitored loss per epoch, one line per fold.

Scores are computed here from the prediction tables and the truth with
:func:`affectflow.metrics.score_task`, so runs and ensembles are scored the same way whatever
their ``metrics.json`` / ``score.json`` hold. Bars carry ``data-source``, ``data-target`` and
``data-value`` attributes so that tests (and readers of the SVG) can get the numbers back.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.runtime.atomic import atomic_path, write_text_atomic
from affectflow.metrics import score_task
from affectflow.tasks import TaskSpec, key_columns

__all__ = [
    "learning_curves_svg",
    "oof_svg",
    "read_history",
    "read_predictions",
    "read_truth",
    "run_scores",
    "score_bars_svg",
    "score_predictions",
    "score_table",
    "write_learning_curves",
    "write_oof_figure",
    "write_score_figure",
]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
# Ensembles get dark grey so they stand out from the runs.
ENSEMBLE_COLOUR = "#444444"
LABELLED_SPLITS = ("train", "val")


# -- reading ----------------------------------------------------------------------------------


def read_truth(path: str | os.PathLike, spec: TaskSpec) -> pd.DataFrame:
    """The labelled rows of a task: key columns then targets.

    Clip tasks read the manifest (``manifest.tsv``: rows of the train/val splits whose targets
    are all present); per-frame tasks read the frame label table (``frame_labels.csv.gz``:
    ``id, frame, <targets>``, labelled frames only).
    """
    path = Path(path)
    keys, targets = key_columns(spec), list(spec.targets)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: truth table not found")
    if spec.per_frame:
        table = pd.read_csv(path)
    else:
        # Read as the manifest writer wrote it (tab-separated, empty fields for missing labels).
        table = pd.read_csv(path, sep="\t", dtype={"split": str}, keep_default_na=False, na_values=[""])
    missing = [c for c in keys + targets if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} for task {spec.name!r} "
                         f"(expected {keys + targets})")
    if not spec.per_frame and "split" in table.columns:
        table = table[table["split"].isin(LABELLED_SPLITS)]
    values = table[targets].apply(pd.to_numeric, errors="coerce")
    table = table[keys].join(values)[values.notna().all(axis=1)]
    for key in keys:
        table[key] = _integer_column(table[key], path, key)
    return table.reset_index(drop=True)


def read_predictions(paths: str | os.PathLike | Sequence[str | os.PathLike], spec: TaskSpec) -> pd.DataFrame:
    """Prediction tables (``oof.csv``) stacked: key columns then targets (NaN: no prediction)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    keys, targets = key_columns(spec), list(spec.targets)
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        missing = [c for c in keys + targets if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} for task {spec.name!r} "
                             f"(a prediction table has {keys + targets})")
        frame = frame[keys + targets].copy()
        for key in keys:
            frame[key] = _integer_column(frame[key], path, key)
        for target in targets:
            frame[target] = pd.to_numeric(frame[target], errors="coerce")
        frames.append(frame)
    if not frames:
        raise ValueError("no prediction tables given")
    return pd.concat(frames, ignore_index=True)


def _integer_column(column: pd.Series, path, name: str) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        # +2: the header line and 1-based line numbers
        raise ValueError(f"{path}: line {row + 2}: {name} {column.iloc[row]!r} is not an integer")
    return numbers.astype("int64")


def read_history(path: str | os.PathLike) -> dict:
    """A fold's ``metrics.json``: ``train_loss`` and ``monitored`` per epoch (None: not measured)."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("train_loss"), list):
        raise ValueError(f"{path}: no 'train_loss' list (per-epoch history of a train fold expected)")
    train = [_number(v) for v in metrics["train_loss"]]
    monitored = [_number(v) for v in metrics.get("monitored") or []]
    return {"train_loss": train, "monitored": monitored, "best_epoch": metrics.get("best_epoch"),
            "fold": metrics.get("fold")}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


# -- scores -----------------------------------------------------------------------------------


def score_predictions(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> dict:
    """The task's score of predictions on the labelled rows they cover.

    Rows without a prediction (NaN) or without a label are left out. Returns
    ``{"metric", "per_target", "mean", "n"}``; with fewer than 2 scored rows every score is NaN.
    """
    joined = _join(pred, truth, spec)
    targets = list(spec.targets)
    if len(joined) < 2:
        per_target = {t: float("nan") for t in targets}
        return {"metric": spec.metric, "per_target": per_target, "mean": float("nan"), "n": len(joined)}
    score = score_task(spec.metric, joined[[f"{t}_true" for t in targets]].to_numpy(),
                       joined[[f"{t}_pred" for t in targets]].to_numpy(), targets)
    return {**score, "n": len(joined)}


def _join(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    keys, targets = key_columns(spec), list(spec.targets)
    pred = pred.dropna(subset=targets)
    joined = truth[keys + targets].merge(pred[keys + targets], on=keys, suffixes=("_true", "_pred"))
    return joined.sort_values(keys, kind="stable").reset_index(drop=True)


def run_scores(fold_predictions: Sequence[str | os.PathLike], truth: pd.DataFrame, spec: TaskSpec) -> dict:
    """A run's OOF score: per fold, the mean over folds, and pooled over all its OOF rows.

    The fold mean of a target averages the folds where it is defined (a fold with a constant
    prediction has no Pearson correlation); the mean over targets is NaN if any target is.
    """
    folds = [score_predictions(read_predictions(p, spec), truth, spec) for p in fold_predictions]
    per_target = {}
    for target in spec.targets:
        values = [f["per_target"][target] for f in folds if np.isfinite(f["per_target"][target])]
        per_target[target] = float(np.mean(values)) if values else float("nan")
    fold_mean = {"metric": spec.metric, "per_target": per_target,
                 "mean": float(np.mean(list(per_target.values()))), "n": sum(f["n"] for f in folds)}
    pooled = score_predictions(read_predictions(fold_predictions, spec), truth, spec)
    return {"folds": folds, "fold_mean": fold_mean, "pooled": pooled}


def score_table(
    runs: Mapping[str, Sequence[str | os.PathLike]],
    ensembles: Mapping[str, str | os.PathLike],
    truth: pd.DataFrame,
    spec: TaskSpec,
) -> pd.DataFrame:
    """One row per (source, aggregate): runs' ``fold mean`` and ``pooled`` OOF scores, ensembles'
    ``pooled`` OOF score. Columns: source, kind, aggregate, n, metric, <targets>, mean."""
    rows = []

    def row(source, kind, aggregate, score):
        return {"source": source, "kind": kind, "aggregate": aggregate, "n": score["n"],
                "metric": spec.metric, **score["per_target"], "mean": score["mean"]}

    for name, folds in runs.items():
        scores = run_scores([Path(f) for f in folds], truth, spec)
        rows.append(row(name, "run", "fold mean", scores["fold_mean"]))
        rows.append(row(name, "run", "pooled", scores["pooled"]))
    for name, path in ensembles.items():
        rows.append(row(name, "ensemble", "pooled", score_predictions(read_predictions(path, spec), truth, spec)))
    columns = ["source", "kind", "aggregate", "n", "metric", *spec.targets, "mean"]
    return pd.DataFrame(rows, columns=columns)


def bar_values(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`score_table` drawn as bars: runs' fold means and ensembles' pooled scores."""
    chosen = ((table["kind"] == "run") & (table["aggregate"] == "fold mean")) | (
        (table["kind"] == "ensemble") & (table["aggregate"] == "pooled"))
    return table[chosen].reset_index(drop=True)


# -- SVG building blocks ----------------------------------------------------------------------

METRIC_NAMES = {"pearson": "Pearson r", "ccc": "CCC", "f1": "F1"}


def _svg_open(width: float, height: float, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="11">',
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
            f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-size="14">{_esc(title)}</text>']


def _esc(text) -> str:
    return html.escape(str(text))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = start
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


class _Axes:
    """A rectangular plot area mapping data coordinates to SVG pixels."""

    def __init__(self, x: float, y: float, w: float, h: float, xlim, ylim):
        self.x, self.y, self.w, self.h = x, y, w, h
        self.xlim, self.ylim = xlim, ylim

    def px(self, value: float) -> float:
        lo, hi = self.xlim
        return self.x + (value - lo) / (hi - lo) * self.w

    def py(self, value: float) -> float:
        lo, hi = self.ylim
        return self.y + self.h - (value - lo) / (hi - lo) * self.h

    def frame(self, *, xticks=None, yticks=None, xlabel="", ylabel="", title="") -> list[str]:
        parts = [f'<rect x="{self.x:.1f}" y="{self.y:.1f}" width="{self.w:.1f}" height="{self.h:.1f}" '
                 f'fill="none" stroke="#888"/>']
        for tick in yticks or []:
            y = self.py(tick)
            parts.append(f'<line x1="{self.x:.1f}" y1="{y:.1f}" x2="{self.x + self.w:.1f}" y2="{y:.1f}" '
                         f'stroke="#ddd"/>')
            parts.append(f'<text x="{self.x - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
        for tick in xticks or []:
            x = self.px(tick)
            parts.append(f'<text x="{x:.1f}" y="{self.y + self.h + 13:.1f}" text-anchor="middle">{tick:g}</text>')
        if xlabel:
            parts.append(f'<text x="{self.x + self.w / 2:.1f}" y="{self.y + self.h + 28:.1f}" '
                         f'text-anchor="middle">{_esc(xlabel)}</text>')
        if ylabel:
            cx, cy = self.x - 34, self.y + self.h / 2
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="middle" '
                         f'transform="rotate(-90 {cx:.1f} {cy:.1f})">{_esc(ylabel)}</text>')
        if title:
            parts.append(f'<text x="{self.x + self.w / 2:.1f}" y="{self.y - 6:.1f}" text-anchor="middle" '
                         f'font-size="12">{_esc(title)}</text>')
        return parts


def _legend(entries: Sequence[tuple[str, str, str]], x: float, y: float, *, columns: int = 4,
            width: float = 150) -> list[str]:
    """Legend rows of (label, colour, dash) at (x, y), ``columns`` entries a row."""
    parts = []
    for i, (label, colour, dash) in enumerate(entries):
        cx, cy = x + (i % columns) * width, y + (i // columns) * 15
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 18:.1f}" y2="{cy:.1f}" stroke="{colour}" '
                     f'stroke-width="3"{dash_attr}/>')
        parts.append(f'<text x="{cx + 22:.1f}" y="{cy + 4:.1f}">{_esc(label)}</text>')
    return parts


def _colours(sources: Sequence[str], kinds: Sequence[str]) -> dict[str, str]:
    colours, n = {}, 0
    for source, kind in zip(sources, kinds):
        if kind == "ensemble":
            colours[source] = ENSEMBLE_COLOUR
        else:
            colours[source] = PALETTE[n % len(PALETTE)]
            n += 1
    return colours


# -- figures ----------------------------------------------------------------------------------


def score_bars_svg(table: pd.DataFrame, spec: TaskSpec, *, title: str = "") -> str:
    """Grouped bars: one group per target (and the mean), one bar per run / ensemble.

    ``table`` is :func:`score_table`'s output; runs are drawn with their fold-mean score and
    ensembles with their pooled OOF score (:func:`bar_values`). The y range is [-1, 1] for
    correlations, [0, 1] for F1. An undefined score (NaN) is drawn as "n/a", with no bar.
    """
    bars = bar_values(table)
    if bars.empty:
        raise ValueError("no run or ensemble scores to plot")
    groups = [*spec.targets, "mean"]
    sources, kinds = bars["source"].tolist(), bars["kind"].tolist()
    colours = _colours(sources, kinds)
    bar_w = 14 if len(sources) <= 4 else 9
    group_w = len(sources) * bar_w + 18
    left, right, top = 58, 16, 50 + 15 * (len(sources) - 1)
    width = max(520, left + right + group_w * len(groups))
    height = top + 270
    ylim = (0.0, 1.0) if spec.metric == "f1" else (-1.0, 1.0)
    ax = _Axes(left, top, width - left - right, 200, (0, len(groups)), ylim)
    metric = METRIC_NAMES.get(spec.metric, spec.metric)
    parts = _svg_open(width, height, title or f"Out-of-fold {metric} per target")
    parts += _legend([(f"{s} ({'ensemble, pooled' if k == 'ensemble' else 'run, fold mean'})", colours[s], "")
                      for s, k in zip(sources, kinds)], left, 34, columns=1)
    parts += ax.frame(yticks=nice_ticks(*ylim, 5), ylabel=f"OOF {metric}")
    zero = ax.py(0.0)
    parts.append(f'<line x1="{ax.x:.1f}" y1="{zero:.1f}" x2="{ax.x + ax.w:.1f}" y2="{zero:.1f}" stroke="black"/>')
    slot = ax.w / len(groups)
    for g, group in enumerate(groups):
        x0 = ax.x + g * slot + (slot - len(sources) * bar_w) / 2
        for i, (source, value) in enumerate(zip(sources, bars[group].tolist())):
            x = x0 + i * bar_w
            if not np.isfinite(value):
                parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{zero - 3:.1f}" text-anchor="middle" '
                             f'font-size="8" data-source="{_esc(source)}" data-target="{_esc(group)}">n/a</text>')
                continue
            shown = min(max(value, ylim[0]), ylim[1])
            y_top, y_bottom = sorted((ax.py(shown), zero))
            parts.append(f'<rect class="bar" x="{x:.2f}" y="{y_top:.3f}" width="{bar_w - 1:.2f}" '
                         f'height="{y_bottom - y_top:.3f}" fill="{colours[source]}" '
                         f'data-source="{_esc(source)}" data-target="{_esc(group)}" data-value="{value:.6g}">'
                         f'<title>{_esc(source)}, {_esc(group)}: {value:.3f}</title></rect>')
        cx, cy = ax.x + (g + 0.5) * slot, ax.y + ax.h + 12
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                     f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_esc(group)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _sample(joined: pd.DataFrame, max_points: int, seed: int) -> pd.DataFrame:
    if len(joined) <= max_points:
        return joined
    rows = np.sort(np.random.default_rng(seed).choice(len(joined), size=max_points, replace=False))
    return joined.iloc[rows]


def oof_svg(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec, *, title: str,
            max_points: int = 5000, seed: int = 0) -> str:
    """Truth against out-of-fold prediction, one panel per target, with the target's score.

    Continuous targets: a scatter of (truth, prediction) with the identity line, at most
    ``max_points`` points (a seeded random subset; the score uses every row). Action units
    (F1): the share of frames in each predicted-probability bin, for frames whose truth is 0
    and for those whose truth is 1, with the 0.5 threshold marked.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, not {max_points!r}")
    joined = _join(pred, truth, spec)
    score = score_predictions(pred, truth, spec)
    targets = list(spec.targets)
    columns = min(4, len(targets))
    rows = math.ceil(len(targets) / columns)
    panel_w, panel_h = 230, 200
    top = 66 if spec.binary else 50  # room for the legend
    width, height = 20 + columns * panel_w, top + 10 + rows * panel_h
    metric = METRIC_NAMES.get(spec.metric, spec.metric)
    shown = _sample(joined, max_points, seed)
    subtitle = f"{title}: {len(joined)} OOF rows" + (f", {len(shown)} drawn" if len(shown) < len(joined) else "")
    parts = _svg_open(width, height, subtitle)
    if spec.binary:
        parts += _legend([("label 0", PALETTE[1], ""), ("label 1", PALETTE[0], ""), ("threshold 0.5", "black", "3 3")],
                         64, 34, columns=3, width=120)
    if joined.empty:
        parts.append(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">'
                     'no labelled row has a prediction</text>')
    for j, target in enumerate(targets):
        x0, y0 = 20 + (j % columns) * panel_w + 44, top + (j // columns) * panel_h
        value = score["per_target"][target]
        panel_title = f"{target}  {metric} {value:.3f}" if np.isfinite(value) else f"{target}  {metric} n/a"
        if spec.binary:
            parts += _probability_panel(joined, target, x0, y0, panel_title)
        else:
            parts += _scatter_panel(shown, target, spec, x0, y0, panel_title)
    parts.append("</svg>")
    return "\n".join(parts)


def _scatter_panel(points: pd.DataFrame, target: str, spec: TaskSpec, x0: float, y0: float, title: str) -> list[str]:
    t, p = points[f"{target}_true"].to_numpy(float), points[f"{target}_pred"].to_numpy(float)
    low = min([spec.low, *t, *p]) if len(t) else spec.low
    high = max([spec.high, *t, *p]) if len(t) else spec.high
    ax = _Axes(x0, y0, 150, 140, (low, high), (low, high))
    ticks = nice_ticks(low, high, 5)
    parts = ax.frame(xticks=ticks, yticks=ticks, xlabel="truth", ylabel="prediction", title=title)
    parts.append(f'<line x1="{ax.px(low):.1f}" y1="{ax.py(low):.1f}" x2="{ax.px(high):.1f}" y2="{ax.py(high):.1f}" '
                 f'stroke="#999" stroke-dasharray="4 3"/>')
    # Zero-length subpaths with round caps draw dots: ~12 bytes a point instead of ~40 for <circle>.
    dots = "".join(f"M{ax.px(a):.1f} {ax.py(b):.1f}h0" for a, b in zip(t, p))
    # Smaller, fainter dots where many overlap, so that density stays visible.
    size, opacity = (4, 0.5) if len(t) <= 500 else (2.5, 0.25)
    if dots:
        parts.append(f'<path class="points" data-target="{_esc(target)}" data-n="{len(t)}" d="{dots}" '
                     f'stroke="{PALETTE[0]}" stroke-opacity="{opacity}" stroke-width="{size}" '
                     'stroke-linecap="round"/>')
    return parts


def _probability_panel(joined: pd.DataFrame, target: str, x0: float, y0: float, title: str) -> list[str]:
    edges = np.linspace(0.0, 1.0, 11)
    truth, prob = joined[f"{target}_true"].to_numpy(float), joined[f"{target}_pred"].to_numpy(float)
    shares = {}
    for label in (0, 1):
        values = np.clip(prob[truth == label], 0.0, 1.0)
        counts, _ = np.histogram(values, bins=edges)
        shares[label] = counts / max(len(values), 1)
    top = max(0.05, float(max(shares[0].max(), shares[1].max())))
    ax = _Axes(x0, y0, 150, 140, (0.0, 1.0), (0.0, top))
    parts = ax.frame(xticks=[0, 0.5, 1], yticks=nice_ticks(0, top, 3), xlabel="predicted probability",
                     ylabel="share of frames", title=title)
    for label, colour, offset in ((0, PALETTE[1], 0.0), (1, PALETTE[0], 0.05)):
        for b in range(len(edges) - 1):
            x = ax.px(edges[b] + offset)
            y = ax.py(shares[label][b])
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{ax.px(0.05) - ax.px(0):.1f}" '
                         f'height="{ax.py(0) - y:.1f}" fill="{colour}" fill-opacity="0.8"/>')
    parts.append(f'<line x1="{ax.px(0.5):.1f}" y1="{ax.y:.1f}" x2="{ax.px(0.5):.1f}" y2="{ax.y + ax.h:.1f}" '
                 'stroke="black" stroke-dasharray="3 3"/>')
    return parts


def learning_curves_svg(histories: Sequence[Mapping], *, title: str) -> str:
    """Training loss (solid) and monitored loss (dashed) per epoch, one colour per fold.

    ``histories`` are :func:`read_history` dicts. The monitored loss is the validation loss
    when the fold held out a validation split, else the training loss again; a ring marks the
    epoch whose weights were kept (``best_epoch``, 0-based).
    """
    if not histories:
        raise ValueError("no fold histories to plot")
    values = [v for h in histories for v in (*h["train_loss"], *h["monitored"]) if np.isfinite(v)]
    epochs = max(max(len(h["train_loss"]), len(h["monitored"])) for h in histories)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
    width, height = 560, 340
    ax = _Axes(64, 64, width - 84, height - 110, (1, max(epochs, 2)), (low - pad, high + pad))
    parts = _svg_open(width, height, title)
    entries = []
    for i, history in enumerate(histories):
        fold = history.get("fold", i)
        same = len(history["monitored"]) == len(history["train_loss"]) and np.allclose(
            history["monitored"], history["train_loss"], equal_nan=True)
        entries += [(f"fold {fold} train", PALETTE[i % len(PALETTE)], ""),
                    (f"fold {fold} monitored" + (" (= train: no validation split)" if same else ""),
                     PALETTE[i % len(PALETTE)], "5 3")]
    parts += _legend(entries, ax.x, 34, columns=2, width=(width - ax.x) / 2)
    ax.y += 15 * ((len(entries) - 1) // 2)
    ax.h -= 15 * ((len(entries) - 1) // 2)
    xticks = [t for t in nice_ticks(1, max(epochs, 2), 6) if float(t).is_integer()]
    parts += ax.frame(xticks=xticks, yticks=nice_ticks(low - pad, high + pad, 5), xlabel="epoch", ylabel="loss")
    for i, history in enumerate(histories):
        colour = PALETTE[i % len(PALETTE)]
        for key, dash in (("train_loss", ""), ("monitored", ' stroke-dasharray="5 3"')):
            series = history[key]
            segments, current = [], []
            for epoch, value in enumerate(series, start=1):
                if np.isfinite(value):
                    current.append(f"{ax.px(epoch):.1f},{ax.py(value):.1f}")
                elif current:  # a missing value breaks the line rather than bridging the gap
                    segments.append(current)
                    current = []
            segments.append(current)
            for points in segments:
                if len(points) == 1:
                    x, y = points[0].split(",")
                    parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
                elif points:
                    parts.append(f'<polyline class="curve" data-series="{key}" points="{" ".join(points)}" '
                                 f'fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
        best = history.get("best_epoch")
        if isinstance(best, int) and 0 <= best < len(history["monitored"]) and np.isfinite(history["monitored"][best]):
            parts.append(f'<circle cx="{ax.px(best + 1):.1f}" cy="{ax.py(history["monitored"][best]):.1f}" r="4" '
                         f'fill="none" stroke="{colour}" stroke-width="1.5"><title>fold {history.get("fold", i)}: '
                         f'kept epoch {best + 1}</title></circle>')
    parts.append("</svg>")
    return "\n".join(parts)


# -- what the rules call ----------------------------------------------------------------------


def write_score_figure(
    runs: Mapping[str, Sequence[str | os.PathLike]],
    ensembles: Mapping[str, str | os.PathLike],
    truth_path: str | os.PathLike,
    *,
    spec: TaskSpec,
    svg: str | os.PathLike,
    tsv: str | os.PathLike,
) -> pd.DataFrame:
    """Score every run (``runs``: name -> its folds' ``oof.csv``) and ensemble (name -> ``oof.csv``);
    write the table (``tsv``) and the grouped bar chart (``svg``). Returns the table."""
    table = score_table(runs, ensembles, read_truth(truth_path, spec), spec)
    with atomic_path(tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NaN")
    write_text_atomic(svg, score_bars_svg(table, spec))
    return table


def write_oof_figure(
    predictions: str | os.PathLike | Sequence[str | os.PathLike],
    truth_path: str | os.PathLike,
    *,
    spec: TaskSpec,
    svg: str | os.PathLike,
    title: str,
    max_points: int = 5000,
    seed: int = 0,
) -> None:
    """:func:`oof_svg` of the stacked prediction tables ``predictions`` against the truth."""
    pred = read_predictions(predictions, spec)
    write_text_atomic(svg, oof_svg(pred, read_truth(truth_path, spec), spec, title=title,
                                   max_points=max_points, seed=seed))


def write_learning_curves(metrics: Sequence[str | os.PathLike], *, svg: str | os.PathLike, title: str) -> None:
    """:func:`learning_curves_svg` of the folds' ``metrics.json`` files."""
    write_text_atomic(svg, learning_curves_svg([read_history(p) for p in metrics], title=title))
