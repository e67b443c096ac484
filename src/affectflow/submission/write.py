"""Writing the ABAW challenge submission file of any of the four tasks.

The formats, one header line then one row per key:

- EMI: ``Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy``; Filename is
  the clip's integer id; values in [0, 1].
- ERI: ``File_ID,Adoration,Amusement,Anxiety,Disgust,Empathic-Pain,Fear,Surprise``; File_ID as
  the manifest's ``name`` (e.g. ``[16708]``); values in [0, 1].
- VA: ``image_location,valence,arousal``; rows ``<track>/00001.jpg,v,a``; values in [-1, 1].
- AU: ``image_location,AU1,...,AU26``; rows ``<track>/00001.jpg,0,1,...``; integers 0 or 1.

:func:`write_submission` lists exactly the rows of
:func:`~affectflow.submission.expected.expected_rows`, fills what the predictions lack with a
documented fallback, writes to a temporary sibling, validates it with the checks of
:func:`~affectflow.submission.validate.validate_submission` and only then renames it into place,
so a file at the final path is always complete and well formed.

Fallback policy (each kind counted in the returned summary and logged):

- ``predicted``: the row's own prediction, all targets finite.
- ``nearest_frame`` (per-frame tasks): a frame without a (finite) prediction takes the value of
  the nearest predicted frame of the same track, per target; a tie takes the earlier frame.
  Frames predicted but not listed for submission still serve as sources.
- ``training_mean``: a clip without a prediction, or a track with no predicted frame at all,
  takes ``fallback`` (the training mean of each target; for AU the training positive rate, which
  is then binarised like any probability).

A row counts under the most drastic kind any of its targets needed
(training_mean > nearest_frame > predicted), so the three counts add up to the rows written.
``clipped`` counts values outside the task's range that were clipped into it (before AU
binarisation at p >= :data:`~affectflow.metrics.AU_THRESHOLD`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.keys import TableError, checked_table
from affectflow.metrics import AU_THRESHOLD
from affectflow.runtime.atomic import atomic_path
from affectflow.submission.errors import SubmissionError, first_few
from affectflow.submission.expected import expected_keys, integer_keys
from affectflow.submission.validate import validate_file
from affectflow.tasks import TaskSpec, key_columns

__all__ = ["write_submission"]

log = logging.getLogger(__name__)

# Row kinds, from the row's own prediction to the most drastic fallback (the summary's counts).
_PREDICTED, _NEAREST_FRAME, _TRAINING_MEAN = 0, 1, 2


def _check_fallback(spec: TaskSpec, fallback: Mapping[str, float]) -> np.ndarray:
    """The fallback as one finite float per target, in the spec's order."""
    missing = [t for t in spec.targets if t not in fallback]
    if missing:
        raise SubmissionError(f"fallback lacks target(s) {missing} (needs all of {list(spec.targets)})")
    out = []
    for t in spec.targets:
        value = float(fallback[t])
        if not math.isfinite(value):
            raise SubmissionError(f"fallback value for {t!r} is {value}, must be finite")
        out.append(value)
    return np.asarray(out, "float64")


def _key_table(spec: TaskSpec, table: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """The task's key columns of ``table`` (``id``; ``id, frame``) as int64, on a fresh index."""
    keys = pd.DataFrame({"id": integer_keys(table["id"], where=where, name="id")})
    if spec.per_frame:
        keys["frame"] = integer_keys(table["frame"], where=where, name="frame")
    return keys


def _prediction_table(spec: TaskSpec, predictions: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Key columns as int64 (unique) and targets as float64 (:func:`affectflow.keys.checked_table`), no inf."""
    targets = list(spec.targets)
    try:
        table = checked_table(predictions, key_columns(spec), targets, where=where)
    except TableError as exc:
        raise SubmissionError(str(exc)) from None
    inf = np.isinf(table[targets].to_numpy())
    if inf.any():
        rows = table.loc[inf.any(axis=1), key_columns(spec)]
        raise SubmissionError(f"{where}: infinite prediction(s) for {first_few(rows.to_dict('records'))}")
    return table


def _drop_unexpected(spec: TaskSpec, preds: pd.DataFrame, expected_ids: set) -> tuple[pd.DataFrame, int]:
    """Predictions of expected ids only, and how many rows were dropped.

    A clip prediction for an id not expected is an error; per-frame rows of tracks not submitted
    are ignored with a warning.
    """
    stray = preds["id"][~preds["id"].isin(expected_ids)]
    unused = int(len(stray))
    if unused and not spec.per_frame:
        raise SubmissionError(
            f"predictions for {unused} id(s) not expected: {first_few(sorted(stray.tolist()))}"
        )
    if unused:
        log.warning(
            "%d prediction row(s) of %d track(s) not in the submission are ignored: ids %s",
            unused, stray.nunique(), first_few(sorted(stray.unique().tolist())),
        )
        preds = preds[preds["id"].isin(expected_ids)].reset_index(drop=True)
    return preds, unused


def _nearest_fill(
    merged: pd.DataFrame, values: np.ndarray, preds: pd.DataFrame, targets: Sequence[str]
) -> np.ndarray:
    """Fill NaN in ``values`` (rows of ``merged``) from the nearest predicted frame, per target.

    Returns the mask of filled cells. Sources are every prediction row of the same id with a
    finite value for that target; a tie between an earlier and a later frame takes the earlier.
    """
    filled = np.zeros(values.shape, bool)
    holes = np.isnan(values)
    hole_rows = np.flatnonzero(holes.any(axis=1))
    if not len(hole_rows):
        return filled
    sources = preds.groupby("id").indices
    ids = merged["id"].to_numpy()
    frames = merged["frame"].to_numpy()
    by_id = pd.Series(hole_rows).groupby(ids[hole_rows]).indices
    for track, positions in by_id.items():
        src = sources.get(track)
        if src is None:
            continue  # no prediction at all for the track: the training mean fills it
        rows = hole_rows[positions]
        src_frames = preds["frame"].to_numpy()[src]
        for k, target in enumerate(targets):
            need = rows[holes[rows, k]]
            if not len(need):
                continue
            src_values = preds[target].to_numpy()[src]
            ok = np.isfinite(src_values)
            if not ok.any():
                continue
            order = np.argsort(src_frames[ok], kind="stable")
            f = src_frames[ok][order]
            v = src_values[ok][order]
            q = frames[need]
            j = np.searchsorted(f, q)  # f[j-1] < q <= f[j]
            left = np.clip(j - 1, 0, len(f) - 1)
            right = np.clip(j, 0, len(f) - 1)
            take_left = (j > 0) & ((j == len(f)) | (q - f[left] <= f[right] - q))
            values[need, k] = np.where(take_left, v[left], v[right])
            filled[need, k] = True
    return filled


def _filled_values(
    spec: TaskSpec, want: pd.DataFrame, preds: pd.DataFrame, fill: np.ndarray | None, keys: list
) -> tuple[np.ndarray, np.ndarray]:
    """Each expected row's values (rows of ``want``), holes filled, and the kind of each row."""
    targets = list(spec.targets)
    merged = want.merge(preds, on=key_columns(spec), how="left", sort=False)
    if len(merged) != len(want):  # pragma: no cover - keys are unique on both sides
        raise SubmissionError("internal error: merge changed the row count")
    values = merged[targets].to_numpy("float64", copy=True)
    kind = np.full(len(merged), _PREDICTED, "int8")
    if spec.per_frame:
        near = _nearest_fill(merged, values, preds, targets)
        kind[near.any(axis=1)] = _NEAREST_FRAME
    holes = np.isnan(values)
    hole_rows = holes.any(axis=1)
    if hole_rows.any():
        if fill is None:
            raise SubmissionError(
                f"{int(hole_rows.sum())} expected row(s) without a (complete) prediction and "
                f"no fallback given: {first_few([keys[i] for i in np.flatnonzero(hole_rows)])}"
            )
        values = np.where(holes, fill[None, :], values)
        kind[hole_rows] = _TRAINING_MEAN
    return values, kind


def _submission_frame(spec: TaskSpec, key_text: list[str], values: np.ndarray) -> pd.DataFrame:
    """The table to write: the key column then each target (AU: binarised at :data:`AU_THRESHOLD` to 0/1)."""
    frame = pd.DataFrame({spec.submission_key: key_text})
    for k, t in enumerate(spec.targets):
        frame[t] = (values[:, k] >= AU_THRESHOLD).astype("int64") if spec.binary else values[:, k]
    return frame


def _log_summary(spec: TaskSpec, final: Path, summary: dict, kind: np.ndarray, key_text: list[str]) -> None:
    """Warn about each fallback kind used (with example keys), then one line of counts."""
    for name, code, label in (
        ("nearest_frame", _NEAREST_FRAME, "nearest predicted frame"),
        ("training_mean", _TRAINING_MEAN, "training mean"),
    ):
        if summary[name]:
            examples = [key_text[i] for i in np.flatnonzero(kind == code)]
            log.warning(
                "%s: %d row(s) filled with the %s, e.g. %s", final, summary[name], label, first_few(examples)
            )
    if summary["clipped"]:
        log.info("%s: %d value(s) clipped to [%g, %g]", final, summary["clipped"], spec.low, spec.high)
    log.info(
        "%s: wrote %d %s rows (%d predicted, %d nearest frame, %d training mean; %d values clipped)",
        final, summary["rows"], spec.name, summary["predicted"], summary["nearest_frame"],
        summary["training_mean"], summary["clipped"],
    )


def write_submission(
    spec: TaskSpec,
    predictions: pd.DataFrame,
    expected: pd.DataFrame,
    path: str | os.PathLike,
    *,
    fallback: Mapping[str, float] | None,
    where: str = "predictions",
) -> dict:
    """Write the submission for ``spec`` listing exactly ``expected``, validated, atomically.

    ``predictions`` has the task's key columns (``id``; ``id, frame``) and its targets; rows
    may be missing and targets may be NaN ("this run could not predict it"). ``expected`` is
    what :func:`~affectflow.submission.expected.expected_rows` returns; rows are written in its
    order. Holes are filled as the module docstring describes: nearest predicted frame of the
    same track (per-frame tasks), else ``fallback``
    (:func:`~affectflow.submission.expected.training_fallback`). ``fallback=None`` makes any hole
    an error listing the first few keys. Values are clipped to the task's range (6 decimals);
    AU probabilities are binarised at :data:`~affectflow.metrics.AU_THRESHOLD` and written as 0/1.

    Errors (:class:`SubmissionError`; the table's errors name ``where``, the predictions' file
    when read from one, and the line): missing columns, non-integer keys, non-numeric or
    infinite predictions, duplicate prediction keys, a clip prediction for an id not expected.
    Per-frame predictions for frames not listed still serve as nearest-frame sources; those of
    tracks not expected at all are ignored and counted as ``unused``.

    The file goes to a temporary sibling, is checked with the same code as
    :func:`~affectflow.submission.validate.validate_submission`, and only then renamed to
    ``path``: on any failure nothing (and never a short file) appears at ``path``, and an older
    file there stays untouched.

    Returns ``{"task", "rows", "predicted", "nearest_frame", "training_mean", "clipped",
    "unused"}`` (row counts, except ``clipped``: values).
    """
    keys = expected_keys(spec, expected)
    fill = _check_fallback(spec, fallback) if fallback is not None else None
    preds = _prediction_table(spec, predictions, where=where)
    want = _key_table(spec, expected, where="expected")
    preds, unused = _drop_unexpected(spec, preds, set(want["id"]))
    values, kind = _filled_values(spec, want, preds, fill, keys)

    clipped = int(((values < spec.low) | (values > spec.high)).sum())
    values = np.clip(values, spec.low, spec.high)
    key_text = [str(k) for k in keys]
    frame = _submission_frame(spec, key_text, values)
    final = Path(path)
    with atomic_path(final) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n", encoding="utf-8")
        # Validate the temporary file: if this raises, atomic_path removes it and the final
        # path is left untouched, so a short or bad file never appears there.
        rows = validate_file(tmp, spec, keys, shown=final)
    summary = {
        "task": spec.name,
        "rows": rows,
        "predicted": int((kind == _PREDICTED).sum()),
        "nearest_frame": int((kind == _NEAREST_FRAME).sum()),
        "training_mean": int((kind == _TRAINING_MEAN).sum()),
        "clipped": clipped,
        "unused": unused,
    }
    _log_summary(spec, final, summary, kind, key_text)
    return summary
