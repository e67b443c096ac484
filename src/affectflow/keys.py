"""Keyed tables read back from csv/tsv files: integer key columns and key + target tables, checked once.

Every table the pipeline reads back (manifest, prediction tables, frame labels, submissions)
keys its rows by integers; a value that went through a float column (``12.0``) is accepted, a
fraction, text or an empty cell fails naming the file, the line and the value
(:func:`integer_column`).

A *key + target table* (prediction tables such as ``oof.csv`` and ``test.csv``, the truth of
:func:`affectflow.scoring.read_truth`) holds the task's key columns
(:func:`affectflow.tasks.key_columns`: ``id`` or ``id, frame``) then its targets.
:func:`checked_table` is the one check of such a table and :func:`read_prediction_table` reads
one from a csv file; both raise :class:`TableError`. Callers with an error type of their own
(the ensemble's, the submission's) re-raise it as theirs, message unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["KeyError_", "TableError", "checked_table", "integer_column", "read_prediction_table"]


class TableError(ValueError):
    """A keyed table that is missing, unreadable or malformed; the message names where, the line and the value."""


class KeyError_(TableError):  # noqa: N801  (a ValueError, not the builtin KeyError)
    """A key column value that is not an integer; the message names where and the value."""


def integer_column(column: pd.Series, *, where: str, name: str) -> pd.Series:
    """``column`` as int64; a non-integer value raises :class:`KeyError_` naming ``where``.

    ``where`` is the file (or table) the column came from; the line given in the message is the
    row's line in a file with one header line (row + 2, 1-based).
    """
    if column.dtype.kind in "iu":
        return column.astype("int64")
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers != np.floor(numbers))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = column.iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # 3.5, not np.float64(3.5)
        raise KeyError_(f"{where}: line {row + 2}: {name} {value!r} is not an integer")
    return numbers.astype("int64")


def checked_table(frame: pd.DataFrame, keys: Sequence[str], targets: Sequence[str], *, where: str) -> pd.DataFrame:
    """``frame``'s key columns (int64, unique) then its targets (float64; NaN: no value), on a fresh index.

    A missing column, a key that is not an integer, a target value that is not a number and a
    duplicated key raise :class:`TableError` naming ``where`` (a file, or e.g. "truth table"),
    the line (row + 2: a file with one header line) and the value. Keys must match exactly
    across tables, or joining them silently misses rows.
    """
    keys, targets = list(keys), list(targets)
    missing = [c for c in (*keys, *targets) if c not in frame.columns]
    if missing:
        raise TableError(f"{where}: missing column(s) {missing} (expected {keys + targets})")
    frame = frame[keys + targets].reset_index(drop=True)
    for col in keys:
        frame[col] = integer_column(frame[col], where=where, name=col)
    for col in targets:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TableError(f"{where}: line {row + 2}: {col} {frame[col].iloc[row]!r} is not a number")
        frame[col] = numeric.astype("float64")
    dup = frame.duplicated(keys)
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        key = {c: int(frame[c].iloc[row]) for c in keys}
        raise TableError(f"{where}: line {row + 2}: duplicate row for {key}")
    return frame


def read_prediction_table(path: str | os.PathLike, keys: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
    """The prediction table (csv) at ``path``, :func:`checked_table`'d; a missing or unreadable file raises too."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: prediction table not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: cannot be read as CSV: {exc}") from exc
    return checked_table(frame, keys, targets, where=str(path))
