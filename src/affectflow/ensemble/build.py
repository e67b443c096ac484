"""Fitting an ensemble of trained runs on their out-of-fold (OOF) predictions, and writing it.

:func:`build_ensemble` aligns the members (:mod:`~affectflow.ensemble.tables`) on the task's key
columns (``id`` or ``id, frame``), fits one weight per member and target on the OOF rows that
have truth with a registered ensembler (:mod:`~affectflow.ensemble.methods`), and applies the
same weights to the test predictions.

Missing predictions (a NaN row: no face, no audio) are handled so that nothing is lost: weights
are fitted on the rows every member predicts, and when applied a row's weights are renormalised
over the members that do predict it. If all members predicting a row have weight 0, the row takes
their plain mean; a row no member predicts stays NaN (the submission writer fills it).

For AU (``spec.binary``) ``thresholds=True`` tunes one threshold per AU on the ensemble's OOF
probabilities (grid :data:`~affectflow.ensemble.methods.THRESHOLD_GRID`, maximising F1) and writes
``oof.csv``/``test.csv`` as 0/1 values binarised with them, so the submission writer's fixed 0.5
rule keeps the tuned decision. Without it the ensemble writes probabilities, which the submission
binarises at 0.5 (the challenge's rule, and Deng et al. 2023's, 004, which tunes no threshold).

A member trained on every labelled clip (``fold_scheme: mix``, e.g. Hallmen et al. 2024's final
train+val model) has no OOF rows: method ``mean`` combines it (its OOF score is then that of the
other members, or undefined), every other method and ``thresholds`` refuse it, naming it.

Whatever is fitted on the OOF rows (tuned thresholds, member weights of every method but ``mean``)
is scored on those same rows, so that OOF score is in-sample, higher than a held-out one would
be: ``score.json`` says so (``in_sample``, ``in_sample_note``) and, with thresholds, keeps the
score at the 0.5 cut as ``oof_at_0.5`` (out-of-sample when the weights are fixed: method ``mean``).

Scores are :func:`affectflow.scoring.score_arrays`' (per target, on the rows where that target is
labelled and predicted), against the truth of :func:`affectflow.scoring.read_truth`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.ensemble.apply import binarise, combine_members
from affectflow.ensemble.errors import EnsembleError, ensemble_errors
from affectflow.ensemble.methods import ENSEMBLERS, Ensembler, check_params, combine, tune_thresholds
from affectflow.ensemble.tables import align, fold_mean, key_index, run_oof, write_prediction_table
from affectflow.keys import checked_table
from affectflow.runtime.atomic import write_json_atomic
from affectflow.scoring import MIN_SCORED_ROWS, read_truth, score_arrays
from affectflow.tasks import TaskSpec, key_columns, task_spec

__all__ = ["build_ensemble", "build_ensemble_job"]

log = logging.getLogger(__name__)


def _fit_weights(
    fit: Ensembler, method: str, oof: np.ndarray, y: np.ndarray, targets: list[str], *, metric: str, params: dict
) -> tuple[np.ndarray, dict[str, int]]:
    """(members, targets) weights, each target fitted on the OOF rows with truth that every member predicts."""
    weights = np.zeros((len(oof), len(targets)))
    fit_rows = {}
    for j, target in enumerate(targets):
        rows = np.isfinite(y[:, j]) & np.isfinite(oof[:, :, j]).all(axis=0)
        fit_rows[target] = int(rows.sum())
        if method != "mean" and rows.sum() < MIN_SCORED_ROWS:
            raise EnsembleError(f"{method}: target {target!r} has {int(rows.sum())} OOF row(s) with truth that "
                                f"every member predicts; at least {MIN_SCORED_ROWS} are needed to fit weights")
        weights[:, j] = fit(oof[:, rows, j].astype(np.float64), y[rows, j], metric=metric, **params)
    return weights, fit_rows


def _in_sample_label(method: str, *, thresholds: bool) -> dict:
    """``{"in_sample", "in_sample_note"}`` of an ensemble's OOF score: in-sample when anything was
    fitted on the OOF rows it is scored on (per-AU thresholds when tuned; member weights for every
    method but ``mean``, whose weights are fixed), the note saying what."""
    fitted = [what for what, done in (("per-AU thresholds", thresholds), ("member weights", method != "mean")) if done]
    note = f"{' and '.join(fitted)} fitted on these OOF predictions: the OOF score is in-sample (optimistic)"
    return {"in_sample": bool(fitted), "in_sample_note": note if fitted else None}


def _unscored_members(names: list[str], oofs, method: str, thresholds: bool) -> list[str]:
    """The members without OOF rows (``fold_scheme: mix``); an error if the ensemble would fit on them."""
    unscored = [n for n, oof in zip(names, oofs, strict=True) if oof.empty]
    if unscored and (method != "mean" or thresholds):
        raise EnsembleError(f"member(s) {unscored} have no out-of-fold rows (fold_scheme mix trains on every "
                            f"labelled clip): only method mean without thresholds, which fits nothing on OOF "
                            f"rows, can combine them (method {method!r}, thresholds {bool(thresholds)})")
    return unscored


def build_ensemble(
    members: Mapping[str, Sequence[str | os.PathLike]],
    truth: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    spec: TaskSpec,
    method: str,
    params: Mapping | None = None,
    thresholds: bool = False,
    test: bool = True,
) -> dict:
    """Fit ensemble ``method`` on the members' OOF predictions; write its predictions and scores.

    ``members`` maps a run name to its fold directories; ``truth`` holds the key columns and
    targets of the labelled rows (:func:`affectflow.scoring.read_truth`; NaN targets are not
    scored). ``params`` go to the ensembler (``greedy``: ``rounds``). Writes to ``out_dir``:

    - ``oof.csv``, ``test.csv``: key columns + targets (AU with ``thresholds``: 0/1 values);
      ``test.csv`` only with ``test`` (the workflow applies the fitted ensemble to the test split
      in a step of its own, :func:`affectflow.ensemble.apply.apply_ensemble_job`, the one a
      predicted video set goes through; ``test`` uses the same combination);
    - ``members.json``: method, params, members, per-target weights per member, AU thresholds
      (or null) and the number of OOF rows each target was fitted on;
    - ``score.json``: ``{"method", "task", "metric", "oof": {per_target, mean, rows},
      "members": {name: {per_target, mean, rows}}, "weights", "thresholds", "in_sample",
      "in_sample_note", "unscored_members"}`` (members without OOF rows, left out of the OOF score)
      and, with thresholds, ``"oof_at_0.5"`` (the ensemble's F1 before
      tuning). ``in_sample`` is true when thresholds or weights were fitted on the scored OOF
      rows; the note says which (null otherwise). Undefined scores are null.

    Returns the score dict (with NaN where undefined).
    """
    keys, targets = key_columns(spec), list(spec.targets)
    fit = ENSEMBLERS.get(method)
    params = dict(params or {})
    check_params(method, fit, params)
    if thresholds and not spec.binary:
        raise EnsembleError(f"thresholds=True needs a binary task (au), not {spec.name!r} ({spec.metric})")
    if not members:
        raise EnsembleError("build_ensemble: no members given")
    with ensemble_errors():
        truth = checked_table(truth, keys, targets, where="truth table")

    names = list(members)
    oofs = [run_oof(members[n], spec) for n in names]
    oof_keys, oof_arr = align(oofs, keys, targets)
    unscored = _unscored_members(names, oofs, method, thresholds)
    y = truth.set_index(keys)[targets].reindex(key_index(oof_keys, keys)).to_numpy(np.float64)
    if len(unscored) < len(names) and not np.isfinite(y).any():
        raise EnsembleError("no OOF row of any member has truth: do the members and the truth "
                            f"table share {keys} values?")
    weights, fit_rows = _fit_weights(fit, method, oof_arr, y, targets, metric=spec.metric, params=params)
    oof_pred = np.column_stack([combine(oof_arr[:, :, j], weights[:, j]) for j in range(len(targets))])

    score: dict = {"method": method, "task": spec.name, "metric": spec.metric}
    tuned = None
    if thresholds:
        score["oof_at_0.5"] = score_arrays(spec.metric, y, oof_pred, targets)
        tuned = tune_thresholds(y, oof_pred, targets)
        cut = np.array([tuned[t] for t in targets])
        # Binarised here (and where the ensemble is applied) so that the submission writer's
        # fixed 0.5 rule keeps the tuned decision.
        oof_pred = binarise(oof_pred, cut)
    score["oof"] = score_arrays(spec.metric, y, oof_pred, targets)
    score["members"] = {n: score_arrays(spec.metric, y, oof_arr[i].astype(np.float64), targets)
                        for i, n in enumerate(names)}
    score["weights"] = {t: {n: float(weights[i, j]) for i, n in enumerate(names)} for j, t in enumerate(targets)}
    score["thresholds"] = tuned
    score.update(_in_sample_label(method, thresholds=thresholds))
    # the OOF score leaves out a member without OOF rows: say which, so it is not read as theirs
    score["unscored_members"] = unscored

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_prediction_table(out_dir / "oof.csv", oof_keys, oof_pred, targets)
    if test:
        tests = [fold_mean([Path(d) / "test.csv" for d in members[n]], spec) for n in names]
        table = combine_members(tests, names, score["weights"], tuned, spec)
        write_prediction_table(out_dir / "test.csv", table[keys], table[targets].to_numpy(np.float64), targets)
    write_json_atomic(out_dir / "members.json", {"method": method, "params": params, "task": spec.name,
                                                 "members": names, "weights": score["weights"], "thresholds": tuned,
                                                 "fit_rows": fit_rows})
    write_json_atomic(out_dir / "score.json", score)
    log.info("ensemble %s of %s: OOF %s %.4f on %d rows%s", method, ", ".join(names), spec.metric,
             score["oof"]["mean"], score["oof"]["rows"], f" ({score['in_sample_note']})" if score["in_sample"] else "")
    return score


def build_ensemble_job(
    members: Mapping[str, Sequence[str | os.PathLike]],
    truth_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    task: str,
    method: str,
    params: Mapping | None = None,
    thresholds: bool = False,
    test: bool = True,
) -> dict:
    """The ensemble step of the pipeline: :func:`build_ensemble` with the truth read from ``truth_path``.

    ``truth_path`` is the manifest (``manifest.tsv``, clip tasks) or the frame label table
    (``frame_labels.csv.gz``, per-frame tasks), read with :func:`affectflow.scoring.read_truth`.
    The workflow fits with ``test=False`` (OOF only) and applies the fit in a step of its own.
    Returns the score dict.
    """
    spec = task_spec(task)
    return build_ensemble(dict(members), read_truth(truth_path, spec), out_dir, spec=spec, method=method,
                          params=dict(params or {}), thresholds=bool(thresholds), test=test)
