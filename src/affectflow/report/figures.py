"""Model figures of the Snakemake report: OOF scores and OOF predictions against truth.

Each figure is drawn with matplotlib (:mod:`affectflow.report.plots`) and written as SVG with
a table of its numbers beside it, which is what tests (and readers who want the values) read:

- :func:`write_score_figure`: the per-target out-of-fold score of every run (mean over its
  folds) and every ensemble (its pooled OOF predictions) as grouped bars, one colour per run or
  ensemble; table ``scores.tsv`` (:func:`affectflow.report.scores.score_table`);
- :func:`write_oof_figure`: truth against out-of-fold prediction, one panel per target (a scatter
  for continuous targets; for action units, histograms of the predicted probability split by
  truth); table: the drawn points, or the histogram bins.

Learning curves are in :mod:`affectflow.report.curves`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from affectflow.metrics import AU_THRESHOLD
from affectflow.report.plots import (
    class_histograms,
    grouped_bars,
    new_figure,
    save_svg,
    save_table,
    series_colours,
    truth_scatter,
)
from affectflow.report.scores import bar_values, read_predictions, score_table
from affectflow.scoring import read_truth, score_predictions, scored_cells, scored_rows
from affectflow.tasks import TaskSpec, key_columns, task_spec

__all__ = [
    "METRIC_NAMES",
    "oof_figure",
    "oof_rows",
    "score_bars_figure",
    "write_oof_figure",
    "write_score_figure",
]

log = logging.getLogger(__name__)

METRIC_NAMES = {"pearson": "Pearson r", "ccc": "CCC", "f1": "F1"}
# Action units: predicted-probability bins of the class histograms.
PROBABILITY_EDGES = np.linspace(0.0, 1.0, 11)


def _metric_name(spec: TaskSpec) -> str:
    return METRIC_NAMES.get(spec.metric, spec.metric)


# -- scores -----------------------------------------------------------------------------------


def score_bars_figure(table: pd.DataFrame, spec: TaskSpec, *, title: str = "") -> Figure:
    """Grouped bars: one group per target (and the mean), one bar per run / ensemble.

    ``table`` is :func:`~affectflow.report.scores.score_table`'s output; runs are drawn with their
    fold-mean score and ensembles (hatched) with their pooled OOF score. Every run and ensemble
    has its own colour. The y range is [-1, 1] for correlations, [0, 1] for F1; an undefined
    score (NaN) is drawn as "n/a", with no bar. The bars of the ``i``-th drawn source are
    ``fig.axes[0].containers[i]``, in :func:`~affectflow.report.scores.bar_values` order.
    """
    bars = bar_values(table)
    if bars.empty:
        raise ValueError("no run or ensemble scores to plot")
    groups = [*spec.targets, "mean"]
    kinds = bars["kind"].tolist()
    labels = [f"{s} ({'ensemble, pooled' if k == 'ensemble' else 'run, fold mean'})"
              for s, k in zip(bars["source"], kinds, strict=True)]
    series = [(label, bars.loc[i, groups].to_numpy(float)) for i, label in enumerate(labels)]
    # Wide enough for the bars of every source, up to a page width (AU: 13 groups).
    plot_width = min(max(5.0, 1.0 + len(groups) * (0.3 + 0.13 * len(series))), 13.0)
    fig = new_figure(plot_width + 3.2, 4.6)
    ax = fig.add_subplot()
    ylim = (0.0, 1.0) if spec.metric == "f1" else (-1.0, 1.0)
    grouped_bars(ax, groups, series, series_colours(len(series)),
                 hatches=["//" if k == "ensemble" else "" for k in kinds], ylim=ylim)
    metric = _metric_name(spec)
    ax.set_xlabel(f"target of the {spec.name.upper()} task (mean: over targets)")
    ax.set_ylabel(f"OOF {metric} (higher is better)")
    ax.set_title(title or f"Out-of-fold {metric} per target")
    fig.legend(loc="outside right upper", title="run or ensemble", fontsize=8, title_fontsize=8)
    return fig


def write_score_figure(
    runs: Mapping[str, Sequence[str | os.PathLike]],
    ensembles: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    truth_path: str | os.PathLike,
    *,
    task: str,
    svg: str | os.PathLike,
    tsv: str | os.PathLike,
) -> pd.DataFrame:
    """Score every run (``runs``: name -> its folds' ``oof.csv``) and ensemble (name -> ``oof.csv``,
    or a list of ensembles' ``oof.csv`` named by their directory); write the table (``tsv``) and
    the grouped bar chart (``svg``). Returns the table."""
    spec = task_spec(task)
    table = score_table(runs, ensembles, read_truth(truth_path, spec), spec)
    save_table(table, tsv)
    save_svg(score_bars_figure(table, spec), svg)
    log.info("scores:\n%s", table.to_string(index=False))
    return table


# -- OOF predictions against truth ------------------------------------------------------------


def oof_rows(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """Labelled rows with a prediction: keys, ``<target>_true``, ``<target>_pred``, sorted by keys.

    The rows the scorer scores (:func:`affectflow.scoring.scored_rows`: some target has both a
    label and a prediction).
    """
    rows = scored_rows(pred, truth, spec)
    return rows.sort_values(key_columns(spec), kind="stable").reset_index(drop=True)


def _sample(joined: pd.DataFrame, max_points: int, seed: int) -> pd.DataFrame:
    if len(joined) <= max_points:
        return joined
    rows = np.sort(np.random.default_rng(seed).choice(len(joined), size=max_points, replace=False))
    return joined.iloc[rows]


def _finite(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """The rows where ``target`` has both a label and a prediction (:func:`affectflow.scoring.scored_cells`)."""
    return rows[scored_cells(rows[f"{target}_true"].to_numpy(float), rows[f"{target}_pred"].to_numpy(float))]


def _point_table(shown: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """The drawn points: target, keys, truth, prediction (rows of that target with both)."""
    keys = key_columns(spec)
    frames = [_finite(shown, t)[keys + [f"{t}_true", f"{t}_pred"]]
              .rename(columns={f"{t}_true": "truth", f"{t}_pred": "prediction"}).assign(target=t)
              for t in spec.targets]
    return pd.concat(frames, ignore_index=True)[["target", *keys, "truth", "prediction"]]


def _class_bins(joined: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """Per target and truth label: frames and their share in each predicted-probability bin."""
    rows = []
    for target in spec.targets:
        both = _finite(joined, target)
        truth, prob = both[f"{target}_true"].to_numpy(float), both[f"{target}_pred"].to_numpy(float)
        for label in (0, 1):
            values = np.clip(prob[truth == label], 0.0, 1.0)
            counts, _ = np.histogram(values, bins=PROBABILITY_EDGES)
            for low, high, count in zip(PROBABILITY_EDGES[:-1], PROBABILITY_EDGES[1:], counts, strict=True):
                rows.append({"target": target, "label": label, "bin_low": round(float(low), 6),
                             "bin_high": round(float(high), 6), "frames": int(count),
                             "share": count / max(len(values), 1)})
    return pd.DataFrame(rows, columns=["target", "label", "bin_low", "bin_high", "frames", "share"])


def _panel_title(target: str, metric: str, value: float) -> str:
    return f"{target}: {metric} {value:.3f}" if math.isfinite(value) else f"{target}: {metric} n/a"


def oof_figure(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec, *, title: str,
               max_points: int = 5000, seed: int = 0) -> tuple[Figure, pd.DataFrame]:
    """Truth against out-of-fold prediction, one panel per target titled with the target's score.

    Continuous targets: a scatter of (truth, prediction) with the identity line, at most
    ``max_points`` rows (a seeded random subset; the score uses every row); the table holds the
    drawn points. Action units (F1): the share of frames in each predicted-probability bin, for
    frames whose truth is 0 and for those whose truth is 1, with the F1 threshold
    (:data:`~affectflow.metrics.AU_THRESHOLD`) marked; the table holds the bins. Returns the
    figure and its table.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, not {max_points!r}")
    joined = oof_rows(pred, truth, spec)
    score = score_predictions(pred, truth, spec)
    shown = joined if spec.binary else _sample(joined, max_points, seed)
    table = _class_bins(joined, spec) if spec.binary else _point_table(shown, spec)
    targets, metric = list(spec.targets), _metric_name(spec)
    columns = min(4, len(targets))
    fig = new_figure(0.4 + 2.7 * columns, 0.9 + 2.6 * math.ceil(len(targets) / columns))
    for j, target in enumerate(targets):
        ax = fig.add_subplot(math.ceil(len(targets) / columns), columns, j + 1)
        ax.set_title(_panel_title(target, metric, score["per_target"][target]), fontsize=9)
        if spec.binary:
            part = table[table["target"] == target]
            shares = {label: part.loc[part["label"] == label, "share"].to_numpy(float) for label in (0, 1)}
            class_histograms(ax, PROBABILITY_EDGES, shares, threshold=AU_THRESHOLD)
            ax.set_xlabel("predicted probability", fontsize=8)
            ax.set_ylabel("share of frames", fontsize=8)
        else:
            points = table[table["target"] == target]
            t, p = points["truth"].to_numpy(float), points["prediction"].to_numpy(float)
            # a list, so that a run without out-of-fold rows (fold_scheme mix) still gets its panels
            truth_scatter(ax, t, p, low=min([spec.low, *t, *p]), high=max([spec.high, *t, *p]))
            ax.set_xlabel(f"true {target}", fontsize=8)
            ax.set_ylabel(f"predicted {target}", fontsize=8)
        ax.tick_params(labelsize=7)
    drawn = f", {len(shown)} drawn" if len(shown) < len(joined) else ""
    fig.suptitle(f"{title}: {score['n']} OOF rows{drawn}")
    if joined.empty:
        fig.text(0.5, 0.5, "no labelled row has an out-of-fold prediction", ha="center", va="center")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if not labels:
        return fig, table
    order = sorted(range(len(labels)), key=labels.__getitem__)  # "label 0", "label 1", then the threshold
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center",
               ncols=len(labels), fontsize=8)
    return fig, table


def write_oof_figure(
    predictions: str | os.PathLike | Sequence[str | os.PathLike],
    truth_path: str | os.PathLike,
    *,
    task: str,
    svg: str | os.PathLike,
    tsv: str | os.PathLike,
    title: str,
    max_points: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`oof_figure` of the stacked prediction tables ``predictions`` against the truth:
    the figure to ``svg``, its table to ``tsv``. Returns the table."""
    spec = task_spec(task)
    fig, table = oof_figure(read_predictions(predictions, spec), read_truth(truth_path, spec), spec,
                            title=title, max_points=max_points, seed=seed)
    save_table(table, tsv)
    save_svg(fig, svg)
    return table
