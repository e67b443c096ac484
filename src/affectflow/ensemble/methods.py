"""How an ensemble weighs its members: the registered ensemblers, the NaN-aware combination, AU thresholds.

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

:func:`combine` applies weights to rows some members do not predict; :func:`tune_thresholds`
picks one F1-maximising threshold per AU. Only numpy and scipy are needed (no torch).
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls

from affectflow.ensemble.errors import EnsembleError
from affectflow.metrics import AU_THRESHOLD, UndefinedMetricWarning, f1_per_au, score_task
from affectflow.registry import Registry

__all__ = ["ENSEMBLERS", "THRESHOLD_GRID", "check_params", "combine", "tune_thresholds"]

log = logging.getLogger(__name__)

#: Candidate AU thresholds: 0.05, 0.10, ..., 0.95 (the challenge's :data:`~affectflow.metrics.AU_THRESHOLD`,
#: 0.5, exactly included).
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))

Ensembler = Callable[..., np.ndarray]
#: Ensemblers by name. Each is called as ``fit(preds, y, *, metric, **params)`` with ``preds`` of
#: shape (members, rows) and ``y`` of shape (rows,), all finite, and returns (members,) weights.
ENSEMBLERS: Registry[Ensembler] = Registry("ensembler")


# -- metric of one target ---------------------------------------------------------------------


def _searched(score: Callable[[], float]) -> float:
    """``score()``, or -inf where it is undefined (NaN), so that a search never picks it."""
    with warnings.catch_warnings():
        # Undefined scores (constant prediction, no positive) are expected while searching; they lose.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = score()
    return value if math.isfinite(value) else -math.inf


def _target_score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The task metric of one target; -inf where it is undefined, so selection never picks it."""
    return _searched(lambda: score_task(metric, y[:, None], p[:, None], ["target"])["mean"])


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


def check_params(method: str, fit: Ensembler, params: Mapping) -> None:
    """Fail naming the parameters ``fit`` accepts when ``params`` holds any other."""
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


def _f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """F1 of one AU's truth ``y`` and probabilities ``p`` at ``threshold``; -inf where undefined."""
    return _searched(lambda: f1_per_au(y[:, None], p[:, None], ["target"], threshold=threshold)["target"])


def tune_thresholds(y_true: np.ndarray, y_prob: np.ndarray, targets: Sequence[str],
                    *, grid: Sequence[float] = THRESHOLD_GRID) -> dict[str, float]:
    """One threshold per column maximising binary F1 (:func:`affectflow.metrics.f1_per_au`).

    Rows where truth or probability is NaN are ignored per column. Ties go to the threshold
    closest to :data:`~affectflow.metrics.AU_THRESHOLD` (the challenge's own rule), which is
    also what a column with no usable row or an undefined F1 gets.

    An option, not a paper's method (Deng et al. 2023, 004, state no threshold): F1 measured on the
    rows the thresholds were tuned on is in-sample, so the ensemble marks that score as such.
    """
    y_true, y_prob = np.asarray(y_true, float), np.asarray(y_prob, float)
    order = sorted(grid, key=lambda t: (abs(t - AU_THRESHOLD), t))  # first maximum = closest to the rule's
    out = {}
    for j, name in enumerate(targets):
        ok = np.isfinite(y_true[:, j]) & np.isfinite(y_prob[:, j])
        if not ok.any():
            out[name] = float(AU_THRESHOLD)
            continue
        y, p = y_true[ok, j], y_prob[ok, j]
        scores = [_f1_at(y, p, t) for t in order]
        out[name] = float(order[int(np.argmax(scores))])
    return out
