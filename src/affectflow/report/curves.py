"""Learning curves of a run: training loss and the monitored value per epoch, one colour per fold.

:func:`write_learning_curves` reads the folds' ``metrics.json`` (:func:`read_history`), draws
the curves (:func:`learning_curves_figure`) and writes their numbers beside the figure
(:func:`history_table`: one row per fold and epoch). A run that monitors a validation metric
(its ``monitor``, see :mod:`affectflow.training.monitor`) gets a second panel with that metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from affectflow.report.plots import epoch_curve, new_figure, save_svg, save_table, series_colours

__all__ = ["history_table", "learning_curves_figure", "monitor_label", "read_history", "write_learning_curves"]

NO_VALIDATION = " (= train: no validation split)"


def read_history(path: str | os.PathLike) -> dict:
    """A fold's ``metrics.json``: ``train_loss`` and ``monitored`` per epoch (NaN: not measured), the
    kept epoch, and the run's ``monitor`` (``{metric, split, ...}``; None: the loss as before)."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("train_loss"), list):
        raise ValueError(f"{path}: no 'train_loss' list (per-epoch history of a train fold expected)")
    train = [_number(v) for v in metrics["train_loss"]]
    monitored = [_number(v) for v in metrics.get("monitored") or []]
    monitor = metrics.get("monitor") if isinstance(metrics.get("monitor"), dict) else None
    return {"train_loss": train, "monitored": monitored, "best_epoch": metrics.get("best_epoch"),
            "fold": metrics.get("fold"), "monitor": monitor}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _fold(history: Mapping, index: int):
    """The fold number ``metrics.json`` gives, else the history's position."""
    return index if history.get("fold") is None else history["fold"]


def _kept_epoch(history: Mapping) -> int | None:
    """The 0-based epoch whose weights were kept, if it has a monitored value."""
    best = history.get("best_epoch")
    if isinstance(best, int) and 0 <= best < len(history["monitored"]) and np.isfinite(history["monitored"][best]):
        return best
    return None


def _monitors_training(history: Mapping) -> bool:
    """Whether the monitored loss is the training loss again (the fold had no validation split)."""
    train, monitored = history["train_loss"], history["monitored"]
    if history.get("monitor"):
        return False
    return len(monitored) == len(train) and bool(np.allclose(monitored, train, equal_nan=True))


def _monitored_metric(history: Mapping) -> str | None:
    """The validation metric the fold monitored (pearson, ccc, f1); None when it monitored a loss."""
    monitor = history.get("monitor") or {}
    metric = monitor.get("metric")
    return None if metric in (None, "loss") else str(metric)


def monitor_label(history: Mapping) -> str:
    """What the fold monitored, in words: ``"pearson, official validation split"``, ``"loss, inner
    validation split"``; empty for a fold without a ``monitor``."""
    monitor = history.get("monitor") or {}
    if not monitor:
        return ""
    return f"{monitor.get('metric', '?')}, {monitor.get('split', '?')} validation split"


def history_table(histories: Sequence[Mapping]) -> pd.DataFrame:
    """One row per fold and epoch (1-based): ``fold, epoch, train_loss, monitored, kept``, and
    ``monitor`` (:func:`monitor_label`) when a fold had one.

    ``kept`` marks the epoch whose weights were kept; a value not measured is NaN. ``monitored`` is
    in the monitored value's own units (a loss, or the metric the ``monitor`` column names).
    """
    columns = ["fold", "epoch", "train_loss", "monitored", "kept"]
    with_monitor = any(history.get("monitor") for history in histories)
    rows = []
    for i, history in enumerate(histories):
        train, monitored = history["train_loss"], history["monitored"]
        kept = _kept_epoch(history)
        for epoch in range(max(len(train), len(monitored))):
            rows.append({"fold": _fold(history, i),
                         "epoch": epoch + 1,
                         "train_loss": train[epoch] if epoch < len(train) else float("nan"),
                         "monitored": monitored[epoch] if epoch < len(monitored) else float("nan"),
                         "kept": epoch == kept,
                         **({"monitor": monitor_label(history)} if with_monitor else {})})
    return pd.DataFrame(rows, columns=columns + (["monitor"] if with_monitor else []))


def learning_curves_figure(histories: Sequence[Mapping], *, title: str) -> Figure:
    """Training loss (solid) and the monitored value (dashed) per epoch, one colour per fold.

    ``histories`` are :func:`read_history` dicts. Without a ``monitor`` the monitored value is the
    validation loss when the fold held out a validation split, else the training loss again (its
    legend entry says so). A fold that monitored a validation metric (pearson, ccc, f1) has it drawn
    in a second panel below the losses, its axis naming the metric and the validation split. A ring
    marks the epoch whose weights were kept (``best_epoch``, 0-based). A missing value breaks the
    line; every measured epoch is a dot, so a lone value stays visible.
    """
    if not histories:
        raise ValueError("no fold histories to plot")
    metric_folds = [_monitored_metric(h) is not None for h in histories]
    fig = new_figure(8.5, 7.0 if any(metric_folds) else 4.2)
    loss_ax = fig.add_subplot(2, 1, 1) if any(metric_folds) else fig.add_subplot()
    metric_ax = fig.add_subplot(2, 1, 2, sharex=loss_ax) if any(metric_folds) else None
    colours = series_colours(len(histories))
    for i, (history, colour) in enumerate(zip(histories, colours, strict=True)):
        fold = _fold(history, i)
        epoch_curve(loss_ax, history["train_loss"], colour=colour, dashed=False, label=f"fold {fold} train")
        ax = metric_ax if metric_folds[i] else loss_ax
        what = f" ({monitor_label(history)})" if history.get("monitor") else ""
        same = NO_VALIDATION if _monitors_training(history) else ""
        epoch_curve(ax, history["monitored"], colour=colour, dashed=True, label=f"fold {fold} monitored{what}{same}")
        kept = _kept_epoch(history)
        if kept is not None:
            ax.plot([kept + 1], [history["monitored"][kept]], linestyle="none", marker="o", markersize=10,
                    markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.5)
    handles, labels = [], []
    for ax in fig.axes:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                          markeredgecolor="black", markeredgewidth=1.5))
    labels.append("kept epoch")
    _style_axis(loss_ax, "loss (mean over the epoch's batches)")
    loss_ax.set_title(title)
    if metric_ax is not None:
        names = sorted({monitor_label(h) for h, m in zip(histories, metric_folds, strict=True) if m})
        _style_axis(metric_ax, f"{'; '.join(names)}\n(higher is better)")
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return fig


def _style_axis(ax, ylabel: str) -> None:
    """Integer epochs on x, a grid behind the curves, the axis labels."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.grid(color="#eeeeee")
    ax.set_axisbelow(True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)


def write_learning_curves(metrics: Sequence[str | os.PathLike], *, svg: str | os.PathLike,
                          tsv: str | os.PathLike, title: str) -> pd.DataFrame:
    """:func:`learning_curves_figure` of the folds' ``metrics.json`` files to ``svg``; the
    :func:`history_table` to ``tsv``. Returns the table."""
    histories = [read_history(p) for p in metrics]
    fig = learning_curves_figure(histories, title=title)
    table = history_table(histories)
    save_table(table, tsv)
    save_svg(fig, svg)
    return table
