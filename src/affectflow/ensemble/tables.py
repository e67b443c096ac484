"""Prediction tables of the ensemble's members: reading a run's folds, aligning runs on their keys, writing.

A *member* is one run: its K fold directories each hold ``oof.csv`` (predictions for the fold's
held-out rows) and ``test.csv`` (that fold model's predictions for the test rows). A run's OOF
table is its folds stacked; its test table is the mean over its K fold models
(:func:`run_predictions`). Every table holds the task's key columns (``id`` or ``id, frame``)
then its targets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.ensemble.errors import EnsembleError, ensemble_errors
from affectflow.keys import read_prediction_table
from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import TaskSpec, key_columns

__all__ = ["align", "fold_mean", "key_index", "run_oof", "run_predictions", "write_prediction_table"]


def run_predictions(fold_dirs: Sequence[str | os.PathLike], spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's OOF predictions (folds stacked) and test predictions (mean of its fold models).

    Both tables hold the task's key columns then its targets, sorted by the keys. The test mean
    is NaN-aware: a fold model with no prediction for a row is left out of that row's mean. A
    row predicted out-of-fold by two folds is an error naming both directories.
    """
    if not fold_dirs:
        raise EnsembleError("run_predictions: no fold directories given")
    return run_oof(fold_dirs, spec), fold_mean([Path(d) / "test.csv" for d in fold_dirs], spec)


def run_oof(fold_dirs: Sequence[str | os.PathLike], spec: TaskSpec) -> pd.DataFrame:
    """One run's OOF predictions: its folds' ``oof.csv`` stacked, sorted by the keys (see
    :func:`run_predictions`)."""
    keys, targets = key_columns(spec), list(spec.targets)
    if not fold_dirs:
        raise EnsembleError("run_oof: no fold directories given")
    oofs = []
    for d in fold_dirs:
        with ensemble_errors():
            oof = read_prediction_table(Path(d) / "oof.csv", keys, targets)
        oof["_fold"] = str(d)
        oofs.append(oof)
    oof = pd.concat(oofs, ignore_index=True)
    dup = oof.duplicated(keys, keep=False)
    if dup.any():
        first = oof.loc[dup].sort_values(keys).head(2)
        key = {c: int(first[c].iloc[0]) for c in keys}
        raise EnsembleError(f"row {key} is predicted out-of-fold by more than one fold: "
                            f"{', '.join(first['_fold'])}")
    return oof.drop(columns="_fold").sort_values(keys, kind="stable").reset_index(drop=True)


def fold_mean(tables: Sequence[str | os.PathLike], spec: TaskSpec) -> pd.DataFrame:
    """The mean of one run's fold models' prediction tables (``test.csv``, or a predicted video
    set's per-fold tables), by key, sorted; NaN-aware: a fold model with no prediction for a row
    is left out of that row's mean."""
    keys, targets = key_columns(spec), list(spec.targets)
    if not tables:
        raise EnsembleError("fold_mean: no prediction tables given")
    with ensemble_errors():
        read = [read_prediction_table(path, keys, targets) for path in tables]
    return pd.concat(read, ignore_index=True).groupby(keys, sort=True)[targets].mean().reset_index()


def key_index(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    """The key columns of ``frame`` as an index (a MultiIndex for ``id, frame``) to reindex on."""
    return pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else pd.Index(frame[keys[0]])


def align(tables: Sequence[pd.DataFrame], keys: list[str], targets: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Union of the tables' keys (sorted) and a (tables, rows, targets) float32 array, NaN where absent."""
    union = (pd.concat([t[keys] for t in tables], ignore_index=True).drop_duplicates()
             .sort_values(keys, kind="stable").reset_index(drop=True))
    index = key_index(union, keys)
    # float32: per-frame tasks have millions of rows per member; the CSVs hold 6 decimals anyway.
    arrays = np.stack([t.set_index(keys)[targets].reindex(index).to_numpy(np.float32) for t in tables])
    return union, arrays


def write_prediction_table(path: Path, keys: pd.DataFrame, values: np.ndarray, targets: list[str]) -> None:
    """Write key columns + ``values`` (rows, targets) with 6 decimals, atomically."""
    frame = keys.reset_index(drop=True).copy()
    frame[targets] = values
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
