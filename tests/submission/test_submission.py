"""Tests of the submission writer and validator on EMI files (the generic API with the EMI spec)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectflow.submission import SubmissionError, validate_submission, write_submission
from affectflow.tasks import task_spec

HEADER = "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy"
TARGETS = HEADER.split(",")[1:]
EMI = task_spec("emi")


def emi_expected(ids) -> pd.DataFrame:
    """The expected rows of an EMI submission listing clips ``ids`` (sorted; the name is the id)."""
    ids = sorted(int(i) for i in ids)
    return pd.DataFrame({"id": np.asarray(ids, "int64"), "name": [str(i) for i in ids]})


def preds(ids, values=None):
    ids = list(ids)
    if values is None:
        values = np.linspace(0.05, 0.95, len(ids) * 6).reshape(len(ids), 6)
    return pd.DataFrame(
        {"id": ids, **{t: np.asarray(values, float)[:, j] for j, t in enumerate(TARGETS)}}
    )


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_writes_sorted_rows_with_exact_header(tmp_path):
    path = tmp_path / "sub" / "predictions.csv"
    values = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.123456789, 0, 1, 0.5, 0.25, 0.75]])
    summary = write_submission(EMI, preds([30, 4], values), emi_expected([4, 30]), path, fallback=None)
    assert summary == {"task": "emi", "rows": 2, "predicted": 2, "nearest_frame": 0, "training_mean": 0,
                       "clipped": 0, "unused": 0}
    text = path.read_text()
    assert text.splitlines()[0] == HEADER
    rows = read_rows(path)[1:]
    assert [r[0] for r in rows] == ["4", "30"]
    assert rows[0][1] == "0.123457"  # 6 decimals, rounded
    assert [float(v) for v in rows[1][1:]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert all(len(v.split(".")[1]) == 6 for r in rows for v in r[1:])
    assert not list(path.parent.glob(".*tmp*"))


def test_values_are_clipped_and_counted(tmp_path):
    path = tmp_path / "p.csv"
    values = np.array([[-0.2, 1.3, 0.5, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 0.5, 2.0, 0.5]])
    summary = write_submission(EMI, preds([1, 2], values), emi_expected([1, 2]), path, fallback=None)
    assert summary["clipped"] == 3
    rows = read_rows(path)[1:]
    assert rows[0][1:3] == ["0.000000", "1.000000"]
    assert rows[1][5] == "1.000000"


def test_missing_ids_without_fallback_raise_and_list_first_five(tmp_path):
    path = tmp_path / "p.csv"
    expected = list(range(100, 125))
    with pytest.raises(SubmissionError) as info:
        write_submission(EMI, preds([100]), emi_expected(expected), path, fallback=None)
    msg = str(info.value)
    assert "24 expected row(s)" in msg and "(24 in all)" in msg
    assert "101, 102" in msg and "105" in msg
    assert "106" not in msg  # only the first five are listed
    assert not path.exists()


def test_fallback_fills_missing_rows_and_nan_values(tmp_path):
    path = tmp_path / "p.csv"
    fallback = dict(zip(TARGETS, [0.11, 0.22, 0.33, 0.44, 0.55, 0.66], strict=True))
    p = preds([1, 3], np.full((2, 6), 0.9))
    p.loc[1, "Joy"] = np.nan  # id 3: only Joy is missing
    summary = write_submission(EMI, p, emi_expected([1, 2, 3]), path, fallback=fallback)
    assert summary == {"task": "emi", "rows": 3, "predicted": 1, "nearest_frame": 0, "training_mean": 2,
                       "clipped": 0, "unused": 0}
    rows = {int(r[0]): [float(v) for v in r[1:]] for r in read_rows(path)[1:]}
    assert rows[1] == [0.9] * 6
    assert rows[2] == [0.11, 0.22, 0.33, 0.44, 0.55, 0.66]
    assert rows[3] == [0.9] * 5 + [0.66]


def test_fallback_must_cover_all_targets(tmp_path):
    with pytest.raises(SubmissionError, match=r"fallback lacks target\(s\) \['Joy'\]"):
        write_submission(
            EMI, preds([1]), emi_expected([1, 2]), tmp_path / "p.csv", fallback={t: 0.5 for t in TARGETS[:-1]}
        )


def test_unexpected_ids_raise(tmp_path):
    with pytest.raises(SubmissionError, match=r"not expected: 7, 9"):
        write_submission(EMI, preds([1, 7, 9]), emi_expected([1]), tmp_path / "p.csv", fallback=None)
    assert not (tmp_path / "p.csv").exists()


def test_duplicate_prediction_ids_raise(tmp_path):
    with pytest.raises(SubmissionError, match=r"predictions: line 4: duplicate row for \{'id': 5\}"):
        write_submission(EMI, preds([5, 6, 5]), emi_expected([5, 6]), tmp_path / "p.csv", fallback=None)


def test_missing_prediction_column_raises(tmp_path):
    with pytest.raises(SubmissionError, match=r"\['Empathic Pain'\]"):
        write_submission(
            EMI, preds([1]).drop(columns="Empathic Pain"), emi_expected([1]), tmp_path / "p.csv", fallback=None
        )


def test_failed_write_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "p.csv"
    write_submission(EMI, preds([1, 2]), emi_expected([1, 2]), path, fallback=None)
    before = path.read_text()
    with pytest.raises(SubmissionError):
        write_submission(EMI, preds([1]), emi_expected([1, 2]), path, fallback=None)
    assert path.read_text() == before


def write_raw(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = ["1,0.1,0.2,0.3,0.4,0.5,0.6", "2,0,0,0,0,0,1"]


def test_validate_accepts_good_file(tmp_path):
    assert validate_submission(write_raw(tmp_path / "s.csv", [HEADER, *GOOD]), EMI, emi_expected([2, 1])) == 2


@pytest.mark.parametrize(
    "lines, pattern",
    [
        ([HEADER.replace("Empathic Pain", "Empathic_Pain"), *GOOD], r"line 1: wrong header"),
        ([",".join(reversed(HEADER.split(","))), *GOOD], r"line 1: wrong header"),
        ([HEADER, GOOD[0]], r"1 expected row\(s\) missing \(the file ends at line 2\), Filename: 2"),
        ([HEADER, *GOOD, "3,0,0,0,0,0,0"], r"line 4: 1 unexpected row\(s\), Filename not expected: 3 \(line 4\)"),
        ([HEADER, *GOOD, GOOD[0]], r"line 4: duplicate Filename 1"),
        ([HEADER, GOOD[0], "2,0,0,nan,0,0,1"], r"line 3: Determination value is NaN"),
        (
            [HEADER, GOOD[0], "2,0,0,0,1.01,0,1"],
            r"line 3: Empathic Pain value 1.01 is outside \[0, 1\]",
        ),
        ([HEADER, GOOD[0], "2,0,0,0,0,1"], r"line 3: 6 columns, expected 7"),
        ([HEADER, GOOD[0], "2,0,0,0,0,0,1,0"], r"line 3: 8 columns, expected 7"),
        ([HEADER, GOOD[0], "2,0,0,0,0,,1"], r"line 3: Excitement value '' is not a number"),
        ([HEADER, GOOD[0], "two,0,0,0,0,0,1"], r"line 3: Filename 'two' is not an integer"),
    ],
)
def test_validate_rejects(tmp_path, lines, pattern):
    path = write_raw(tmp_path / "s.csv", lines)
    with pytest.raises(SubmissionError, match=r"s\.csv.*" + pattern):
        validate_submission(path, EMI, emi_expected([1, 2]))


def test_validate_missing_file(tmp_path):
    with pytest.raises(SubmissionError, match=r"none\.csv: submission file not found"):
        validate_submission(tmp_path / "none.csv", EMI, emi_expected([1]))


def test_validation_runs_before_rename(tmp_path, monkeypatch):
    # If validating the written temp file fails, nothing may appear at the final path.
    import affectflow.submission.write as writer

    def reject(path, spec, expected, *, shown):
        assert path != shown  # it is the temporary file that gets checked
        raise SubmissionError("simulated validation failure")

    monkeypatch.setattr(writer, "validate_file", reject)
    path = tmp_path / "p.csv"
    with pytest.raises(SubmissionError, match="simulated"):
        write_submission(EMI, preds([1]), emi_expected([1]), path, fallback=None)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
