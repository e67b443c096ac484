"""Writing and checking EMI (Hume-Vidmimic2) challenge submission files.

A submission is a csv with the organisers' header
``Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy`` and one
row per test clip, values in [0, 1].  The file is validated before it is renamed into
place, so a file at the final path is always complete and well formed.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.atomic import atomic_path
from affectflow.tasks import EMI_HEADER, EMI_TARGETS

__all__ = ["SubmissionError", "validate_emi_submission", "write_emi_submission"]

_SHOW = 10  # how many offending ids an error message lists


class SubmissionError(ValueError):
    """A submission cannot be written or is malformed; the message names the problem."""


def _show(ids: Iterable) -> str:
    ids = sorted(ids)
    more = f" ... ({len(ids)} in all)" if len(ids) > _SHOW else ""
    return ", ".join(str(i) for i in ids[:_SHOW]) + more


def _int_id(value: object, *, what: str) -> int:
    """Convert an id to int, rejecting floats with a fraction, bools and strings."""
    if isinstance(value, bool):
        raise SubmissionError(f"{what}: id {value!r} is not an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)  # ids that went through a float column, e.g. 12.0
    raise SubmissionError(f"{what}: id {value!r} is not an integer")


def _expected_set(expected_ids: Iterable) -> list[int]:
    ids = [_int_id(i, what="expected_ids") for i in expected_ids]
    if not ids:
        raise SubmissionError("expected_ids is empty: a submission needs at least one clip")
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        raise SubmissionError(f"expected_ids has duplicate id(s): {_show(dup)}")
    return sorted(ids)


def validate_emi_submission(path: str | os.PathLike, expected_ids: Iterable) -> int:
    """Check an EMI submission file; return its number of rows.

    Raises :class:`SubmissionError` naming the file (and line) for: a missing file, a
    header other than exactly ``Filename,Admiration,...,Joy``, a row with the wrong
    number of columns, a non-integer id, a duplicate id, missing or extra ids relative
    to ``expected_ids``, and a value that is empty, non-numeric, NaN or outside [0, 1].
    """
    return _validate(Path(path), _expected_set(expected_ids), shown=Path(path))


def _validate(path: Path, expected: list[int], *, shown: Path) -> int:
    """Validate ``path``; error messages name ``shown`` (the final path, not a temp file)."""
    if not path.is_file():
        raise SubmissionError(f"{shown}: submission file not found")
    seen: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != EMI_HEADER:
            raise SubmissionError(
                f"{shown}, line 1: wrong header {header!r}, expected exactly {','.join(EMI_HEADER)}"
            )
        for cells in reader:
            line = reader.line_num
            if len(cells) != len(EMI_HEADER):
                raise SubmissionError(
                    f"{shown}, line {line}: {len(cells)} columns, expected {len(EMI_HEADER)}"
                )
            try:
                clip_id = int(cells[0])
            except ValueError:
                raise SubmissionError(
                    f"{shown}, line {line}: Filename {cells[0]!r} is not an integer"
                ) from None
            if clip_id in seen:
                raise SubmissionError(
                    f"{shown}, line {line}: duplicate Filename {clip_id} (first on line {seen[clip_id]})"
                )
            seen[clip_id] = line
            for name, cell in zip(EMI_TARGETS, cells[1:]):
                try:
                    value = float(cell)
                except ValueError:
                    raise SubmissionError(
                        f"{shown}, line {line}: {name} value {cell!r} is not a number"
                    ) from None
                if math.isnan(value):
                    raise SubmissionError(f"{shown}, line {line}: {name} value is NaN")
                if not 0.0 <= value <= 1.0:
                    raise SubmissionError(
                        f"{shown}, line {line}: {name} value {cell} is outside [0, 1]"
                    )
    missing = set(expected) - seen.keys()
    extra = seen.keys() - set(expected)
    if missing:
        raise SubmissionError(f"{shown}: {len(missing)} expected id(s) missing: {_show(missing)}")
    if extra:
        raise SubmissionError(f"{shown}: {len(extra)} unexpected id(s): {_show(extra)}")
    return len(seen)


def _check_fallback(fallback: Mapping[str, float]) -> dict[str, float]:
    missing = [t for t in EMI_TARGETS if t not in fallback]
    if missing:
        raise SubmissionError(
            f"fallback lacks target(s) {missing} (needs all of {list(EMI_TARGETS)})"
        )
    out = {}
    for t in EMI_TARGETS:
        value = float(fallback[t])
        if not math.isfinite(value):
            raise SubmissionError(f"fallback value for {t!r} is {value}, must be finite")
        out[t] = value
    return out


def write_emi_submission(
    predictions: pd.DataFrame,
    expected_ids: Iterable,
    path: str | os.PathLike,
    *,
    fallback: Mapping[str, float] | None = None,
) -> dict:
    """Write an EMI submission for exactly ``expected_ids`` and validate it.

    ``predictions`` has an ``id`` column and the six targets of
    :data:`affectflow.tasks.EMI_TARGETS`; other columns are ignored.  The output has
    one row per expected id, sorted by id, values clipped to [0, 1] with 6 decimals.

    An expected id with no prediction row, or with NaN target values, takes the
    ``fallback`` value for those targets — the caller passes the training-set mean
    of each target — and counts as filled.  Without ``fallback`` such ids raise
    :class:`SubmissionError` listing (the first 10 of) them.  Predictions for ids not
    in ``expected_ids``, duplicate prediction ids and infinite values also raise.

    The file is written to a temporary sibling, validated with the same checks as
    :func:`validate_emi_submission`, and only then renamed to ``path``.

    Returns ``{"rows": n, "filled": ids_filled, "clipped": values_clipped}``.
    """
    missing_cols = [c for c in ("id", *EMI_TARGETS) if c not in predictions.columns]
    if missing_cols:
        raise SubmissionError(
            f"predictions lack column(s) {missing_cols} (need 'id' and {list(EMI_TARGETS)})"
        )
    expected = _expected_set(expected_ids)
    fill = _check_fallback(fallback) if fallback is not None else None

    pred_ids = [_int_id(i, what="predictions") for i in predictions["id"]]
    dup = [i for i, n in Counter(pred_ids).items() if n > 1]
    if dup:
        raise SubmissionError(f"duplicate prediction id(s): {_show(dup)}")
    extra = set(pred_ids) - set(expected)
    if extra:
        raise SubmissionError(f"predictions for {len(extra)} id(s) not expected: {_show(extra)}")

    values = predictions[list(EMI_TARGETS)].apply(pd.to_numeric, errors="coerce")
    coerced = values.isna() & predictions[list(EMI_TARGETS)].notna()
    if coerced.to_numpy().any():
        row = int(np.flatnonzero(coerced.to_numpy().any(axis=1))[0])
        raise SubmissionError(f"non-numeric prediction for id {pred_ids[row]}")
    values.index = pred_ids
    table = values.reindex(expected).astype("float64")
    arr = table.to_numpy()
    if np.isinf(arr).any():
        bad = table.index[np.isinf(arr).any(axis=1)]
        raise SubmissionError(f"infinite prediction(s) for id(s) {_show(bad)}")

    holes = np.isnan(arr)
    hole_rows = holes.any(axis=1)
    if hole_rows.any():
        if fill is None:
            raise SubmissionError(
                f"{int(hole_rows.sum())} expected id(s) without a (complete) prediction and "
                f"no fallback given: {_show(table.index[hole_rows])}"
            )
        arr = np.where(holes, np.array([fill[t] for t in EMI_TARGETS])[None, :], arr)

    clipped = int(np.sum((arr < 0.0) | (arr > 1.0)))
    arr = np.clip(arr, 0.0, 1.0)

    final = Path(path)
    with atomic_path(final) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(EMI_HEADER)
            for clip_id, row in zip(expected, arr):
                writer.writerow([clip_id, *(f"{v:.6f}" for v in row)])
        # Validate the temporary file: if this raises, atomic_path removes it and the
        # final path is left untouched, so a short or bad file never appears there.
        rows = _validate(tmp, expected, shown=final)
    return {"rows": rows, "filled": int(hole_rows.sum()), "clipped": clipped}
