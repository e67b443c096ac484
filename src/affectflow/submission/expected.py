"""What a submission must list: its header, its rows, their keys, and the training fallback.

:func:`expected_rows` lists the rows to submit (the test clips of a table of clips, or every frame
the organisers' sample file lists); :func:`expected_keys` turns them into the submission's key
column; :func:`training_fallback` is the per-target training mean that stands in for a
prediction no run could make.
"""

from __future__ import annotations

import logging
import math
import numbers
import re

import numpy as np
import pandas as pd

from affectflow.data.folds import LABELLED_SPLITS
from affectflow.keys import integer_column
from affectflow.submission.errors import SubmissionError, first_few
from affectflow.tasks import TaskSpec, image_location

__all__ = ["expected_keys", "expected_rows", "integer_keys", "submission_header", "training_fallback"]

log = logging.getLogger(__name__)

_EMI_FILENAME = re.compile(r"-?\d+")  # an EMI Filename is the clip's integer id


def submission_header(spec: TaskSpec) -> tuple[str, ...]:
    """The exact header of a submission for ``spec``: its key column then its targets."""
    return (spec.submission_key, *spec.targets)


def integer_keys(column: pd.Series, *, where: str, name: str) -> np.ndarray:
    """``column`` as int64 values; NaN, text or a fraction raises :class:`SubmissionError`.

    The message names ``where``, the line (row + 2, the line of a csv read with a header) and the
    first bad value.
    """
    try:
        return integer_column(column.reset_index(drop=True), where=where, name=name).to_numpy()
    except ValueError as exc:
        raise SubmissionError(str(exc)) from None


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


# --------------------------------------------------------------------------------------
# The rows to submit


def _manifest_keys(spec: TaskSpec, manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's ``id, name, split`` in its order, ids unique, EMI names integers."""
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
            "id": integer_keys(manifest["id"], where="manifest", name="id"),
            "name": _name_column(names),
            "split": manifest["split"].astype(str).to_numpy(),
        }
    )
    if table["id"].duplicated().any():
        dup = table["id"][table["id"].duplicated()].tolist()
        raise SubmissionError(f"manifest has duplicate id(s): {first_few(dup)}")
    if spec.name == "emi":
        for name in table["name"]:
            if not _EMI_FILENAME.fullmatch(name):
                raise SubmissionError(f"EMI manifest name {name!r} is not an integer Filename")
    return table


def _sample_file_rows(table: pd.DataFrame, sample_frames: pd.DataFrame, source: str) -> pd.DataFrame:
    """Exactly the frames of ``sample_frames``, in its order, each track mapped to its id in ``source``."""
    for col in ("name", "frame"):
        if col not in sample_frames.columns:
            raise SubmissionError(f"sample_frames lacks column {col!r} (needs name, frame)")
    if sample_frames.empty:
        raise SubmissionError("sample_frames lists no frames")
    sample_names = sample_frames["name"].astype(str)
    by_name = dict(zip(table["name"], zip(table["id"], table["split"], strict=True), strict=True))
    unknown = sorted(set(sample_names) - by_name.keys())
    if unknown:
        raise SubmissionError(
            f"{len(unknown)} track(s) of the sample file absent from {source}: {first_few(unknown)}"
        )
    not_test = sorted({n for n in sample_names if by_name[n][1] != "test"})
    if not_test:
        raise SubmissionError(
            f"{len(not_test)} track(s) of the sample file are not test tracks in {source}: "
            f"{first_few([f'{n} ({by_name[n][1]})' for n in not_test])}"
        )
    frames = integer_keys(sample_frames["frame"], where="sample_frames", name="frame")
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
            f"{first_few([image_location(n, f) for n, f in zip(rows['name'], rows['frame'], strict=True)])}"
        )
    test_names = table.loc[table["split"] == "test", "name"]
    unlisted = sorted(set(test_names) - set(sample_names))
    if unlisted:
        log.warning(
            "%d test track(s) of %s are not in the sample file and are not submitted: %s",
            len(unlisted), source, first_few(unlisted),
        )
    return out


def _every_frame_rows(manifest: pd.DataFrame, test: pd.DataFrame, source: str) -> pd.DataFrame:
    """Frames 1..``frames`` of every test track (``test``: rows of ``manifest``), in its order."""
    if test.empty:
        raise SubmissionError(f"no test tracks in {source}: nothing to submit")
    if "frames" not in manifest.columns:
        raise SubmissionError(f"no 'frames' column in {source} (and no sample file was given)")
    counts = pd.to_numeric(manifest.loc[test.index, "frames"], errors="coerce")
    bad = counts.isna() | (counts < 1) | (counts != np.floor(counts))
    if bad.any():
        raise SubmissionError(
            f"{int(bad.sum())} test track(s) have no frame count (their video could not be read), so their frames "
            f"cannot be listed (pass the organisers' sample file): {first_few(test['name'][bad].tolist())}"
        )
    counts = counts.astype("int64").to_numpy()
    return pd.DataFrame(
        {
            "id": np.repeat(test["id"].to_numpy(), counts),
            "name": np.repeat(test["name"].to_numpy(dtype=object), counts),
            "frame": np.concatenate([np.arange(1, n + 1, dtype="int64") for n in counts]),
        }
    )


def expected_rows(
    spec: TaskSpec,
    manifest: pd.DataFrame,
    *,
    sample_frames: pd.DataFrame | None = None,
    source: str = "the manifest",
) -> pd.DataFrame:
    """What a submission for ``spec`` must list, in the order it is written.

    ``manifest`` is a table of clips with columns ``id``, ``split``, ``name`` (and ``frames``
    for per-frame tasks without a sample file): a manifest, or the organisers' listing of the
    data set as the pipeline's submission step builds it
    (:func:`affectflow.submission.task.write_task_submission`). ``source`` names the table in
    error messages.

    Clip tasks: the table's test rows, columns ``id, name``, in its order (EMI's name is its id;
    a table without a ``name`` column uses the id for EMI).

    Per-frame tasks: columns ``id, name, frame``. With ``sample_frames`` (columns ``name``,
    ``frame``, from :func:`affectflow.data.affwild2.read_sample_frames`) exactly those
    rows in that order, each track mapped to its id in the table; a track absent from the
    table, or not in its test split, raises :class:`SubmissionError` naming it. Without it,
    frames 1..``frames`` of every test track in the table's order (a test track whose ``frames``
    is missing or 0 raises: pass the organisers' sample file instead).
    """
    manifest = manifest.reset_index(drop=True)  # the frame counts are looked up by position
    table = _manifest_keys(spec, manifest)
    test = table[table["split"] == "test"]
    if not spec.per_frame:
        if test.empty:
            raise SubmissionError(f"no test rows in {source}: nothing to submit")
        return test[["id", "name"]].reset_index(drop=True)
    if sample_frames is not None:
        return _sample_file_rows(table, sample_frames, source)
    return _every_frame_rows(manifest, test, source)


def expected_keys(spec: TaskSpec, expected: pd.DataFrame) -> list:
    """The submission keys of ``expected`` (ints for EMI, strings otherwise), checked unique."""
    need = ["id", "name", "frame"] if spec.per_frame else ["id", "name"]
    missing = [c for c in need if c not in expected.columns]
    if missing:
        raise SubmissionError(f"expected lacks column(s) {missing} (needs {need})")
    if expected.empty:
        raise SubmissionError("expected is empty: a submission needs at least one row")
    names = _name_column(expected["name"])
    if spec.per_frame:
        frames = integer_keys(expected["frame"], where="expected", name="frame")
        keys: list = [image_location(n, f) for n, f in zip(names, frames, strict=True)]
    elif spec.name == "emi":
        bad = [n for n in names if not _EMI_FILENAME.fullmatch(n)]
        if bad:
            raise SubmissionError(f"expected EMI Filename(s) not integers: {first_few(bad)}")
        keys = [int(n) for n in names]
    else:
        keys = names
    dup = pd.Series(keys).duplicated()
    if dup.any():
        raise SubmissionError(
            f"expected lists {int(dup.sum())} {spec.submission_key} value(s) twice: "
            f"{first_few(pd.Series(keys)[dup].tolist())}"
        )
    return keys


# --------------------------------------------------------------------------------------
# What stands in for a missing prediction


def training_fallback(spec: TaskSpec, labelled: pd.DataFrame) -> dict[str, float]:
    """The per-target training mean that stands in for a missing prediction.

    Clip tasks: ``labelled`` is the manifest; its labelled rows (splits
    :data:`~affectflow.data.folds.LABELLED_SPLITS`) are averaged (all rows if it has no
    ``split`` column). Per-frame tasks: ``labelled`` is the frame label table (``id, frame,
    <targets>``, results/<ds>/frame_labels.csv.gz), which holds no invalid code: the data stage
    drops the frames the organisers marked invalid (-5 VA, -1 AU;
    :func:`affectflow.data.frame_label_table`). For AU the mean is the training positive rate.
    NaN is skipped; a target with no finite label raises :class:`SubmissionError`.
    """
    missing = [t for t in spec.targets if t not in labelled.columns]
    if missing:
        raise SubmissionError(f"labels lack target column(s) {missing} for task {spec.name}")
    rows = labelled
    if not spec.per_frame and "split" in labelled.columns:
        rows = labelled[labelled["split"].isin(LABELLED_SPLITS)]
    values = rows[list(spec.targets)].apply(pd.to_numeric, errors="coerce").astype("float64")
    values = values.mask(~np.isfinite(values))
    means = values.mean()
    empty = [t for t in spec.targets if not math.isfinite(means[t])]
    if empty:
        raise SubmissionError(f"no finite training label for target(s) {empty}: no fallback mean")
    return {t: float(means[t]) for t in spec.targets}
