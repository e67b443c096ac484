"""Validation-driven training: what a run monitors (its ``monitor`` key), on which clips, which way
is better, and the validation score of one epoch's predictions.

A run's ``monitor`` names a validation metric and a validation set, e.g.
``monitor: {metric: pearson, split: official}``:

- ``metric``: ``pearson``, ``ccc``, ``f1`` (the task's own metric by default: its
  :data:`affectflow.tasks.TASKS` metric, pearson for the generic ``clip`` task) or ``loss`` (the
  run's loss on the validation set);
- ``split``: ``inner`` (a seeded random ``fraction``, 0.1 by default, of the fold's training clips
  held out, whole groups at a time: see :func:`affectflow.data.folds.group_keys`), ``official`` (the
  labelled clips of the organisers' validation split, manifest split ``val``: those in the fold's
  training part are held out from training; those in the fold's out-of-fold part are monitored
  too, which makes the out-of-fold score in-sample, and the fold's ``metrics.json`` says so) or
  ``heldout`` (the fold's own out-of-fold clips: nothing more is held out from training, and the
  out-of-fold score is in-sample; the recipes of papers 001, 003 and 004 use it, our reading of
  cross-validations that do not say which set picks a fold's epoch).

The plateau schedule, early stopping and the kept weights all follow the monitored value; with a
monitor the best epoch's weights are always the ones kept. Torch-free: the settings check it at
workflow start.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from affectflow.metrics import UndefinedMetricWarning
from affectflow.scoring import MIN_SCORED_ROWS, score_arrays
from affectflow.tasks import TASKS

__all__ = ["MONITOR_KEYS", "MONITOR_METRICS", "MONITOR_SPLITS", "Monitor", "check_scoreable", "is_better",
           "parse_monitor", "scoreable_targets", "task_metric", "validation_score"]

#: What a monitor may watch: the ABAW metrics (higher is better) and the run's loss (lower is better).
MONITOR_METRICS = ("pearson", "ccc", "f1", "loss")
#: Where its validation clips come from.
MONITOR_SPLITS = ("inner", "official", "heldout")
MONITOR_KEYS = ("metric", "split", "fraction")
#: Share of the fold's training clips an ``inner`` monitor holds out unless it says.
DEFAULT_INNER_FRACTION = 0.1
#: The manifest split of the organisers' validation clips (an ``official`` monitor's clips).
OFFICIAL_VAL_SPLIT = "val"
#: The metric of a task that :data:`affectflow.tasks.TASKS` does not know (the generic ``clip`` task).
GENERIC_METRIC = "pearson"


@dataclass(frozen=True)
class Monitor:
    """A run's validated ``monitor``: the metric, the validation split and (inner) the held-out share."""

    metric: str
    split: str
    fraction: float = 0.0  # inner only

    @property
    def mode(self) -> str:
        """``"max"`` for a metric, ``"min"`` for the loss: how the schedule and the kept epoch compare."""
        return "min" if self.metric == "loss" else "max"

    def describe(self) -> dict:
        """What ``metrics.json`` records of the monitor."""
        return {"metric": self.metric, "split": self.split, **({"fraction": self.fraction} if self.split == "inner"
                                                                else {})}


def is_better(value: float, best: float, mode: str) -> bool:
    """Whether ``value`` beats ``best`` (``mode`` ``min`` or ``max``); NaN never does. The one comparison
    behind the kept epoch and early stopping."""
    return bool(value < best) if mode == "min" else bool(value > best)


def task_metric(task: str) -> str:
    """The metric a task is scored with: its :data:`~affectflow.tasks.TASKS` metric, else pearson."""
    return TASKS[task].metric if task in TASKS else GENERIC_METRIC


def parse_monitor(monitor: Mapping, *, task: str, val_fraction: float = 0.0) -> Monitor | None:
    """The :class:`Monitor` of a run's ``monitor`` mapping (None for an empty one: the run monitors what
    it always did, the held-out loss of ``val_fraction`` or the training loss).

    A bad value fails naming its key. ``val_fraction`` (the older held-out share) and a monitor do not
    mix, except that an ``inner`` monitor without ``fraction`` takes a positive ``val_fraction`` as
    its own.
    """
    if not isinstance(monitor, Mapping):
        raise ValueError(f"monitor {monitor!r}: expected a mapping such as {{metric: pearson, split: official}}")
    if not monitor:
        return None
    unknown = sorted(set(monitor) - set(MONITOR_KEYS), key=str)
    if unknown:
        raise ValueError(f"monitor: unknown key(s) {unknown}; known: {', '.join(MONITOR_KEYS)}")
    metric = monitor.get("metric", task_metric(task))
    if metric not in MONITOR_METRICS:
        raise ValueError(f"monitor.metric {metric!r}; known: {', '.join(MONITOR_METRICS)}")
    if metric == "f1" and not (task in TASKS and TASKS[task].binary):
        raise ValueError(f"monitor.metric f1 scores binary targets; task {task!r} is not binary")
    split = monitor.get("split")
    if split not in MONITOR_SPLITS:
        raise ValueError(f"monitor.split {split!r}: name the validation set, one of {', '.join(MONITOR_SPLITS)}")
    if split != "inner":
        if "fraction" in monitor:
            raise ValueError(f"monitor.fraction applies to split inner only (split {split} monitors "
                             + ("the organisers' validation clips)" if split == "official" else
                                "the fold's out-of-fold clips)"))
        if val_fraction > 0:
            raise ValueError(f"monitor.split {split} names its validation clips; val_fraction "
                             f"{val_fraction} would hold out more: set val_fraction: 0")
        return Monitor(metric, split)
    default = val_fraction if val_fraction > 0 else DEFAULT_INNER_FRACTION
    fraction = monitor.get("fraction", default)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"monitor.fraction must lie in (0, 1), got {fraction!r}")
    if val_fraction > 0 and fraction != val_fraction:
        raise ValueError(f"monitor.fraction {fraction} and val_fraction {val_fraction} disagree: set one of them")
    return Monitor(metric, split, float(fraction))


def scoreable_targets(truth: np.ndarray) -> np.ndarray:
    """Mask of the (N, K) ``truth``'s targets a validation set can score: at least
    :data:`~affectflow.scoring.MIN_SCORED_ROWS` labelled rows that are not all one value."""
    truth = np.asarray(truth, np.float64)
    usable = np.zeros(truth.shape[1], bool)
    for k in range(truth.shape[1]):
        values = truth[np.isfinite(truth[:, k]), k]
        usable[k] = len(values) >= MIN_SCORED_ROWS and np.ptp(values) > 0
    return usable


def check_scoreable(metric: str, truth: np.ndarray) -> np.ndarray:
    """:func:`scoreable_targets` of the validation ``truth``; raises when there is none, so that a run
    fails before its first epoch rather than after it."""
    usable = scoreable_targets(truth)
    if not usable.any():
        raise ValueError(f"the validation set ({len(truth)} rows) has no target with two distinct labels: "
                         f"monitor.metric {metric} cannot score it")
    return usable


def validation_score(metric: str, truth: np.ndarray, pred: np.ndarray, targets: Sequence[str] | None = None
                     ) -> float:
    """The monitored score of (N, K) predictions against the validation ``truth`` (NaN: not labelled).

    Scored with :func:`affectflow.scoring.score_arrays`, averaged over the targets the validation
    truth can score (:func:`scoreable_targets`: a target without two distinct labels has no score on
    this set, whatever the model does). NaN when one of those targets has no score this epoch (e.g. a
    constant prediction): such an epoch is never kept. Raises when the set can score no target.
    """
    truth, pred = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    targets = list(targets) if targets is not None else [f"target {k}" for k in range(truth.shape[1])]
    usable = check_scoreable(metric, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN is the answer: the epoch is not kept
        score = score_arrays(metric, truth[:, usable], pred[:, usable], [t for t, u in zip(targets, usable,
                                                                                         strict=True) if u])
    return float(score["mean"]) if math.isfinite(score["mean"]) else math.nan
