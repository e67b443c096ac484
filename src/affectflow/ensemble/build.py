"""Ensembles of trained runs, fitted on their out-of-fold (OOF) predictions.

A *member* is one run: its K fold directories each hold ``oof.csv`` (predictions for the fold's
held-out rows) and ``test.csv`` (that fold model's predictions for the test rows). A run's OOF
table is its folds stacked; its test table is the mean over its K fold models
(:func:`run_predictions`). :func:`build_ensemble` aligns the members on the task's key columns
(``id`` or ``id, frame``), fits one weight per member and target on the OOF rows that have truth,
and applies the same weights to the test predictions.

Ensemblers are registered by name in :data:`ENSEMBLERS` (unknown names fail listing the known
ones). Each fits non-negative weights summing to 1 for one target:

``mean``
    equal weights.
``weighted``
    non-negative least squares (:func:`scipy.optimize.nnls`) of the truth on the members' OOF
    predictions, then normalised to sum 1. For ``pearson`` tasks the truth and the predictions
    are centred first: Pearson ignores offset and scale, and the NNLS solution on centred data
    is then exactly the non-negative combination with the highest correlation. For ``ccc`` and
    ``f1`` (AU probabilities) the uncentred fit minimises squared error (the Brier score for AU),
    a smooth stand-in for the metric that needs no tuning of an optimiser; the choice was made
    over SLSQP on the metric itself for that reason.
``greedy``
    Caruana et al. (2004) forward selection with replacement: start empty; each of ``rounds``
    rounds adds the member whose inclusion gives the best task metric of the running mean; the
    weights are the selection counts of the best-scoring round (so the result is never worse
    on OOF than the first pick, the best single member).
``best``
    weight 1 on the member with the best task metric on OOF.

Missing predictions (a NaN row: no face, no audio) are handled so that nothing is lost: weights
are fitted on the rows every member predicts, and when applied a row's weights are renormalised
over the members that do predict it. If all members predicting a row have weight 0, the row takes
their plain mean; a row no member predicts stays NaN (the submission writer fills it).

For AU (``spec.binary``) ``thresholds=True`` tunes one threshold per AU on the ensemble's OOF
probabilities (grid :data:`THRESHOLD_GRID`, maximising F1) and writes ``oof.csv``/``test.csv`` as
0/1 values binarised with them, so the submission writer's fixed 0.5 rule keeps the tuned
decision. Without it the ensemble writes probabilities.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from affectflow.runtime.atomic import atomic_path, write_text_atomic
from affectflow.metrics import UndefinedMetricWarning, score_task
from affectflow.registry import Registry
from affectflow.tasks import TaskSpec, key_columns

__all__ = [
    "ENSEMBLERS",
    "THRESHOLD_GRID",
    "EnsembleError",
    "build_ensemble",
    "combine",
    "load_truth",
    "run_predictions",
    "tune_thresholds",
]

log = logging.getLogger(__name__)

#: Candidate AU thresholds: 0.05, 0.10, ..., 0.95 (0.5 exactly included).
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))

Ensembler = Callable[..., np.ndarray]
#: Ensemblers by name. Each is called as ``fit(preds, y, *, metric, **params)`` with ``preds`` of
#: shape (members, rows) and ``y`` of shape (rows,), all finite, and returns (members,) weights.
ENSEMBLERS: Registry[Ensembler] = Registry("ensembler")


class EnsembleError(ValueError):
    """Bad input to an ensemble: the message names the file (and line) or member and the reason."""


# -- metric of one target ---------------------------------------------------------------------


def _target_score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The task metric of one target; -inf where it is undefined, so selection never picks it."""
    with warnings.catch_warnings():
        # Undefined scores (constant prediction) are expected while searching; they lose.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = score_task(metric, y[:, None], p[:, None], ["target"])["mean"]
    return value if math.isfinite(value) else -math.inf


def _equal(m: int) -> np.ndarray:
    return np.full(m, 1.0 / m)


# -- ensemblers -------------------------------------------------------------------------------


@ENSEMBLERS.register("mean")
def fit_mean(preds: np.ndarray, y: np.ndarray, *, metric: str) -> np.ndarray:
    """Equal weights."""
    return _equal(len(preds))


@ENSEMBLERS.register("weighted")
def fit_weighted(preds: np.ndarray, y: np.ndarray, *, metric: str) -> np.ndarray:
    """NNLS of ``y`` on the members (centred for pearson), normalised to sum 1.

    All-zero NNLS weights (every member anti-correlated with the truth) fall back to equal weights.
    """
    a, b = preds.T, y
    if metric == "pearson":
        a, b = a - a.mean(axis=0), b - b.mean()
    weights, _ = nnls(a, b)
    total = weights.sum()
    if not total > 0:
        log.warning("weighted: NNLS gave all-zero weights; falling back to equal weights")
        return _equal(len(preds))
    return weights / total


@ENSEMBLERS.register("greedy")
def fit_greedy(preds: np.ndarray, y: np.ndarray, *, metric: str, rounds: int = 20) -> np.ndarray:
    """Caruana et al. (2004) forward selection with replacement over ``rounds`` rounds.

    Each round adds the member (ties: the first listed) that maximises the metric of the mean of
    the selection so far; the weights are the counts of the best-scoring prefix of the selection.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise EnsembleError(f"greedy: rounds must be an integer >= 1, got {rounds!r}")
    m = len(preds)
    counts = np.zeros(m)
    running = np.zeros(preds.shape[1])
    best_score, best_counts = -math.inf, None
    for r in range(1, rounds + 1):
        scores = [_target_score(metric, y, (running + preds[j]) / r) for j in range(m)]
        pick = int(np.argmax(scores))
        counts[pick] += 1
        running += preds[pick]
        if scores[pick] > best_score:
            best_score, best_counts = scores[pick], counts.copy()
    if best_counts is None:
        log.warning("greedy: the metric is undefined for every selection; falling back to equal weights")
        return _equal(m)
    return best_counts / best_counts.sum()


@ENSEMBLERS.register("best")
def fit_best(preds: np.ndarray, y: np.ndarray, *, metric: str) -> np.ndarray:
    """Weight 1 on the best single member (ties: the first listed)."""
    scores = [_target_score(metric, y, p) for p in preds]
    if not any(math.isfinite(s) for s in scores):
        log.warning("best: the metric is undefined for every member; falling back to equal weights")
        return _equal(len(preds))
    weights = np.zeros(len(preds))
    weights[int(np.argmax(scores))] = 1.0
    return weights


def _check_params(method: str, fit: Ensembler, params: Mapping) -> None:
    accepted = [
        name for name, p in inspect.signature(fit).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "metric"
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise EnsembleError(
            f"ensembler {method!r}: unknown parameter(s) {unknown}; accepted: {accepted or 'none'}"
        )


# -- applying weights and thresholds ----------------------------------------------------------


def combine(preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over members (axis 0) of ``preds`` (members, rows), NaN-aware.

    A row's weights are renormalised over the members that predict it (finite values). Where
    those members all have weight 0 the row takes their plain mean; a row no member predicts is
    NaN.
    """
    preds = np.asarray(preds, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    finite = np.isfinite(preds)
    values = np.where(finite, preds, 0.0)
    w = weights[:, None] * finite
    num, den = (w * values).sum(axis=0), w.sum(axis=0)
    count = finite.sum(axis=0)
    out = np.full(preds.shape[1], np.nan)
    weighted = den > 0
    out[weighted] = num[weighted] / den[weighted]
    fallback = ~weighted & (count > 0)
    out[fallback] = values[:, fallback].sum(axis=0) / count[fallback]
    return out


def _f1_counts(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    pred = p >= threshold
    truth = y == 1.0
    tp = np.sum(truth & pred)
    denom = 2 * tp + np.sum(~truth & pred) + np.sum(truth & ~pred)
    return 2 * tp / denom if denom else -math.inf


def tune_thresholds(y_true: np.ndarray, y_prob: np.ndarray, targets: Sequence[str],
                    *, grid: Sequence[float] = THRESHOLD_GRID) -> dict[str, float]:
    """One threshold per column maximising binary F1 (positive where ``prob >= threshold``).

    Rows where truth or probability is NaN are ignored per column. Ties go to the threshold
    closest to 0.5 (the challenge's own rule), which is also what a column with no usable row
    or an undefined F1 gets.
    """
    y_true, y_prob = np.asarray(y_true, float), np.asarray(y_prob, float)
    order = sorted(grid, key=lambda t: (abs(t - 0.5), t))  # first maximum = closest to 0.5
    out = {}
    for j, name in enumerate(targets):
        ok = np.isfinite(y_true[:, j]) & np.isfinite(y_prob[:, j])
        y, p = y_true[ok, j], y_prob[ok, j]
        scores = [_f1_counts(y, p, t) for t in order]
        out[name] = float(order[int(np.argmax(scores))]) if len(y) else 0.5
    return out


# -- reading predictions ----------------------------------------------------------------------


def _read_table(path: Path, keys: list[str], targets: list[str]) -> pd.DataFrame:
    """A prediction table (keys + targets) with integer keys and float targets, checked."""
    if not path.is_file():
        raise EnsembleError(f"{path}: prediction table not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EnsembleError(f"{path}: cannot be read as CSV: {exc}") from exc
    missing = [c for c in (*keys, *targets) if c not in frame.columns]
    if missing:
        raise EnsembleError(f"{path}: missing column(s) {missing} (expected {keys + targets})")
    frame = frame[keys + targets].copy()
    for col in keys:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() | (numeric != numeric.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise EnsembleError(f"{path}:{row + 2}: {col} {frame[col].iloc[row]!r} is not an integer")
        frame[col] = numeric.astype("int64")
    for col in targets:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise EnsembleError(f"{path}:{row + 2}: {col} {frame[col].iloc[row]!r} is not a number")
        frame[col] = numeric.astype("float64")
    dup = frame.duplicated(keys)
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        key = tuple(int(frame[c].iloc[row]) for c in keys)
        raise EnsembleError(f"{path}:{row + 2}: duplicate row for {dict(zip(keys, key))}")
    return frame


def run_predictions(fold_dirs: Sequence[str | os.PathLike], spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's OOF predictions (folds stacked) and test predictions (mean of its fold models).

    Both tables hold the task's key columns then its targets, sorted by the keys. The test mean
    is NaN-aware: a fold model with no prediction for a row is left out of that row's mean. A
    row predicted out-of-fold by two folds is an error naming both directories.
    """
    keys, targets = key_columns(spec), list(spec.targets)
    if not fold_dirs:
        raise EnsembleError("run_predictions: no fold directories given")
    oofs, tests = [], []
    for d in fold_dirs:
        oof = _read_table(Path(d) / "oof.csv", keys, targets)
        oof["_fold"] = str(d)
        oofs.append(oof)
        tests.append(_read_table(Path(d) / "test.csv", keys, targets))
    oof = pd.concat(oofs, ignore_index=True)
    dup = oof.duplicated(keys, keep=False)
    if dup.any():
        first = oof.loc[dup].sort_values(keys).head(2)
        key = {c: int(first[c].iloc[0]) for c in keys}
        raise EnsembleError(f"row {key} is predicted out-of-fold by more than one fold: "
                            f"{', '.join(first['_fold'])}")
    oof = oof.drop(columns="_fold").sort_values(keys, kind="stable").reset_index(drop=True)
    test = (pd.concat(tests, ignore_index=True).groupby(keys, sort=True)[targets].mean()
            .reset_index())
    return oof, test


def load_truth(path: str | os.PathLike, spec: TaskSpec) -> pd.DataFrame:
    """The truth table (keys + targets, labelled rows only) for :func:`build_ensemble`.

    ``path`` is the manifest (``.tsv``, clip tasks: its rows with any finite target) or the
    frame-label table (``frame_labels.csv.gz``, per-frame tasks).
    """
    path = Path(path)
    keys, targets = key_columns(spec), list(spec.targets)
    if path.name.endswith(".tsv"):
        from affectflow.data import read_manifest  # data-stage reader, only needed here

        frame = read_manifest(path)
        missing = [c for c in (*keys, *targets) if c not in frame.columns]
        if missing:
            raise EnsembleError(f"{path}: missing column(s) {missing} for task {spec.name!r} "
                                f"(per-frame tasks take their truth from frame_labels.csv.gz)")
        frame = frame[keys + targets]
    else:
        frame = _read_table(path, keys, targets)
    return frame[frame[targets].notna().any(axis=1)].reset_index(drop=True)


def _index(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    return pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else pd.Index(frame[keys[0]])


def _align(tables: Sequence[pd.DataFrame], keys: list[str], targets: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Union of the tables' keys (sorted) and a (tables, rows, targets) float32 array, NaN where absent."""
    union = (pd.concat([t[keys] for t in tables], ignore_index=True).drop_duplicates()
             .sort_values(keys, kind="stable").reset_index(drop=True))
    index = _index(union, keys)
    # float32: per-frame tasks have millions of rows per member; the CSVs hold 6 decimals anyway.
    arrays = np.stack([t.set_index(keys)[targets].reindex(index).to_numpy(np.float32) for t in tables])
    return union, arrays


# -- scoring and writing ----------------------------------------------------------------------


def _score(metric: str, truth: np.ndarray, pred: np.ndarray, targets: list[str]) -> dict:
    """Task metric on the rows where truth and prediction are finite for every target."""
    rows = np.isfinite(truth).all(axis=1) & np.isfinite(pred).all(axis=1)
    n = int(rows.sum())
    if n == 0:
        return {"per_target": {t: math.nan for t in targets}, "mean": math.nan, "rows": 0}
    result = score_task(metric, truth[rows], pred[rows], targets)
    return {"per_target": result["per_target"], "mean": result["mean"], "rows": n}


def _json_safe(value):
    # NaN is not JSON: an undefined score is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_table(path: Path, keys: pd.DataFrame, values: np.ndarray, targets: list[str]) -> None:
    frame = keys.reset_index(drop=True).copy()
    frame[targets] = values
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


# -- the ensemble -----------------------------------------------------------------------------


def build_ensemble(
    members: Mapping[str, Sequence[str | os.PathLike]],
    truth: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    spec: TaskSpec,
    method: str,
    params: Mapping | None = None,
    thresholds: bool = False,
) -> dict:
    """Fit ensemble ``method`` on the members' OOF predictions; write its predictions and scores.

    ``members`` maps a run name to its fold directories; ``truth`` holds the key columns and
    targets of the labelled rows (clip tasks: the manifest's labelled rows; per-frame tasks: the
    frame-label table; rows with NaN targets are not scored). ``params`` go to the ensembler
    (``greedy``: ``rounds``). Writes to ``out_dir``:

    - ``oof.csv``, ``test.csv``: key columns + targets (AU with ``thresholds``: 0/1 values);
    - ``members.json``: method, params, members, per-target weights per member, AU thresholds
      (or null) and the number of OOF rows each target was fitted on;
    - ``score.json``: ``{"method", "task", "metric", "oof": {per_target, mean, rows},
      "members": {name: {per_target, mean, rows}}, "weights", "thresholds"}`` and, with
      thresholds, ``"oof_at_0.5"`` (the ensemble's F1 before tuning). Undefined scores are null.

    Returns the score dict (with NaN where undefined).
    """
    keys, targets = key_columns(spec), list(spec.targets)
    fit = ENSEMBLERS.get(method)
    params = dict(params or {})
    _check_params(method, fit, params)
    if thresholds and not spec.binary:
        raise EnsembleError(f"thresholds=True needs a binary task (au), not {spec.name!r} ({spec.metric})")
    if not members:
        raise EnsembleError("build_ensemble: no members given")
    missing = [c for c in (*keys, *targets) if c not in truth.columns]
    if missing:
        raise EnsembleError(f"truth table: missing column(s) {missing} (expected {keys + targets})")
    truth = truth[keys + targets].copy()
    for col in keys:
        # Keys must match the prediction tables' int64 keys exactly, or alignment silently misses.
        values = pd.to_numeric(truth[col], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            raise EnsembleError(f"truth table: column {col!r} holds values that are not integers")
        truth[col] = values.astype("int64")
    if truth.duplicated(keys).any():
        first = truth.loc[truth.duplicated(keys)].iloc[0]
        raise EnsembleError(f"truth table: duplicate row for {{{', '.join(f'{c}: {int(first[c])}' for c in keys)}}}")

    names = list(members)
    oofs, tests = zip(*(run_predictions(members[n], spec) for n in names))
    oof_keys, oof_arr = _align(oofs, keys, targets)
    test_keys, test_arr = _align(tests, keys, targets)
    y = truth.set_index(keys)[targets].reindex(_index(oof_keys, keys)).to_numpy(np.float64)
    if not np.isfinite(y).any():
        raise EnsembleError("no OOF row of any member has truth: do the members and the truth "
                            f"table share {keys} values?")

    weights = np.zeros((len(names), len(targets)))
    fit_rows = {}
    for j, target in enumerate(targets):
        rows = np.isfinite(y[:, j]) & np.isfinite(oof_arr[:, :, j]).all(axis=0)
        fit_rows[target] = int(rows.sum())
        if method != "mean" and rows.sum() < 2:
            raise EnsembleError(f"{method}: target {target!r} has {int(rows.sum())} OOF row(s) with truth "
                                f"that every member predicts; at least 2 are needed to fit weights")
        weights[:, j] = fit(oof_arr[:, rows, j].astype(np.float64), y[rows, j], metric=spec.metric, **params)

    oof_pred = np.column_stack([combine(oof_arr[:, :, j], weights[:, j]) for j in range(len(targets))])
    test_pred = np.column_stack([combine(test_arr[:, :, j], weights[:, j]) for j in range(len(targets))])

    score: dict = {"method": method, "task": spec.name, "metric": spec.metric}
    tuned = None
    if thresholds:
        score["oof_at_0.5"] = _score(spec.metric, y, oof_pred, targets)
        tuned = tune_thresholds(y, oof_pred, targets)
        cut = np.array([tuned[t] for t in targets])
        # Binarised here so that the submission writer's fixed 0.5 rule keeps the tuned decision.
        oof_pred = np.where(np.isfinite(oof_pred), (oof_pred >= cut).astype(float), np.nan)
        test_pred = np.where(np.isfinite(test_pred), (test_pred >= cut).astype(float), np.nan)
    score["oof"] = _score(spec.metric, y, oof_pred, targets)
    score["members"] = {n: _score(spec.metric, y, oof_arr[i].astype(np.float64), targets)
                        for i, n in enumerate(names)}
    weight_table = {t: {n: float(weights[i, j]) for i, n in enumerate(names)} for j, t in enumerate(targets)}
    score["weights"] = weight_table
    score["thresholds"] = tuned

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_table(out_dir / "oof.csv", oof_keys, oof_pred, targets)
    _write_table(out_dir / "test.csv", test_keys, test_pred, targets)
    chosen = {"method": method, "params": params, "task": spec.name, "members": names,
              "weights": weight_table, "thresholds": tuned, "fit_rows": fit_rows}
    write_text_atomic(out_dir / "members.json", json.dumps(_json_safe(chosen), indent=2))
    write_text_atomic(out_dir / "score.json", json.dumps(_json_safe(score), indent=2))
    log.info("ensemble %s of %s: OOF %s %.4f on %d rows", method, ", ".join(names), spec.metric,
             score["oof"]["mean"], score["oof"]["rows"])
    return score
