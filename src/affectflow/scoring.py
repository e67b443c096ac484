"""One truth, one scorer: which labelled rows count and how predictions are scored.

- **Which truth rows count** (:func:`read_truth`): a row whose targets are labelled for at least
  one target. A row labelled for some targets only (e.g. an annotation with a missing value)
  counts for those targets. The ensemble and the report read their truth with it.
- **How predictions are scored** (:func:`score_arrays`): per target, on the rows where that
  target's truth and prediction are both finite, with the task's metric
  (:func:`affectflow.metrics.score_task`); a target with fewer than :data:`MIN_SCORED_ROWS` such
  rows is NaN. The mean over targets is :func:`~affectflow.metrics.mean_over_targets`: the plain
  mean, NaN when any target is (as the challenge's evaluation would have it).
- **Which rows of a prediction table are scored** (:func:`scored_rows`): the truth's rows matched
  on the task's keys, kept when some target has both a label and a prediction;
  :func:`score_predictions` scores them, the report draws them.

Every score goes through :func:`score_arrays`, so the same predictions get the same score
everywhere: training scores its out-of-fold predictions with it (against the labels it loads
itself, from the same manifest and frame label table), the ensemble its fit and its members,
the report (:func:`score_predictions`) runs and ensembles, and :mod:`affectflow.evaluate` a
submission against held-out labels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.keys import checked_table
from affectflow.metrics import mean_over_targets, score_task
from affectflow.tasks import TaskSpec, key_columns

__all__ = [
    "MIN_SCORED_ROWS",
    "mean_over_targets",
    "read_truth",
    "score_arrays",
    "score_predictions",
    "scored_cells",
    "scored_rows",
]

#: Fewer rows than this leave a target's score undefined (NaN): a correlation needs two points.
MIN_SCORED_ROWS = 2


def read_truth(path: str | os.PathLike, spec: TaskSpec) -> pd.DataFrame:
    """The labelled rows of a task's truth table: key columns, then targets (NaN: not labelled).

    ``path`` is the manifest (``manifest.tsv``, read with its own reader) for clip tasks and the
    frame label table (``frame_labels.csv.gz``) for per-frame tasks (``spec.per_frame``). The
    table is checked with :func:`affectflow.keys.checked_table` (a missing column, a key that is
    not an integer, a target that is not a number or a duplicated key fails naming the file and
    line); a row is kept when at least one target is labelled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: truth table not found")
    if spec.per_frame:
        table = pd.read_csv(path)
    else:
        from affectflow.data import read_manifest  # the manifest's own reader restores its dtypes

        table = read_manifest(path)
    table = checked_table(table, key_columns(spec), spec.targets, where=str(path))
    return table[table[list(spec.targets)].notna().any(axis=1)].reset_index(drop=True)


def scored_cells(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Mask of the cells of aligned truth and prediction arrays that are scored: both finite."""
    return np.isfinite(truth) & np.isfinite(pred)


def score_arrays(metric: str, truth: np.ndarray, pred: np.ndarray, targets: Sequence[str]) -> dict:
    """Score aligned (N, K) truth and prediction arrays (NaN: not labelled / not predicted).

    Returns ``{"per_target", "mean", "rows"}``; ``rows`` counts the rows scored for at least one
    target. See the module docstring for the rule.
    """
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    targets = list(targets)
    if truth.shape != pred.shape or truth.ndim != 2 or truth.shape[1] != len(targets):
        raise ValueError(f"truth {truth.shape} and predictions {pred.shape} must both be (N, {len(targets)})")
    usable = scored_cells(truth, pred)
    per_target = {}
    for k, target in enumerate(targets):
        rows = usable[:, k]
        if rows.sum() < MIN_SCORED_ROWS:
            per_target[target] = math.nan
            continue
        per_target[target] = score_task(metric, truth[rows, k:k + 1], pred[rows, k:k + 1], [target])["mean"]
    return {"per_target": per_target, "mean": mean_over_targets(per_target), "rows": int(usable.any(axis=1).sum())}


def _joined_values(joined: pd.DataFrame, targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ``<target>_true`` and ``<target>_pred`` columns of a joined table as (N, K) arrays."""
    return (joined[[f"{t}_true" for t in targets]].to_numpy(np.float64),
            joined[[f"{t}_pred" for t in targets]].to_numpy(np.float64))


def scored_rows(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """The rows of ``pred`` that are scored against ``truth`` (:func:`read_truth`'s table).

    Rows are matched on the task's keys, in the truth's order, and kept when some target has both
    a label and a prediction. Columns: the keys, then ``<target>_true`` and ``<target>_pred``.
    """
    keys, targets = key_columns(spec), list(spec.targets)
    joined = truth[keys + targets].merge(pred[keys + targets], on=keys, suffixes=("_true", "_pred"))
    return joined[scored_cells(*_joined_values(joined, targets)).any(axis=1)].reset_index(drop=True)


def score_predictions(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> dict:
    """Score a prediction table (keys + targets) against :func:`read_truth`'s table.

    Scores :func:`scored_rows` with :func:`score_arrays`; returns ``{"metric", "per_target",
    "mean", "n"}`` with ``n`` the rows scored for at least one target.
    """
    targets = list(spec.targets)
    score = score_arrays(spec.metric, *_joined_values(scored_rows(pred, truth, spec), targets), targets)
    return {"metric": spec.metric, "per_target": score["per_target"], "mean": score["mean"], "n": score["rows"]}
