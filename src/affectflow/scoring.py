"""One truth, one scorer: which labelled rows count and how a prediction table is scored.

Training (its out-of-fold score), the ensemble (fitting and its OOF score) and the report
(score tables and figures) all call this module, so the same predictions get the same score
everywhere.

- **Which truth rows count** (:func:`read_truth`): a row whose targets are labelled for at least
  one target. A row labelled for some targets only (e.g. an annotation with a missing value)
  counts for those targets.
- **How a table is scored** (:func:`score_arrays`): per target, on the rows where that target's
  truth and prediction are both finite, with the task's metric (:func:`affectflow.metrics.score_task`);
  a target with fewer than :data:`MIN_SCORED_ROWS` such rows is NaN. The mean over targets is the
  plain mean, NaN when any target is (as the challenge's evaluation would have it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.keys import integer_column
from affectflow.metrics import score_task
from affectflow.tasks import TaskSpec, key_columns

__all__ = ["MIN_SCORED_ROWS", "read_truth", "score_arrays", "score_predictions"]

#: Fewer rows than this leave a target's score undefined (NaN): a correlation needs two points.
MIN_SCORED_ROWS = 2


def read_truth(path: str | os.PathLike, spec: TaskSpec) -> pd.DataFrame:
    """The labelled rows of a task's truth table: key columns, then targets (NaN: not labelled).

    ``path`` is the manifest (``manifest.tsv``, clip tasks) or the frame label table
    (``frame_labels.csv.gz``, per-frame tasks). A row is kept when at least one target is
    labelled; a missing column fails naming the file.
    """
    path = Path(path)
    keys, targets = key_columns(spec), list(spec.targets)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: truth table not found")
    if path.name.endswith(".tsv"):
        from affectflow.data import read_manifest  # the manifest's own reader restores its dtypes

        table = read_manifest(path)
    else:
        table = pd.read_csv(path)
    missing = [c for c in keys + targets if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} for task {spec.name!r} (expected {keys + targets}; "
                         "per-frame tasks take their truth from frame_labels.csv.gz)")
    values = table[targets].apply(pd.to_numeric, errors="coerce").astype("float64")
    table = table[keys].join(values)[values.notna().any(axis=1)]
    for key in keys:
        table[key] = integer_column(table[key], where=str(path), name=key)
    return table.reset_index(drop=True)


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
    usable = np.isfinite(truth) & np.isfinite(pred)
    per_target = {}
    for k, target in enumerate(targets):
        rows = usable[:, k]
        if rows.sum() < MIN_SCORED_ROWS:
            per_target[target] = math.nan
            continue
        per_target[target] = score_task(metric, truth[rows, k:k + 1], pred[rows, k:k + 1], [target])["mean"]
    mean = float(np.mean(list(per_target.values()))) if per_target else math.nan
    return {"per_target": per_target, "mean": mean, "rows": int(usable.any(axis=1).sum())}


def score_predictions(pred: pd.DataFrame, truth: pd.DataFrame, spec: TaskSpec) -> dict:
    """Score a prediction table (keys + targets) against :func:`read_truth`'s table.

    Rows are matched on the task's keys; returns ``{"metric", "per_target", "mean", "n"}`` with
    ``n`` the rows scored for at least one target.
    """
    keys, targets = key_columns(spec), list(spec.targets)
    joined = truth[keys + targets].merge(pred[keys + targets], on=keys, suffixes=("_true", "_pred"))
    score = score_arrays(spec.metric, joined[[f"{t}_true" for t in targets]].to_numpy(np.float64),
                         joined[[f"{t}_pred" for t in targets]].to_numpy(np.float64), targets)
    return {"metric": spec.metric, "per_target": score["per_target"], "mean": score["mean"], "n": score["rows"]}
