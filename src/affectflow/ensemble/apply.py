"""Applying a fitted ensemble to its members' predictions: the challenge's test split and any
predicted set of videos go through this one step.

An ensemble is fitted once, on the members' out-of-fold predictions
(:func:`affectflow.ensemble.build.build_ensemble`), and stored in ``members.json``: its members,
one weight per member and target, and (AU) the tuned thresholds. Applying it reads each member's
fold predictions of the clips at hand, averages each member's folds (:func:`~affectflow.ensemble.
tables.fold_mean`), combines the members with the stored weights (NaN-aware, :func:`~affectflow.
ensemble.methods.combine`) and binarises AU probabilities at the stored thresholds, exactly as the
fit did for the test split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.ensemble.errors import EnsembleError
from affectflow.ensemble.methods import combine
from affectflow.ensemble.tables import align, fold_mean, write_prediction_table
from affectflow.tasks import TaskSpec, key_columns, task_spec

__all__ = ["apply_ensemble", "apply_ensemble_job", "binarise", "combine_members", "read_members"]


def binarise(pred: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """0/1 where ``pred >= cut`` (per column), NaN kept: no prediction stays no prediction."""
    return np.where(np.isfinite(pred), (pred >= cut).astype(float), np.nan)


def combine_members(tables: Sequence[pd.DataFrame], names: Sequence[str], weights: Mapping[str, Mapping[str, float]],
                    thresholds: Mapping[str, float] | None, spec: TaskSpec) -> pd.DataFrame:
    """The ensemble's table from its members' tables (one per name in ``names``, same order):
    rows aligned on the task's keys (their union), each target the members' weighted mean with
    ``weights[target][member]``, binarised at ``thresholds[target]`` when given (AU)."""
    keys, targets = key_columns(spec), list(spec.targets)
    missing = [(t, n) for t in targets for n in names if n not in weights.get(t, {})]
    if missing:
        raise EnsembleError(f"no stored weight for (target, member) {missing[:4]}")
    union, arrays = align(tables, keys, targets)
    w = np.array([[weights[t][n] for t in targets] for n in names], np.float64)
    pred = np.column_stack([combine(arrays[:, :, j], w[:, j]) for j in range(len(targets))]) if len(targets) else \
        np.zeros((len(union), 0))
    if thresholds:
        pred = binarise(pred, np.array([thresholds[t] for t in targets]))
    frame = union.reset_index(drop=True).copy()
    frame[targets] = pred
    return frame


def read_members(members_json: str | os.PathLike) -> dict:
    """A fitted ensemble's ``members.json`` (members, weights, thresholds, task), checked for its keys."""
    path = Path(members_json)
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EnsembleError(f"{path}: cannot read the fitted ensemble: {exc}") from exc
    missing = [k for k in ("members", "weights", "thresholds", "task") if k not in stored]
    if missing:
        raise EnsembleError(f"{path}: no {missing} (written by an older version? re-run the ensemble rule)")
    return stored


def apply_ensemble(members_json: str | os.PathLike, member_folds: Mapping[str, Sequence[str | os.PathLike]],
                   *, task: str) -> pd.DataFrame:
    """The fitted ensemble of ``members_json`` applied to ``member_folds`` (member run -> its fold
    models' prediction tables of the same clips); returns keys + targets. The members must be the
    stored ones, and ``task`` the one it was fitted for."""
    spec = task_spec(task)
    stored = read_members(members_json)
    if stored["task"] != spec.name:
        raise EnsembleError(f"{members_json}: an ensemble of task {stored['task']!r}, not {spec.name!r}")
    names = list(stored["members"])
    if sorted(member_folds) != sorted(names):
        raise EnsembleError(f"{members_json}: members {names}, but predictions of {sorted(member_folds)} given")
    tables = [fold_mean(member_folds[n], spec) for n in names]
    return combine_members(tables, names, stored["weights"], stored["thresholds"], spec)


def apply_ensemble_job(members_json: str | os.PathLike, member_folds: Mapping[str, Sequence[str | os.PathLike]],
                       out_csv: str | os.PathLike, *, task: str) -> pd.DataFrame:
    """:func:`apply_ensemble`, written to ``out_csv`` (6 decimals, atomically): the workflow's one
    call for the test split's ``test.csv`` and a predicted set's ``predictions.csv``."""
    spec = task_spec(task)
    table = apply_ensemble(members_json, member_folds, task=spec.name)
    keys, targets = key_columns(spec), list(spec.targets)
    write_prediction_table(Path(out_csv), table[keys], table[targets].to_numpy(np.float64), targets)
    return table
