"""Reader for the Hume-Vidmimic2 data set (ABAW Emotional Mimicry Intensity task).

Expected layout under ``root``::

    train_split.csv   Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
    valid_split.csv   same header
    raw/{id:05d}.mp4  one clip per id

The test set has no csv file: it is every ``raw/NNNNN.mp4`` whose id appears in
neither csv.  Files under ``raw/`` whose name is not exactly five digits plus
``.mp4`` (e.g. ``notes.txt``, ``1.mp4``, ``00012.mp4.part``) are ignored without
error, because the organisers' archive and partial downloads can leave such files
behind and they cannot be clips of this data set.

The csv files are parsed with the :mod:`csv` module rather than pandas so that every
error can name the physical line number (header = line 1) of the offending row.

:func:`organiser_files` lists the two split files a manifest is read from and
:func:`count_clips` counts the media under ``raw/``, for the workflow to plan its jobs
before the manifest exists.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import EMI_HEADER, EMI_ID_COLUMN, EMI_TARGETS, emi_media_name

__all__ = [
    "DatasetError",
    "MANIFEST_COLUMNS",
    "SPLIT_FILES",
    "STRING_COLUMNS",
    "INT_COLUMNS",
    "FLOAT_COLUMNS",
    "RAW_MEDIA_SUFFIXES",
    "check_header",
    "count_clips",
    "count_raw_media",
    "data_rows",
    "location",
    "organiser_files",
    "parse_label",
    "read_emi_manifest",
    "read_manifest",
    "write_manifest",
]

# csv file name -> split label, in the order they are read.
SPLIT_FILES: dict[str, str] = {"train_split.csv": "train", "valid_split.csv": "val"}

# Leading columns of every manifest, before the task's target columns.
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "split", "subject", "media")

#: names counted as media under ``raw/`` when sizing jobs before a manifest exists (any case)
RAW_MEDIA_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav")

_MEDIA_RE = re.compile(r"^(\d{5})\.mp4$")
_ID_RE = re.compile(r"^\d+$")


class DatasetError(ValueError):
    """A data set file is missing or malformed; the message names the file, row and reason."""


def location(path: Path, line: int | None = None) -> str:
    """Where in a data set file an error is: ``path``, or ``path, line N`` (header = line 1)."""
    return f"{path}" if line is None else f"{path}, line {line}"


def check_header(path: Path, header: list[str], required: tuple[str, ...], *,
                 optional: tuple[str, ...] = ()) -> list[str]:
    """The stripped header of csv ``path``; a missing, unexpected or duplicated column raises
    :class:`DatasetError` naming them all (line 1)."""
    header = [name.strip() for name in header]
    allowed = (*required, *optional)
    missing = [c for c in required if c not in header]
    unexpected = [c for c in header if c not in allowed]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if missing or unexpected or duplicated:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if unexpected:
            parts.append(f"unexpected column(s) {unexpected}")
        if duplicated:
            parts.append(f"duplicated column(s) {duplicated}")
        expected = (f"{','.join(required)} (optional: {','.join(optional)})" if optional
                    else f"exactly {','.join(required)}")
        raise DatasetError(f"{location(path, 1)}: bad header: {'; '.join(parts)} (expected {expected})")
    return header


def data_rows(reader, width: int, path: Path):
    """Yield ``(line, stripped cells)`` for each non-blank row of a csv ``reader`` after its
    header; a row with other than ``width`` fields raises naming the line."""
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line, e.g. a trailing empty line
        if len(cells) != width:
            raise DatasetError(f"{location(path, line)}: {len(cells)} fields, expected {width}")
        yield line, [c.strip() for c in cells]


def parse_label(cell: str, *, path: Path, line: int, column: str) -> float:
    """Parse one target value, which must be a finite number in [0, 1]."""
    if cell == "":
        raise DatasetError(f"{location(path, line)}: empty label in column {column!r}")
    try:
        value = float(cell)
    except ValueError:
        raise DatasetError(
            f"{location(path, line)}: non-numeric label {cell!r} in column {column!r}"
        ) from None
    if math.isnan(value):
        raise DatasetError(f"{location(path, line)}: NaN label in column {column!r}")
    if not 0.0 <= value <= 1.0:
        raise DatasetError(
            f"{location(path, line)}: label {cell!r} in column {column!r} is outside [0, 1]"
        )
    return value


def _read_split_csv(path: Path) -> list[tuple[int, int, list[float]]]:
    """Read one split csv; return ``(line, id, targets)`` per data row, in file order."""
    if not path.is_file():
        raise DatasetError(
            f"{path}: file not found (a Hume-Vidmimic2 root holds "
            f"{', '.join(SPLIT_FILES)} and raw/)"
        )
    rows: list[tuple[int, int, list[float]]] = []
    seen: dict[int, int] = {}
    # utf-8-sig: spreadsheet exports often start with a byte-order mark, which would
    # otherwise glue itself to the first column name.
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DatasetError(
                f"{location(path, 1)}: file is empty, expected header {','.join(EMI_HEADER)}"
            )
        header = check_header(path, header, EMI_HEADER)
        # Columns are matched by name, so a reordered header is read correctly.
        index = {name: i for i, name in enumerate(header)}
        for line, cells in data_rows(reader, len(header), path):
            raw_id = cells[index[EMI_ID_COLUMN]]
            if not _ID_RE.match(raw_id):
                raise DatasetError(
                    f"{location(path, line)}: {EMI_ID_COLUMN} {raw_id!r} is not a non-negative integer"
                )
            clip_id = int(raw_id)
            if clip_id in seen:
                raise DatasetError(
                    f"{location(path, line)}: duplicate {EMI_ID_COLUMN} {clip_id} "
                    f"(first seen on line {seen[clip_id]})"
                )
            seen[clip_id] = line
            targets = [
                parse_label(cells[index[t]], path=path, line=line, column=t) for t in EMI_TARGETS
            ]
            rows.append((line, clip_id, targets))
    return rows


def _list_media(raw: Path) -> dict[int, Path]:
    """Map id -> clip path for every ``raw/NNNNN.mp4``; other names are ignored."""
    if not raw.is_dir():
        raise DatasetError(f"{raw}: media directory not found (expected raw/{{id:05d}}.mp4 clips)")
    media: dict[int, Path] = {}
    for entry in raw.iterdir():
        match = _MEDIA_RE.match(entry.name)
        if match and entry.is_file():
            media[int(match.group(1))] = entry
    return media


def organiser_files(root: str | os.PathLike) -> list[str]:
    """The organisers' files the manifest is read from: the two split csv files (``root`` as given)."""
    return [f"{root}/{name}" for name in SPLIT_FILES]


def count_raw_media(root: str | os.PathLike) -> int | None:
    """Entries of ``root/raw`` named like media (:data:`RAW_MEDIA_SUFFIXES`); None when raw/ cannot be listed.

    A quick count for sizing jobs: every name with a media ending counts, test clips included.
    """
    try:
        return sum(1 for name in os.listdir(os.path.join(root, "raw")) if name.lower().endswith(RAW_MEDIA_SUFFIXES))
    except OSError:
        return None


def count_clips(root: str | os.PathLike) -> int | None:
    """Clips of the Hume-Vidmimic2 root ``root``: :func:`count_raw_media` (None when raw/ is unreadable)."""
    return count_raw_media(root)


def read_emi_manifest(root: str | os.PathLike) -> pd.DataFrame:
    """Read the Hume-Vidmimic2 split files and clip listing under ``root`` into a manifest.

    Returns one row per clip with columns ``id`` (int), ``split`` ("train", "val" or
    "test"), ``subject`` (always "" — the data set has no subject column), ``media``
    (absolute path of the clip) and the six targets of
    :data:`affectflow.tasks.EMI_TARGETS` (float; NaN for test clips), sorted by id.

    Raises :class:`DatasetError` naming the file, line and reason for: a missing csv or
    ``raw/`` directory, a header that is not exactly the expected column set, a
    non-integer ``Filename``, an id repeated within or across the two csv files, an
    empty, NaN, non-numeric or out-of-[0, 1] label, and a labelled id with no clip.
    """
    root = Path(root).resolve()
    media = _list_media(root / "raw")

    records: list[dict] = []
    first_seen: dict[int, tuple[Path, int]] = {}
    for name, split in SPLIT_FILES.items():
        path = root / name
        for line, clip_id, targets in _read_split_csv(path):
            if clip_id in first_seen:
                other, other_line = first_seen[clip_id]
                raise DatasetError(
                    f"{location(path, line)}: {EMI_ID_COLUMN} {clip_id} is also in "
                    f"{location(other, other_line)}; an id may belong to one split only"
                )
            first_seen[clip_id] = (path, line)
            if clip_id not in media:
                raise DatasetError(
                    f"{location(path, line)}: no media for {EMI_ID_COLUMN} {clip_id} "
                    f"(expected {root / 'raw' / emi_media_name(clip_id)})"
                )
            records.append(
                {
                    "id": clip_id,
                    "split": split,
                    "subject": "",
                    "media": str(media[clip_id]),
                    **dict(zip(EMI_TARGETS, targets)),
                }
            )
    for clip_id, clip_path in media.items():
        if clip_id not in first_seen:
            records.append(
                {
                    "id": clip_id,
                    "split": "test",
                    "subject": "",
                    "media": str(clip_path),
                    **{t: np.nan for t in EMI_TARGETS},
                }
            )

    df = pd.DataFrame.from_records(records, columns=[*MANIFEST_COLUMNS, *EMI_TARGETS])
    df = df.astype({"id": "int64", **{t: "float64" for t in EMI_TARGETS}})
    for col in ("split", "subject", "media"):
        df[col] = df[col].astype(object)
    return df.sort_values("id", kind="stable").reset_index(drop=True)


#: Optional manifest columns that always hold text (an organisers' key such as "00012" or
#: "[16708]" must not turn into a number, an empty path must stay "").
STRING_COLUMNS: tuple[str, ...] = ("split", "subject", "media", "name", "labels", "crops")
#: Optional manifest columns that always hold integers (``frames``: video frame count).
INT_COLUMNS: tuple[str, ...] = ("id", "frames")
#: Optional manifest columns that always hold floats (``fps``: video frame rate; NaN if unknown).
FLOAT_COLUMNS: tuple[str, ...] = ("fps",)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a manifest as tab-separated text, atomically.

    Missing values (NaN targets, empty subjects) are written as empty fields; floats
    are written with full precision so :func:`read_manifest` gives them back exactly.
    Besides :data:`MANIFEST_COLUMNS` a manifest may carry ``name`` and, for per-frame
    tasks, ``labels``, ``fps``, ``frames`` and ``crops`` instead of target columns;
    :func:`read_manifest` restores all of them with their dtypes.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"cannot write manifest {path}: missing column(s) {missing} "
            f"(a manifest starts with {list(MANIFEST_COLUMNS)})"
        )
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="")


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, restoring the dtypes.

    ``id`` and ``frames`` become int64, ``fps`` float64, ``split``/``subject``/``media``/
    ``name``/``labels``/``crops`` strings (an empty value stays "", and a name such as
    "00012" or "[16708]" stays text), and every other column (targets, shard, fold) is
    converted to numbers where all its non-empty values are numeric (empty fields become
    NaN); otherwise it is kept as strings. Target columns may be absent (per-frame tasks).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    # Read everything as text first: pandas' own NA inference would turn an empty
    # subject into NaN and strings such as "NA" into missing values.
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing manifest column(s) {missing} (expected {list(MANIFEST_COLUMNS)} first)"
        )
    for col in INT_COLUMNS:
        if col not in df.columns:
            continue
        bad = df.index[~df[col].str.fullmatch(r"-?\d+")]
        if len(bad):
            row = int(bad[0])
            # line = row + 2: the header is line 1
            raise DatasetError(
                f"{location(path, row + 2)}: {col} {df[col].iloc[row]!r} is not an integer"
            )
        df[col] = df[col].astype("int64")
    for col in FLOAT_COLUMNS:
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
        bad = df.index[values.isna() & (df[col] != "")]
        if len(bad):
            row = int(bad[0])
            raise DatasetError(f"{location(path, row + 2)}: {col} {df[col].iloc[row]!r} is not a number")
        df[col] = values.astype("float64")
    for col in df.columns:
        if col in MANIFEST_COLUMNS or col in STRING_COLUMNS or col in INT_COLUMNS or col in FLOAT_COLUMNS:
            continue
        values = df[col].where(df[col] != "", np.nan)  # not replace(): no silent downcasting
        try:
            df[col] = pd.to_numeric(values)
        except (ValueError, TypeError):
            pass  # a genuinely textual column: keep the strings as read
    return df
