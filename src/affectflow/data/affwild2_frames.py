"""Aff-Wild2 per-frame labels: the annotation files of the VA and AU challenges, and their table.

An annotation file's line 1 is the header (``valence,arousal`` or ``AU1,...,AU26``), line k+1
belongs to frame k. Every value must be numeric; valence/arousal lie in [-1, 1] or are the
invalid code -5, AUs are 0, 1 or the invalid code -1. A blank line is allowed only at the end.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.data.emi import DatasetError, location, read_manifest
from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import TASKS, task_spec

__all__ = [
    "INVALID",
    "TARGETS",
    "check_task",
    "frame_label_table",
    "parse_annotation",
    "read_frame_labels",
    "write_frame_labels",
]

# The Aff-Wild2 tasks are the per-frame tasks of affectflow.tasks, which knows their targets and codes.
#: the annotation columns of each task, in file order
TARGETS: dict[str, tuple[str, ...]] = {name: spec.targets for name, spec in TASKS.items() if spec.per_frame}
#: the code an annotation writes for a frame without a valid label
INVALID: dict[str, float] = {name: spec.invalid for name, spec in TASKS.items() if spec.per_frame}


def check_task(task: str) -> str:
    """``task`` if it is an Aff-Wild2 task (``va``, ``au``), else a ValueError naming them."""
    if task not in TARGETS:
        raise ValueError(f"unknown Aff-Wild2 task {task!r}; expected one of {', '.join(TARGETS)}")
    return task


def _check_value(value: float, cell: str, column: str, task: str, *, path: Path, line: int) -> None:
    if math.isnan(value) or math.isinf(value):
        raise DatasetError(f"{location(path, line)}: {cell!r} in column {column!r} is not a finite number")
    spec = task_spec(task)
    if not spec.binary:  # VA: a value in the task's range
        if value != spec.invalid and not spec.low <= value <= spec.high:
            raise DatasetError(f"{location(path, line)}: {column} {cell!r} is outside [{spec.low:g}, {spec.high:g}] "
                               f"and not the invalid code {spec.invalid:g}")
    elif value not in (spec.low, spec.high, spec.invalid):  # AU: absent, present or invalid
        raise DatasetError(f"{location(path, line)}: {column} {cell!r} is not {spec.low:g}, {spec.high:g} "
                           f"or the invalid code {spec.invalid:g}")


def _slow_validate(lines: list[str], targets: tuple[str, ...], task: str, *, path: Path) -> None:
    """Find and report the first bad data line (only run once the fast parse has failed)."""
    for k, text in enumerate(lines[1:], start=2):
        if not text.strip():
            raise DatasetError(
                f"{location(path, k)}: blank line inside the annotation (line k+1 belongs to frame k)"
            )
        cells = [c.strip() for c in text.split(",")]
        if len(cells) != len(targets):
            raise DatasetError(f"{location(path, k)}: {len(cells)} fields, expected {len(targets)}")
        for cell, column in zip(cells, targets):
            try:
                value = float(cell)
            except ValueError:
                raise DatasetError(f"{location(path, k)}: non-numeric value {cell!r} in column {column!r}") from None
            _check_value(value, cell, column, task, path=path, line=k)


def parse_annotation(path: Path, task: str) -> np.ndarray:
    """All data rows of an annotation file as float64 ``(n_frames, C)``; row k-1 = frame k.

    A fast vectorised parse; when it fails or a value is out of range, a line-by-line pass
    finds the first bad line and raises :class:`DatasetError` naming it.
    """
    targets = TARGETS[task]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read annotation file: {err}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines carry no frame
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    if header != list(targets):
        got = ",".join(header) if lines else "an empty file"
        raise DatasetError(f"{location(path, 1)}: bad header {got!r}, expected exactly {','.join(targets)}")
    body = lines[1:]
    if not body:
        return np.zeros((0, len(targets)), dtype=np.float64)
    values = None
    try:
        values = pd.read_csv(
            io.StringIO("\n".join(body)), header=None, dtype=np.float64, engine="c",
            skip_blank_lines=False, na_filter=True,
        ).to_numpy()
    except (ValueError, pd.errors.ParserError):
        values = None
    ok = values is not None and values.shape == (len(body), len(targets)) and np.isfinite(values).all()
    if ok:  # the fast form of _check_value
        spec = task_spec(task)
        if not spec.binary:
            ok = bool((((values >= spec.low) & (values <= spec.high)) | (values == spec.invalid)).all())
        else:
            ok = bool(np.isin(values, (spec.low, spec.high, spec.invalid)).all())
    if not ok:
        _slow_validate(lines, targets, task, path=path)
        raise DatasetError(f"{path}: malformed annotation file")  # the slow pass always names a line
    return values


def _valid_rows(values: np.ndarray, task: str) -> np.ndarray:
    """Mask of rows with no invalid code (VA: -5 in either column; AU: any -1)."""
    return ~(values == INVALID[task]).any(axis=1)


def read_frame_labels(path: str | os.PathLike, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Valid labelled frames of one annotation file: ``(frames, values)``.

    ``frames`` is int64 ``(n,)`` with the organisers' 1-based frame numbers, ``values`` float32
    ``(n, C)`` in :func:`affectflow.tasks.task_spec` target order. Rows with an invalid code
    are dropped (VA: -5 in either column; AU: -1 in any column). A malformed file raises
    :class:`DatasetError` naming the file and line.
    """
    values = parse_annotation(Path(path), check_task(task))
    keep = _valid_rows(values, task)
    frames = np.flatnonzero(keep).astype(np.int64) + 1
    return frames, values[keep].astype(np.float32)


def frame_label_table(manifest: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per-frame truth of every labelled track: columns ``id``, ``frame`` and the targets.

    One row per valid labelled frame of each manifest row with a ``labels`` file (train and
    validation tracks), sorted by id then frame. ``id``/``frame`` are int64, targets float32.
    """
    targets = TARGETS[check_task(task)]
    for col in ("id", "labels"):
        if col not in manifest.columns:
            raise ValueError(f"frame_label_table: the manifest has no {col!r} column (an Aff-Wild2 manifest has)")
    parts = []
    labelled = manifest[manifest["labels"].fillna("").astype(str) != ""]
    for clip_id, labels in zip(labelled["id"], labelled["labels"]):
        frames, values = read_frame_labels(labels, task)
        part = pd.DataFrame(values, columns=list(targets))
        part.insert(0, "frame", frames)
        part.insert(0, "id", np.full(len(frames), int(clip_id), dtype=np.int64))
        parts.append(part)
    if not parts:
        return pd.DataFrame(
            {"id": np.zeros(0, np.int64), "frame": np.zeros(0, np.int64),
             **{t: np.zeros(0, np.float32) for t in targets}}
        )
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(["id", "frame"], kind="stable").reset_index(drop=True)


def write_frame_labels(manifest: str | os.PathLike, task: str, out: str | os.PathLike) -> str:
    """Write :func:`frame_label_table` of the manifest file ``manifest`` to ``out`` (gzip csv), atomically.

    Returns a one-line summary for the job's log.
    """
    table = frame_label_table(read_manifest(manifest), task)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g", compression="gzip")
    return f"{len(table)} labelled frames in {table['id'].nunique()} tracks"
