"""Reader for the Hume-Reaction data set (ABAW Emotional Reaction Intensity task).

Two layouts are read; ``data_info.csv`` wins when both are present::

    data_info.csv      File_ID,Split,Adoration,...,Surprise,Age,Country   (current release)

    labels.csv         File_ID,Adoration,...,Surprise                      (older release)
    partition.csv      File_ID,Split

    raw/<n>.mp4        one clip per File_ID

``File_ID`` is written ``[16708]`` (a plain ``16708`` is accepted too); ``n`` is the integer
inside the brackets. The media file may be named with or without zero padding
(``raw/16708.mp4``, ``raw/016708.mp4``): any ``raw/<digits>.mp4`` whose integer value is ``n``
belongs to that clip; two such files for one listed clip are an error (ambiguous). Files in
``raw/`` that are not ``<digits>.mp4`` or that no csv row lists are ignored.

``Split`` is ``Train``, ``Val`` or ``Test`` (case-insensitive; ``Valid`` and ``Validation`` are
read as ``Val``). Train and validation rows need all seven targets, each a number in [0, 1];
the target cells of test rows are not read (they are empty in the release) and the manifest
holds NaN there. ``Age`` and ``Country`` are allowed and not used; any other column is an error.

A listed clip without a media file is kept, with ``media`` set to the path where it was
expected (``raw/<n>.mp4``), and a warning is logged: the submission must still list it, and
the media stage records it as unreadable (its predictions are NaN, filled at submission).

The csv files are read with :mod:`csv` so that every error names the physical line
(header = line 1), as in :mod:`affectflow.data.emi`.

:func:`organiser_files` lists the label files a manifest is read from and :func:`count_clips`
counts the media under ``raw/``, for the workflow to plan its jobs before the manifest exists.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.data.emi import (
    MANIFEST_COLUMNS,
    DatasetError,
    check_header,
    count_raw_media,
    data_rows,
    location,
    parse_label,
)
from affectflow.tasks import ERI_TARGETS

__all__ = [
    "DATA_INFO",
    "LABELS",
    "PARTITION",
    "count_clips",
    "organiser_files",
    "read_reaction_manifest",
    "reaction_media_name",
]

log = logging.getLogger(__name__)

DATA_INFO = "data_info.csv"
LABELS = "labels.csv"
PARTITION = "partition.csv"
ID_COLUMN = "File_ID"
SPLIT_COLUMN = "Split"
#: columns of data_info.csv that are allowed but not used
EXTRA_COLUMNS: tuple[str, ...] = ("Age", "Country")

_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_FILE_ID_RE = re.compile(r"^\[\s*(\d+)\s*\]$|^(\d+)$")
_MEDIA_RE = re.compile(r"^(\d+)\.mp4$")


def reaction_media_name(clip_id: int) -> str:
    """Name under ``raw/`` where a missing clip was expected: the id without padding."""
    return f"{int(clip_id)}.mp4"


def _read_csv(
    path: Path, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Header check plus ``(line, cells)`` per non-blank data row (cells stripped)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    rows: list[tuple[int, list[str]]] = []
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{location(path, 1)}: file is empty, expected header {','.join(required)}")
        header = check_header(path, header, required, optional=optional)
        rows.extend(data_rows(reader, len(header), path))
    return {name: i for i, name in enumerate(header)}, rows


def _parse_file_id(cell: str, *, path: Path, line: int) -> int:
    match = _FILE_ID_RE.match(cell)
    if not match:
        raise DatasetError(
            f"{location(path, line)}: {ID_COLUMN} {cell!r} is not an integer in brackets such as '[16708]'"
        )
    return int(match.group(1) or match.group(2))


def _parse_split(cell: str, *, path: Path, line: int) -> str:
    split = _SPLITS.get(cell.lower())
    if split is None:
        raise DatasetError(f"{location(path, line)}: unknown {SPLIT_COLUMN} {cell!r} (expected Train, Val or Test)")
    return split


def _targets(cells: list[str], index: dict[str, int], *, path: Path, line: int) -> list[float]:
    return [parse_label(cells[index[t]], path=path, line=line, column=t) for t in ERI_TARGETS]


def _check_duplicate(seen: dict[int, int], clip_id: int, *, path: Path, line: int) -> None:
    if clip_id in seen:
        raise DatasetError(
            f"{location(path, line)}: duplicate {ID_COLUMN} {clip_id} (first seen on line {seen[clip_id]})"
        )
    seen[clip_id] = line


def _read_data_info(path: Path) -> list[tuple[int, str, str, list[float]]]:
    """``(id, name, split, targets)`` per row of data_info.csv."""
    index, rows = _read_csv(path, required=(ID_COLUMN, SPLIT_COLUMN, *ERI_TARGETS), optional=EXTRA_COLUMNS)
    out, seen = [], {}
    for line, cells in rows:
        name = cells[index[ID_COLUMN]]
        clip_id = _parse_file_id(name, path=path, line=line)
        _check_duplicate(seen, clip_id, path=path, line=line)
        split = _parse_split(cells[index[SPLIT_COLUMN]], path=path, line=line)
        targets = [np.nan] * len(ERI_TARGETS) if split == "test" else _targets(cells, index, path=path, line=line)
        out.append((clip_id, name, split, targets))
    return out


def _read_labels_partition(labels: Path, partition: Path) -> list[tuple[int, str, str, list[float]]]:
    """``(id, name, split, targets)`` per row of partition.csv, targets from labels.csv."""
    p_index, p_rows = _read_csv(partition, required=(ID_COLUMN, SPLIT_COLUMN))
    l_index, l_rows = _read_csv(labels, required=(ID_COLUMN, *ERI_TARGETS))
    label_of: dict[int, tuple[int, list[str]]] = {}
    seen: dict[int, int] = {}
    for line, cells in l_rows:
        clip_id = _parse_file_id(cells[l_index[ID_COLUMN]], path=labels, line=line)
        _check_duplicate(seen, clip_id, path=labels, line=line)
        label_of[clip_id] = (line, cells)
    out, seen = [], {}
    for line, cells in p_rows:
        name = cells[p_index[ID_COLUMN]]
        clip_id = _parse_file_id(name, path=partition, line=line)
        _check_duplicate(seen, clip_id, path=partition, line=line)
        split = _parse_split(cells[p_index[SPLIT_COLUMN]], path=partition, line=line)
        if split == "test":
            targets = [np.nan] * len(ERI_TARGETS)
        elif clip_id not in label_of:
            raise DatasetError(
                f"{location(partition, line)}: {ID_COLUMN} {name} is in the {split} split but has no row in {labels}"
            )
        else:
            l_line, l_cells = label_of[clip_id]
            targets = _targets(l_cells, l_index, path=labels, line=l_line)
        out.append((clip_id, name, split, targets))
    unlisted = sorted(set(label_of) - set(seen))
    if unlisted:
        line = label_of[unlisted[0]][0]
        raise DatasetError(
            f"{location(labels, line)}: {ID_COLUMN} {unlisted[0]} has labels but no row in {partition} "
            f"({len(unlisted)} such id(s))"
        )
    return out


def _list_media(raw: Path) -> dict[int, list[Path]]:
    """id -> every ``raw/<digits>.mp4`` with that integer value (more than one: ambiguous)."""
    if not raw.is_dir():
        raise DatasetError(f"{raw}: media directory not found (expected raw/<n>.mp4 clips)")
    media: dict[int, list[Path]] = {}
    for entry in raw.iterdir():
        match = _MEDIA_RE.match(entry.name)
        if match and entry.is_file():
            media.setdefault(int(match.group(1)), []).append(entry)
    return media


def organiser_files(root: str | os.PathLike) -> list[str]:
    """The organisers' files the manifest is read from (``root`` as given).

    ``labels.csv`` + ``partition.csv`` when both exist and ``data_info.csv`` does not; else
    ``data_info.csv`` (listed even when missing, so that a missing file is reported by name).
    """
    older = [f"{root}/{LABELS}", f"{root}/{PARTITION}"]
    if not os.path.exists(f"{root}/{DATA_INFO}") and all(map(os.path.exists, older)):
        return older
    return [f"{root}/{DATA_INFO}"]


def count_clips(root: str | os.PathLike) -> int | None:
    """Clips of the Hume-Reaction root ``root``: media files under ``raw/`` (None when raw/ is unreadable)."""
    return count_raw_media(root)


def read_reaction_manifest(root: str | os.PathLike) -> pd.DataFrame:
    """Read the Hume-Reaction split/label files and clips under ``root`` into a manifest.

    Returns one row per listed clip, sorted by id, with columns ``id`` (int: the number in
    ``File_ID``), ``split`` (train/val/test), ``subject`` (always "": the release has no
    subject column), ``media`` (absolute path), ``name`` (``File_ID`` exactly as written,
    e.g. ``"[16708]"``) and the seven :data:`affectflow.tasks.ERI_TARGETS` (float, NaN for test).

    Raises :class:`DatasetError` naming the file, line and reason for: no ``data_info.csv``
    and no ``labels.csv`` + ``partition.csv``, a missing ``raw/`` directory, a bad header, a
    row with the wrong number of fields, a malformed ``File_ID``, a duplicate id, an unknown
    split, an empty, non-numeric or out-of-[0, 1] target of a train/val row, and (older
    layout) a train/val id without labels or labels for an id without a split. A listed clip
    with two media files (``7.mp4`` and ``007.mp4``) is an error; one with none is kept and
    logged (see the module docstring).
    """
    root = Path(root).resolve()
    data_info, labels, partition = root / DATA_INFO, root / LABELS, root / PARTITION
    if data_info.is_file():
        if labels.is_file() or partition.is_file():
            log.info("%s: reading %s; the older %s/%s are ignored", root, DATA_INFO, LABELS, PARTITION)
        rows = _read_data_info(data_info)
    elif labels.is_file() or partition.is_file():
        rows = _read_labels_partition(labels, partition)
    else:
        raise DatasetError(
            f"{root}: not a Hume-Reaction root: found neither {DATA_INFO} nor {LABELS} + {PARTITION}"
        )
    media = _list_media(root / "raw")

    records, missing = [], []
    for clip_id, name, split, targets in rows:
        found = media.get(clip_id, [])
        if len(found) > 1:
            names = ", ".join(sorted(p.name for p in found))
            raise DatasetError(f"{root / 'raw'}: {ID_COLUMN} {name} matches several media files ({names})")
        if found:
            path = found[0]
        else:
            path = root / "raw" / reaction_media_name(clip_id)
            missing.append(name)
        records.append(
            {"id": clip_id, "split": split, "subject": "", "media": str(path), "name": name,
             **dict(zip(ERI_TARGETS, targets))}
        )
    if missing:
        log.warning(
            "%s: %d listed clip(s) have no media file under raw/ and stay in the manifest "
            "(the media stage records them as unreadable): %s",
            root, len(missing), ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    df = pd.DataFrame.from_records(records, columns=[*MANIFEST_COLUMNS, "name", *ERI_TARGETS])
    df = df.astype({"id": "int64", **{t: "float64" for t in ERI_TARGETS}})
    for col in ("split", "subject", "media", "name"):
        df[col] = df[col].astype(object)
    return df.sort_values("id", kind="stable").reset_index(drop=True)
