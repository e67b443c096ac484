"""Integer key columns (clip ids, frame numbers) read from csv/tsv tables, checked once.

Every table the pipeline reads back (manifest, prediction tables, frame labels, submissions)
keys its rows by integers; a value that went through a float column (``12.0``) is accepted, a
fraction, text or an empty cell fails naming the file, the line and the value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["KeyError_", "integer_column"]


class KeyError_(ValueError):  # noqa: N801  (a ValueError, not the builtin KeyError)
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
