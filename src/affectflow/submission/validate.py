"""Checking a submission file: header, every value, and exactly the expected keys.

The checks run over blocks of rows (vectorised) so that a 3-million-frame Aff-Wild2 file is
validated in bounded memory; errors come in file order and name the file and line.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.submission.errors import SubmissionError, first_few
from affectflow.submission.expected import expected_keys, submission_header
from affectflow.tasks import TaskSpec

__all__ = ["validate_file", "validate_submission"]

_CHUNK = 65536  # rows validated at once (vectorised), bounding memory on 3M-frame files


def validate_submission(path: str | os.PathLike, spec: TaskSpec, expected: pd.DataFrame) -> int:
    """Check a submission file for ``spec`` against ``expected``; return its number of rows.

    ``expected`` is what :func:`~affectflow.submission.expected.expected_rows` returns. Raises
    :class:`SubmissionError` naming the file (and line) for: a missing file; a header other than
    exactly :func:`~affectflow.submission.expected.submission_header`; a blank row or a row with
    the wrong number of columns; an EMI Filename that is not an integer; a value that is empty,
    not a number, NaN, infinite or outside the task's range; an AU value other than exactly ``0``
    or ``1``; a duplicated key; a key not expected; an expected key missing (the first 5 of each
    listed). Any row order is accepted.
    """
    return validate_file(Path(path), spec, expected_keys(spec, expected), shown=Path(path))


def validate_file(path: Path, spec: TaskSpec, expected: list, *, shown: Path) -> int:
    """Validate ``path`` against the submission keys ``expected``; return its number of rows.

    Error messages name ``shown``: the writer checks its temporary file under the final path's name.
    """
    if not path.is_file():
        raise SubmissionError(f"{shown}: submission file not found")
    header = submission_header(spec)
    keys: list = []
    key_lines: list[int] = []
    rows: list[list[str]] = []
    lines: list[int] = []

    def flush() -> None:
        _check_block(spec, rows, lines, shown, keys)
        key_lines.extend(lines)
        rows.clear()
        lines.clear()

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None or tuple(first) != header:
            raise SubmissionError(
                f"{shown}, line 1: wrong header {first!r}, expected exactly {','.join(header)}"
            )
        for cells in reader:
            if len(cells) != len(header):
                flush()  # report an earlier bad value first: errors come in file order
                what = "empty row" if not cells else f"{len(cells)} columns, expected {len(header)}"
                raise SubmissionError(f"{shown}, line {reader.line_num}: {what}")
            rows.append(cells)
            lines.append(reader.line_num)
            if len(rows) >= _CHUNK:
                flush()
        flush()
    if keys == expected:  # the writer's case: every key once, in the expected order
        return len(keys)
    _check_keys(spec, keys, key_lines, expected, shown)
    return len(keys)


def _block_keys(spec: TaskSpec, rows: list, lines: list, shown: Path) -> list:
    """The keys of a block of rows: ints for EMI (checked), non-empty strings otherwise."""
    key_name = spec.submission_key
    keys: list = []
    for cells, line in zip(rows, lines, strict=True):
        key = cells[0]
        if spec.name == "emi":
            try:
                keys.append(int(key))
            except ValueError:
                raise SubmissionError(f"{shown}, line {line}: {key_name} {key!r} is not an integer") from None
        else:
            if not key.strip():
                raise SubmissionError(f"{shown}, line {line}: empty {key_name}")
            keys.append(key)
    return keys


def _check_block(spec: TaskSpec, rows: list, lines: list, shown: Path, keys: list) -> None:
    """Vectorised checks of a block of rows; append their keys to ``keys``."""
    if not rows:
        return
    keys.extend(_block_keys(spec, rows, lines, shown))
    text = np.array([cells[1:] for cells in rows], dtype=str)
    if spec.binary:
        bad = (text != "0") & (text != "1")
        if bad.any():
            i, k = np.argwhere(bad)[0]
            raise SubmissionError(
                f"{shown}, line {lines[i]}: {spec.targets[k]} value {str(text[i, k])!r} is not 0 or 1"
            )
        return
    try:
        values = text.astype("float64")
    except ValueError:
        for i, cells in enumerate(rows):  # slow path, only to name the bad cell
            for target, cell in zip(spec.targets, cells[1:], strict=True):
                try:
                    float(cell)
                except ValueError:
                    raise SubmissionError(
                        f"{shown}, line {lines[i]}: {target} value {cell!r} is not a number"
                    ) from None
        raise  # pragma: no cover - numpy and float() disagree
    bad = ~((values >= spec.low) & (values <= spec.high))  # NaN fails both comparisons
    if bad.any():
        i, k = np.argwhere(bad)[0]
        value = values[i, k]
        reason = "is NaN" if math.isnan(value) else (
            f"{text[i, k]} is outside [{spec.low:g}, {spec.high:g}]"
        )
        raise SubmissionError(f"{shown}, line {lines[i]}: {spec.targets[k]} value {reason}")


def _check_keys(spec: TaskSpec, keys: list, key_lines: list, expected: list, shown: Path) -> None:
    """Duplicated, unexpected and missing keys, each listing the first few with their lines."""
    key_name = spec.submission_key
    first: dict = {}
    dups: list[tuple[object, int, int]] = []  # key, line, line of its first occurrence
    for key, line in zip(keys, key_lines, strict=True):
        if key in first:
            dups.append((key, line, first[key]))
        else:
            first[key] = line
    if dups:
        key, line, line0 = dups[0]
        raise SubmissionError(
            f"{shown}, line {line}: duplicate {key_name} {key} (first on line {line0}); "
            f"{len(dups)} duplicated row(s): {first_few([f'{k} (line {n})' for k, n, _ in dups])}"
        )
    wanted = set(expected)
    extra = [(k, first[k]) for k in keys if k not in wanted]
    if extra:
        raise SubmissionError(
            f"{shown}, line {extra[0][1]}: {len(extra)} unexpected row(s), {key_name} not "
            f"expected: {first_few([f'{k} (line {n})' for k, n in extra])}"
        )
    missing = [k for k in expected if k not in first]
    if missing:
        last = key_lines[-1] if key_lines else 1
        raise SubmissionError(
            f"{shown}: {len(missing)} expected row(s) missing (the file ends at line {last}), "
            f"{key_name}: {first_few(missing)}"
        )
