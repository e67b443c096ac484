"""Challenge metrics: Pearson correlation (EMI), concordance correlation (VA), F1 (AU).

Where a metric is undefined for a target (e.g. Pearson with a constant prediction)
the value is NaN and an :class:`UndefinedMetricWarning` names the target.  Means over
targets are plain means and therefore NaN as well: silently dropping a target would
report a score the challenge's evaluation would not give.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "AU_THRESHOLD",
    "UndefinedMetricWarning",
    "ccc",
    "ccc_per_target",
    "f1_per_au",
    "mean_f1",
    "mean_over_targets",
    "mean_pearson",
    "pearson_per_target",
    "score_task",
]


#: An action unit is predicted present where its probability is at least this (the challenge's F1 rule).
AU_THRESHOLD = 0.5


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined for a target (constant input, no positives) and is NaN."""


def _warn_undefined(metric: str, target: str, reason: str) -> None:
    # stacklevel=3: point at the caller of the public metric function.
    warnings.warn(
        f"{metric} is undefined for target {target!r}: {reason}; returning NaN",
        UndefinedMetricWarning,
        stacklevel=3,
    )


def _as_matrix(y_true, y_pred, target_names: Sequence[str], *, pred_name: str = "y_pred"):
    """Validate a pair of (N, K) arrays against K target names; return float arrays."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(
            f"shape mismatch: y_true has shape {t.shape}, {pred_name} has shape {p.shape}"
        )
    if t.ndim != 2:
        raise ValueError(f"expected (N, K) arrays, got shape {t.shape}")
    names = list(target_names)
    if len(names) != t.shape[1]:
        raise ValueError(
            f"{len(names)} target names {names} for arrays with {t.shape[1]} columns (shape {t.shape})"
        )
    if t.shape[0] == 0:
        raise ValueError(f"no samples: arrays have shape {t.shape}")
    for label, arr in (("y_true", t), (pred_name, p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            col = int(np.argwhere(bad)[0][1])
            raise ValueError(f"{label} contains non-finite values (first in target {names[col]!r})")
    return t, p, names


def mean_over_targets(per_target: Mapping[str, float]) -> float:
    """The plain mean of per-target scores: NaN when any target is (and when there is none)."""
    values = list(per_target.values())
    return float(np.mean(values)) if values else math.nan


def pearson_per_target(y_true, y_pred, target_names: Sequence[str]) -> dict[str, float]:
    """Pearson correlation between truth and prediction for each column, keyed by target name.

    A target whose truth or prediction is constant gives NaN and an
    :class:`UndefinedMetricWarning`.
    """
    t, p, names = _as_matrix(y_true, y_pred, target_names)
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        dt = t[:, j] - t[:, j].mean()
        dp = p[:, j] - p[:, j].mean()
        if np.ptp(t[:, j]) == 0 or np.ptp(p[:, j]) == 0:
            which = "truth" if np.ptp(t[:, j]) == 0 else "prediction"
            _warn_undefined("Pearson correlation", name, f"constant {which}")
            out[name] = float("nan")
            continue
        r = np.dot(dt, dp) / np.sqrt(np.dot(dt, dt) * np.dot(dp, dp))
        out[name] = float(np.clip(r, -1.0, 1.0))  # rounding can overshoot +-1 slightly
    return out


def mean_pearson(y_true, y_pred, target_names: Sequence[str]) -> float:
    """Plain mean over targets of :func:`pearson_per_target` (NaN if any target is NaN)."""
    return mean_over_targets(pearson_per_target(y_true, y_pred, target_names))


def _ccc_1d(t: np.ndarray, p: np.ndarray, name: str) -> float:
    # Population (ddof=0) moments throughout, as in the ABAW evaluation code; mixing
    # ddof between covariance and variances would bias the score.
    mt, mp = t.mean(), p.mean()
    cov = np.mean((t - mt) * (p - mp))
    denom = t.var() + p.var() + (mt - mp) ** 2
    if denom == 0:
        _warn_undefined("CCC", name, "truth and prediction are the same constant")
        return float("nan")
    return float(2.0 * cov / denom)


def ccc(y_true, y_pred) -> float:
    """Concordance correlation coefficient of two 1-D arrays (or (N, 1) columns).

    ``2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))**2)`` with population
    moments.  A constant prediction against varying truth is well defined (0, since the
    covariance vanishes); only truth and prediction equal to the same constant leaves
    the ratio undefined: NaN with an :class:`UndefinedMetricWarning`.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: y_true has shape {t.shape}, y_pred has shape {p.shape}")
    if t.ndim == 2 and t.shape[1] == 1:
        t, p = t[:, 0], p[:, 0]
    if t.ndim != 1:
        raise ValueError(f"ccc expects 1-D arrays, got shape {t.shape}; use ccc_per_target")
    if t.size == 0:
        raise ValueError("ccc of empty arrays")
    t, p, _ = _as_matrix(t[:, None], p[:, None], ["value"])
    return _ccc_1d(t[:, 0], p[:, 0], "value")


def ccc_per_target(y_true, y_pred, target_names: Sequence[str]) -> dict[str, float]:
    """:func:`ccc` for each column of (N, K) arrays, keyed by target name."""
    t, p, names = _as_matrix(y_true, y_pred, target_names)
    return {name: _ccc_1d(t[:, j], p[:, j], name) for j, name in enumerate(names)}


def f1_per_au(
    y_true, y_prob, target_names: Sequence[str], *, threshold: float = AU_THRESHOLD
) -> dict[str, float]:
    """Binary F1 per action unit, predicting positive where ``y_prob >= threshold``.

    ``y_true`` must hold only 0 and 1.  F1 = 2 TP / (2 TP + FP + FN); an AU with no
    positive in truth and none predicted has no defined F1: NaN with an
    :class:`UndefinedMetricWarning` (scikit-learn would report 0 here).
    """
    t, prob, names = _as_matrix(y_true, y_prob, target_names, pred_name="y_prob")
    if not np.isin(t, (0.0, 1.0)).all():
        bad = np.unique(t[~np.isin(t, (0.0, 1.0))])[:5]
        raise ValueError(f"y_true must be binary (0/1), found values {bad.tolist()}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    pred = prob >= threshold
    truth = t == 1.0
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        tp = int(np.sum(truth[:, j] & pred[:, j]))
        fp = int(np.sum(~truth[:, j] & pred[:, j]))
        fn = int(np.sum(truth[:, j] & ~pred[:, j]))
        denom = 2 * tp + fp + fn
        if denom == 0:
            _warn_undefined("F1", name, "no positive in truth and none predicted")
            out[name] = float("nan")
        else:
            out[name] = 2 * tp / denom
    return out


def mean_f1(y_true, y_prob, target_names: Sequence[str], *, threshold: float = AU_THRESHOLD) -> float:
    """Plain mean over AUs of :func:`f1_per_au` (NaN if any AU is NaN)."""
    return mean_over_targets(f1_per_au(y_true, y_prob, target_names, threshold=threshold))


def score_task(metric: str, y_true, y_pred, target_names: Sequence[str]) -> dict:
    """The challenge score of one task: ``{"per_target": {...}, "mean": float, "metric": metric}``.

    ``metric`` is a :class:`affectflow.tasks.TaskSpec` metric: ``pearson`` (EMI, ERI), ``ccc``
    (VA) or ``f1`` (AU, predictions binarised at :data:`AU_THRESHOLD`). The mean is
    :func:`mean_over_targets` (NaN when any target is undefined, as the challenge's evaluation
    would have it).
    """
    per_target_of = {"pearson": pearson_per_target, "ccc": ccc_per_target, "f1": f1_per_au}
    if metric not in per_target_of:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(per_target_of)}")
    per_target = per_target_of[metric](y_true, y_pred, target_names)
    return {"metric": metric, "per_target": per_target, "mean": mean_over_targets(per_target)}
