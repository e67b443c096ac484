"""The report's score table: the out-of-fold score of every run and ensemble, per target.

Scores are computed here from the prediction tables and the truth with the shared scorer
(:func:`affectflow.scoring.score_predictions` on :func:`affectflow.scoring.read_truth`'s rows),
so runs and ensembles are scored the same way, and as the ensemble stage scores itself,
whatever their ``metrics.json`` / ``score.json`` hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.keys import read_prediction_table
from affectflow.scoring import mean_over_targets, score_predictions
from affectflow.tasks import TaskSpec, key_columns

__all__ = ["SCORE_COLUMNS", "bar_values", "ensemble_names", "read_predictions", "run_scores", "score_table"]

#: The score table's leading columns; the task's targets and ``mean`` follow.
SCORE_COLUMNS = ["source", "kind", "aggregate", "n", "metric"]


def read_predictions(paths: str | os.PathLike | Sequence[str | os.PathLike], spec: TaskSpec) -> pd.DataFrame:
    """Prediction tables (``oof.csv``) stacked: key columns then targets (NaN: no prediction).

    Each table is read with :func:`affectflow.keys.read_prediction_table`: a missing file or
    column, a key that is not an integer, a target that is not a number and a key twice in one
    table fail naming the file and line.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    keys, targets = key_columns(spec), list(spec.targets)
    frames = [read_prediction_table(path, keys, targets) for path in paths]
    if not frames:
        raise ValueError("no prediction tables given")
    return pd.concat(frames, ignore_index=True)


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
                 "mean": mean_over_targets(per_target), "n": sum(f["n"] for f in folds)}
    pooled = score_predictions(read_predictions(fold_predictions, spec), truth, spec)
    return {"folds": folds, "fold_mean": fold_mean, "pooled": pooled}


def ensemble_names(ensembles: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike]) -> dict[str, str]:
    """Ensembles' OOF tables by name; a list of paths names each by its directory (``late_mean``,
    ``compare-greedy``: the directory the ensemble stage writes to)."""
    if isinstance(ensembles, Mapping):
        return {name: str(path) for name, path in ensembles.items()}
    return {Path(path).parent.name: str(path) for path in ensembles}


def score_table(
    runs: Mapping[str, Sequence[str | os.PathLike]],
    ensembles: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    truth: pd.DataFrame,
    spec: TaskSpec,
) -> pd.DataFrame:
    """One row per (source, aggregate): runs' ``fold mean`` and ``pooled`` OOF scores, ensembles'
    ``pooled`` OOF score. Columns: source, kind, aggregate, n, metric, <targets>, mean.

    ``runs`` maps a run to its folds' ``oof.csv``; ``ensembles`` maps a name to an ensemble's
    ``oof.csv``, or lists those tables (named by :func:`ensemble_names`).
    """
    rows = []

    def row(source, kind, aggregate, score):
        return {"source": source, "kind": kind, "aggregate": aggregate, "n": score["n"],
                "metric": spec.metric, **score["per_target"], "mean": score["mean"]}

    for name, folds in runs.items():
        scores = run_scores([Path(f) for f in folds], truth, spec)
        rows.append(row(name, "run", "fold mean", scores["fold_mean"]))
        rows.append(row(name, "run", "pooled", scores["pooled"]))
    for name, path in ensemble_names(ensembles).items():
        rows.append(row(name, "ensemble", "pooled", score_predictions(read_predictions(path, spec), truth, spec)))
    return pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *spec.targets, "mean"])


def bar_values(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`score_table` drawn as bars: runs' fold means and ensembles' pooled scores."""
    chosen = ((table["kind"] == "run") & (table["aggregate"] == "fold mean")) | (
        (table["kind"] == "ensemble") & (table["aggregate"] == "pooled"))
    return table[chosen].reset_index(drop=True)
