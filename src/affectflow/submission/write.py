"""Writing and checking ABAW challenge submission files for the four tasks (see REFERENCE.md).

The formats, one header line then one row per key:

- EMI: ``Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy``; Filename is
  the clip's integer id; values in [0, 1].
- ERI: ``File_ID,Adoration,Amusement,Anxiety,Disgust,Empathic-Pain,Fear,Surprise``; File_ID as
  the manifest's ``name`` (e.g. ``[16708]``); values in [0, 1].
- VA: ``image_location,valence,arousal``; rows ``<track>/00001.jpg,v,a``; values in [-1, 1].
- AU: ``image_location,AU1,...,AU26``; rows ``<track>/00001.jpg,0,1,...``; integers 0 or 1.

:func:`expected_rows` lists what must be submitted (the manifest's test clips, or every frame
the organisers' sample file lists); :func:`write_submission` fills what the predictions lack
with a documented fallback, writes to a temporary sibling, validates it with
:func:`validate_submission` and only then renames it into place, so a file at the final path
is always complete and well formed.

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
binarisation at p >= 0.5).
"""

from __future__ import annotations

import csv
import logging
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import TaskSpec, image_location, key_columns, task_spec

__all__ = [
    "SubmissionError",
    "expected_rows",
    "submission_header",
    "training_fallback",
    "validate_emi_submission",
    "validate_submission",
    "write_emi_submission",
    "write_submission",
]

log = logging.getLogger("affectflow.submission.write")

_SHOW = 5  # how many offending keys an error message lists
_CHUNK = 65536  # rows validated at once (vectorised), bounding memory on 3M-frame files


class SubmissionError(ValueError):
    """A submission cannot be written or is malformed; the message names the problem."""


def submission_header(spec: TaskSpec) -> tuple[str, ...]:
    """The exact header of a submission for ``spec``: its key column then its targets."""
    return (spec.submission_key, *spec.targets)


def _show(items: Sequence) -> str:
    items = list(items)
    more = f" ... ({len(items)} in all)" if len(items) > _SHOW else ""
    return ", ".join(str(i) for i in items[:_SHOW]) + more


def _int(value: object, *, what: str) -> int:
    """Convert to int, rejecting bools, strings and floats with a fraction (12.0 is fine)."""
    if isinstance(value, bool | np.bool_):
        raise SubmissionError(f"{what}: {value!r} is not an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)  # ids that went through a float column, e.g. 12.0
    raise SubmissionError(f"{what}: {value!r} is not an integer")


def _name_text(value: object) -> str:
    """A manifest ``name`` as text: read_manifest turns all-numeric names (EMI) into numbers."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        if isinstance(value, numbers.Integral) or float(value).is_integer():
            return str(int(value))
        raise SubmissionError(f"manifest name {value!r} is not a key")
    if value is None or (isinstance(value, str) and not value):
        raise SubmissionError("manifest name is empty")
    return str(value)


def _name_column(series: pd.Series) -> list[str]:
    """:func:`_name_text` of a whole column, without a Python call per row in the common cases."""
    if series.dtype.kind in "iu":
        return series.astype("int64").astype(str).tolist()
    return [v if type(v) is str and v else _name_text(v) for v in series]


def _int_column(series: pd.Series, *, what: str) -> np.ndarray:
    """A column as int64, with a clear error for NaN, text or fractions."""
    if series.dtype.kind in "iu":
        return series.to_numpy().astype("int64")
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() | (values != np.floor(values))
    if bad.any():
        raise SubmissionError(
            f"{what}: {int(bad.sum())} value(s) not integers, e.g. {series[bad].iloc[0]!r}"
        )
    return values.to_numpy().astype("int64")


# --------------------------------------------------------------------------------------
# What must be submitted


def expected_rows(
    spec: TaskSpec, manifest: pd.DataFrame, *, sample_frames: pd.DataFrame | None = None
) -> pd.DataFrame:
    """What a submission for ``spec`` must list, in the order it is written.

    Clip tasks: the manifest's test rows, columns ``id, name``, in manifest order (EMI's name
    is its id; a manifest without a ``name`` column uses the id for EMI).

    Per-frame tasks: columns ``id, name, frame``. With ``sample_frames`` (columns ``name``,
    ``frame``, from :func:`affectflow.data.affwild2.read_sample_frames`) exactly those
    rows in that order, each track mapped to its manifest id; a track absent from the
    manifest, or not in its test split, raises :class:`SubmissionError` naming it. Without it, frames 1..``frames`` of every test
    track in manifest order (a test track whose ``frames`` is missing or 0 raises: pass the
    organisers' sample file instead).
    """
    for col in ("id", "split"):
        if col not in manifest.columns:
            raise SubmissionError(f"manifest lacks column {col!r}")
    names = manifest.get("name")
    if names is None:
        if spec.per_frame or spec.name != "emi":
            raise SubmissionError(f"manifest lacks column 'name' (the {spec.name} submission key)")
        names = manifest["id"]
    table = pd.DataFrame(
        {
            "id": _int_column(manifest["id"].reset_index(drop=True), what="manifest id"),
            "name": _name_column(names),
            "split": manifest["split"].astype(str).to_numpy(),
        }
    )
    if table["id"].duplicated().any():
        dup = table["id"][table["id"].duplicated()].tolist()
        raise SubmissionError(f"manifest has duplicate id(s): {_show(dup)}")
    if spec.name == "emi":
        for name in table["name"]:
            if not re.fullmatch(r"-?\d+", name):
                raise SubmissionError(f"EMI manifest name {name!r} is not an integer Filename")
    test = table[table["split"] == "test"]

    if not spec.per_frame:
        if test.empty:
            raise SubmissionError("manifest has no test rows: nothing to submit")
        return test[["id", "name"]].reset_index(drop=True)

    if sample_frames is not None:
        for col in ("name", "frame"):
            if col not in sample_frames.columns:
                raise SubmissionError(f"sample_frames lacks column {col!r} (needs name, frame)")
        if sample_frames.empty:
            raise SubmissionError("sample_frames lists no frames")
        sample_names = sample_frames["name"].astype(str)
        by_name = dict(zip(table["name"], zip(table["id"], table["split"])))
        unknown = sorted(set(sample_names) - by_name.keys())
        if unknown:
            raise SubmissionError(
                f"{len(unknown)} track(s) of the sample file absent from the manifest: {_show(unknown)}"
            )
        not_test = sorted({n for n in sample_names if by_name[n][1] != "test"})
        if not_test:
            raise SubmissionError(
                f"{len(not_test)} track(s) of the sample file are not test tracks in the manifest: "
                f"{_show([f'{n} ({by_name[n][1]})' for n in not_test])}"
            )
        frames = _int_column(sample_frames["frame"], what="sample_frames frame")
        if (frames < 1).any():
            raise SubmissionError(f"sample_frames has frame numbers < 1, e.g. {int(frames[frames < 1][0])}")
        out = pd.DataFrame(
            {
                "id": np.asarray([by_name[n][0] for n in sample_names], "int64"),
                "name": sample_names.to_numpy(dtype=object),
                "frame": frames,
            }
        )
        dup = out.duplicated(["id", "frame"])
        if dup.any():
            rows = out[dup]
            raise SubmissionError(
                f"sample_frames lists {int(dup.sum())} frame(s) twice: "
                f"{_show([image_location(n, f) for n, f in zip(rows['name'], rows['frame'])])}"
            )
        unlisted = sorted(set(test["name"]) - set(sample_names))
        if unlisted:
            log.warning(
                "%d test track(s) of the manifest are not in the sample file and are not submitted: %s",
                len(unlisted), _show(unlisted),
            )
        return out

    if test.empty:
        raise SubmissionError("manifest has no test tracks: nothing to submit")
    if "frames" not in manifest.columns:
        raise SubmissionError("manifest lacks column 'frames' (and no sample file was given)")
    counts = pd.to_numeric(manifest.loc[test.index, "frames"], errors="coerce")
    bad = counts.isna() | (counts < 1) | (counts != np.floor(counts))
    if bad.any():
        raise SubmissionError(
            f"{int(bad.sum())} test track(s) have no frame count in the manifest, so their frames "
            f"cannot be listed (pass the organisers' sample file): {_show(test['name'][bad].tolist())}"
        )
    counts = counts.astype("int64").to_numpy()
    return pd.DataFrame(
        {
            "id": np.repeat(test["id"].to_numpy(), counts),
            "name": np.repeat(test["name"].to_numpy(dtype=object), counts),
            "frame": np.concatenate([np.arange(1, n + 1, dtype="int64") for n in counts]),
        }
    )


def training_fallback(spec: TaskSpec, labelled: pd.DataFrame) -> dict[str, float]:
    """The per-target training mean that stands in for a missing prediction.

    Clip tasks: ``labelled`` is the manifest; its train and val rows are averaged (all rows
    if it has no ``split`` column). Per-frame tasks: ``labelled`` is the frame label table
    (``id, frame, <targets>``, results/<ds>/frame_labels.csv.gz); the organisers' invalid code
    (-5 VA, -1 AU) is ignored. For AU the mean is the training positive rate. NaN is skipped;
    a target with no finite label raises :class:`SubmissionError`.
    """
    missing = [t for t in spec.targets if t not in labelled.columns]
    if missing:
        raise SubmissionError(f"labels lack target column(s) {missing} for task {spec.name}")
    rows = labelled
    if not spec.per_frame and "split" in labelled.columns:
        rows = labelled[labelled["split"].isin(["train", "val"])]
    values = rows[list(spec.targets)].apply(pd.to_numeric, errors="coerce").astype("float64")
    if spec.invalid is not None:
        values = values.mask(values == spec.invalid)
    values = values.mask(~np.isfinite(values))
    means = values.mean()
    empty = [t for t in spec.targets if not math.isfinite(means[t])]
    if empty:
        raise SubmissionError(f"no finite training label for target(s) {empty}: no fallback mean")
    return {t: float(means[t]) for t in spec.targets}


# --------------------------------------------------------------------------------------
# Validation


def _expected_keys(spec: TaskSpec, expected: pd.DataFrame) -> list:
    """The submission keys of ``expected`` (ints for EMI, strings otherwise), checked unique."""
    need = ["id", "name", "frame"] if spec.per_frame else ["id", "name"]
    missing = [c for c in need if c not in expected.columns]
    if missing:
        raise SubmissionError(f"expected lacks column(s) {missing} (needs {need})")
    if expected.empty:
        raise SubmissionError("expected is empty: a submission needs at least one row")
    names = _name_column(expected["name"])
    if spec.per_frame:
        frames = _int_column(expected["frame"], what="expected frame")
        keys: list = [image_location(n, f) for n, f in zip(names, frames)]
    elif spec.name == "emi":
        bad = [n for n in names if not re.fullmatch(r"-?\d+", n)]
        if bad:
            raise SubmissionError(f"expected EMI Filename(s) not integers: {_show(bad)}")
        keys = [int(n) for n in names]
    else:
        keys = names
    dup = pd.Series(keys).duplicated()
    if dup.any():
        raise SubmissionError(
            f"expected lists {int(dup.sum())} {spec.submission_key} value(s) twice: "
            f"{_show(pd.Series(keys)[dup].tolist())}"
        )
    return keys


def validate_submission(path: str | os.PathLike, spec: TaskSpec, expected: pd.DataFrame) -> int:
    """Check a submission file for ``spec`` against ``expected``; return its number of rows.

    ``expected`` is what :func:`expected_rows` returns. Raises :class:`SubmissionError` naming
    the file (and line) for: a missing file; a header other than exactly
    :func:`submission_header`; a blank row or a row with the wrong number of columns; an EMI
    Filename that is not an integer; a value that is empty, not a number, NaN, infinite or
    outside the task's range; an AU value other than exactly ``0`` or ``1``; a duplicated key;
    a key not expected; an expected key missing (the first 5 of each listed). Any row order
    is accepted.
    """
    return _validate(Path(path), spec, _expected_keys(spec, expected), shown=Path(path))


def _validate(path: Path, spec: TaskSpec, expected: list, *, shown: Path) -> int:
    """Validate ``path``; error messages name ``shown`` (the final path, not a temp file)."""
    if not path.is_file():
        raise SubmissionError(f"{shown}: submission file not found")
    header = submission_header(spec)
    keys: list = []
    key_lines: list[int] = []
    rows: list[list[str]] = []
    lines: list[int] = []

    def flush() -> None:
        _check_chunk(spec, rows, lines, shown, keys)
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


def _check_chunk(spec: TaskSpec, rows: list, lines: list, shown: Path, keys: list) -> None:
    """Vectorised checks of a block of rows; append their keys to ``keys``."""
    if not rows:
        return
    key_name = spec.submission_key
    for cells, line in zip(rows, lines):
        key = cells[0]
        if spec.name == "emi":
            try:
                keys.append(int(key))
            except ValueError:
                raise SubmissionError(
                    f"{shown}, line {line}: {key_name} {key!r} is not an integer"
                ) from None
        else:
            if not key.strip():
                raise SubmissionError(f"{shown}, line {line}: empty {key_name}")
            keys.append(key)
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
            for target, cell in zip(spec.targets, cells[1:]):
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
    for key, line in zip(keys, key_lines):
        if key in first:
            dups.append((key, line, first[key]))
        else:
            first[key] = line
    if dups:
        key, line, line0 = dups[0]
        raise SubmissionError(
            f"{shown}, line {line}: duplicate {key_name} {key} (first on line {line0}); "
            f"{len(dups)} duplicated row(s): {_show([f'{k} (line {n})' for k, n, _ in dups])}"
        )
    wanted = set(expected)
    extra = [(k, first[k]) for k in keys if k not in wanted]
    if extra:
        raise SubmissionError(
            f"{shown}, line {extra[0][1]}: {len(extra)} unexpected row(s), {key_name} not "
            f"expected: {_show([f'{k} (line {n})' for k, n in extra])}"
        )
    missing = [k for k in expected if k not in first]
    if missing:
        last = key_lines[-1] if key_lines else 1
        raise SubmissionError(
            f"{shown}: {len(missing)} expected row(s) missing (the file ends at line {last}), "
            f"{key_name}: {_show(missing)}"
        )


# --------------------------------------------------------------------------------------
# Writing


def _check_fallback(spec: TaskSpec, fallback: Mapping[str, float]) -> np.ndarray:
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


def _prediction_table(spec: TaskSpec, predictions: pd.DataFrame) -> pd.DataFrame:
    """Key columns as int64 and targets as float64, checked: no duplicate key, no text, no inf."""
    keys = key_columns(spec)
    missing = [c for c in (*keys, *spec.targets) if c not in predictions.columns]
    if missing:
        raise SubmissionError(
            f"predictions lack column(s) {missing} (need {keys} and {list(spec.targets)})"
        )
    table = pd.DataFrame({"id": _int_column(predictions["id"].reset_index(drop=True), what="prediction id")})
    if spec.per_frame:
        table["frame"] = _int_column(predictions["frame"].reset_index(drop=True), what="prediction frame")
    raw = predictions[list(spec.targets)].reset_index(drop=True)
    values = raw.apply(pd.to_numeric, errors="coerce").astype("float64")
    text = values.isna() & raw.notna()
    if text.to_numpy().any():
        i = int(np.flatnonzero(text.to_numpy().any(axis=1))[0])
        raise SubmissionError(f"non-numeric prediction for {dict(table.iloc[i])}: {raw.iloc[i].tolist()}")
    inf = np.isinf(values.to_numpy())
    if inf.any():
        rows = table[inf.any(axis=1)]
        raise SubmissionError(f"infinite prediction(s) for {_show(rows.to_dict('records'))}")
    dup = table.duplicated(keys)
    if dup.any():
        shown = table[dup]["id"].tolist() if not spec.per_frame else table[dup].to_dict("records")
        raise SubmissionError(f"duplicate prediction key(s) {keys}: {_show(shown)}")
    for t in spec.targets:
        table[t] = values[t].to_numpy()
    return table


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


def write_submission(
    spec: TaskSpec,
    predictions: pd.DataFrame,
    expected: pd.DataFrame,
    path: str | os.PathLike,
    *,
    fallback: Mapping[str, float] | None,
) -> dict:
    """Write the submission for ``spec`` listing exactly ``expected``, validated, atomically.

    ``predictions`` has the task's key columns (``id``; ``id, frame``) and its targets; rows
    may be missing and targets may be NaN ("this run could not predict it"). ``expected`` is
    what :func:`expected_rows` returns; rows are written in its order. Holes are filled as
    the module docstring describes: nearest predicted frame of the same track (per-frame
    tasks), else ``fallback`` (:func:`training_fallback`). ``fallback=None`` makes any hole an
    error listing the first few keys. Values are clipped to the task's range (6 decimals);
    AU probabilities are binarised at 0.5 and written as 0/1.

    Errors (:class:`SubmissionError`): missing columns, non-numeric or infinite predictions,
    duplicate prediction keys, a clip prediction for an id not expected. Per-frame predictions
    for frames not listed still serve as nearest-frame sources; those of tracks not expected
    at all are ignored and counted as ``unused``.

    The file goes to a temporary sibling, is checked with the same code as
    :func:`validate_submission`, and only then renamed to ``path``: on any failure nothing
    (and never a short file) appears at ``path``, and an older file there stays untouched.

    Returns ``{"task", "rows", "predicted", "nearest_frame", "training_mean", "clipped",
    "unused"}`` (row counts, except ``clipped``: values).
    """
    keys = _expected_keys(spec, expected)
    fill = _check_fallback(spec, fallback) if fallback is not None else None
    preds = _prediction_table(spec, predictions)
    targets = list(spec.targets)
    key_cols = key_columns(spec)

    want = pd.DataFrame({"id": _int_column(expected["id"].reset_index(drop=True), what="expected id")})
    if spec.per_frame:
        want["frame"] = _int_column(expected["frame"].reset_index(drop=True), what="expected frame")
    expected_ids = set(want["id"])
    stray = preds["id"][~preds["id"].isin(expected_ids)]
    unused = int(len(stray))
    if unused and not spec.per_frame:
        raise SubmissionError(
            f"predictions for {unused} id(s) not expected: {_show(sorted(stray.tolist()))}"
        )
    if unused:
        log.warning(
            "%d prediction row(s) of %d track(s) not in the submission are ignored: ids %s",
            unused, stray.nunique(), _show(sorted(stray.unique().tolist())),
        )
        preds = preds[preds["id"].isin(expected_ids)].reset_index(drop=True)

    merged = want.merge(preds, on=key_cols, how="left", sort=False)
    if len(merged) != len(want):  # pragma: no cover - keys are unique on both sides
        raise SubmissionError("internal error: merge changed the row count")
    values = merged[targets].to_numpy("float64", copy=True)
    kind = np.zeros(len(merged), "int8")  # 0 predicted, 1 nearest frame, 2 training mean
    if spec.per_frame:
        near = _nearest_fill(merged, values, preds, targets)
        kind[near.any(axis=1)] = 1
    holes = np.isnan(values)
    hole_rows = holes.any(axis=1)
    if hole_rows.any():
        if fill is None:
            raise SubmissionError(
                f"{int(hole_rows.sum())} expected row(s) without a (complete) prediction and "
                f"no fallback given: {_show([keys[i] for i in np.flatnonzero(hole_rows)])}"
            )
        values = np.where(holes, fill[None, :], values)
        kind[hole_rows] = 2

    out_of_range = (values < spec.low) | (values > spec.high)
    clipped = int(out_of_range.sum())
    values = np.clip(values, spec.low, spec.high)

    key_text = [str(k) for k in keys]
    frame = pd.DataFrame({spec.submission_key: key_text})
    if spec.binary:
        for k, t in enumerate(targets):
            frame[t] = (values[:, k] >= 0.5).astype("int64")
    else:
        for k, t in enumerate(targets):
            frame[t] = values[:, k]

    summary = {
        "task": spec.name,
        "rows": len(keys),
        "predicted": int((kind == 0).sum()),
        "nearest_frame": int((kind == 1).sum()),
        "training_mean": int((kind == 2).sum()),
        "clipped": clipped,
        "unused": unused,
    }
    final = Path(path)
    with atomic_path(final) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n", encoding="utf-8")
        # Validate the temporary file: if this raises, atomic_path removes it and the final
        # path is left untouched, so a short or bad file never appears there.
        rows = _validate(tmp, spec, keys, shown=final)
    summary["rows"] = rows
    for name, label in (("nearest_frame", "nearest predicted frame"), ("training_mean", "training mean")):
        if summary[name]:
            examples = [key_text[i] for i in np.flatnonzero(kind == (1 if name == "nearest_frame" else 2))]
            log.warning(
                "%s: %d row(s) filled with the %s, e.g. %s", final, summary[name], label, _show(examples)
            )
    if clipped:
        log.info("%s: %d value(s) clipped to [%g, %g]", final, clipped, spec.low, spec.high)
    log.info(
        "%s: wrote %d %s rows (%d predicted, %d nearest frame, %d training mean; %d values clipped)",
        final, rows, spec.name, summary["predicted"], summary["nearest_frame"],
        summary["training_mean"], clipped,
    )
    return summary


# --------------------------------------------------------------------------------------
# EMI wrappers (the API before the four-task writer; kept for existing callers)


def _emi_expected(expected_ids: Iterable) -> pd.DataFrame:
    ids = sorted(_int(i, what="expected_ids") for i in expected_ids)
    if not ids:
        raise SubmissionError("expected_ids is empty: a submission needs at least one clip")
    return pd.DataFrame({"id": np.asarray(ids, "int64"), "name": [str(i) for i in ids]})


def validate_emi_submission(path: str | os.PathLike, expected_ids: Iterable) -> int:
    """Check an EMI submission file for exactly ``expected_ids``; return its number of rows.

    Same checks as :func:`validate_submission` with the EMI spec.
    """
    return validate_submission(path, task_spec("emi"), _emi_expected(expected_ids))


def write_emi_submission(
    predictions: pd.DataFrame,
    expected_ids: Iterable,
    path: str | os.PathLike,
    *,
    fallback: Mapping[str, float] | None = None,
) -> dict:
    """Write an EMI submission for ``expected_ids`` (sorted by id) with :func:`write_submission`.

    Returns ``{"rows": n, "filled": rows_given_the_fallback, "clipped": values_clipped}``.
    """
    summary = write_submission(
        task_spec("emi"), predictions, _emi_expected(expected_ids), path, fallback=fallback
    )
    return {"rows": summary["rows"], "filled": summary["training_mean"], "clipped": summary["clipped"]}
