"""The one checked reader of key + target tables (prediction tables, truth tables): errors name file, line, value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from affectflow.keys import KeyError_, TableError, checked_table, integer_column, read_prediction_table

KEYS, TARGETS = ["id", "frame"], ["valence", "arousal"]


def test_checked_table_gives_int_keys_float_targets_on_a_fresh_index():
    frame = pd.DataFrame({"extra": "x", "arousal": [0.5, None], "frame": [2.0, 7.0], "id": ["12", 3],
                          "valence": [1, 0]}, index=[10, 4])
    table = checked_table(frame, KEYS, TARGETS, where="t.csv")
    assert list(table.columns) == KEYS + TARGETS and list(table.index) == [0, 1]
    assert table.dtypes.tolist() == [np.dtype("int64")] * 2 + [np.dtype("float64")] * 2
    assert table["id"].tolist() == [12, 3] and np.isnan(table["arousal"][1])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="arousal"), r"t\.csv: missing column\(s\) \['arousal'\] \(expected \['id', 'frame',"),
        (lambda f: f.assign(id=[1, "1b", 2]), r"t\.csv: line 3: id '1b' is not an integer"),
        (lambda f: f.assign(frame=[1, 2, 2.5]), r"t\.csv: line 4: frame 2\.5 is not an integer"),
        (lambda f: f.assign(valence=[0.1, 0.2, "high"]), r"t\.csv: line 4: valence 'high' is not a number"),
        (lambda f: f.assign(frame=[1, 2, 1]), r"t\.csv: line 4: duplicate row for \{'id': 1, 'frame': 1\}"),
    ],
)
def test_checked_table_errors_name_where_the_line_and_the_value(change, message):
    frame = pd.DataFrame({"id": [1, 1, 1], "frame": [1, 2, 3], "valence": [0.1, 0.2, 0.3], "arousal": 0.0})
    with pytest.raises(TableError, match=message):
        checked_table(change(frame), KEYS, TARGETS, where="t.csv")


def test_key_errors_are_table_errors_and_value_errors():
    with pytest.raises(KeyError_) as info:
        integer_column(pd.Series([1, None]), where="m.tsv", name="id")
    assert isinstance(info.value, TableError) and isinstance(info.value, ValueError)
    assert str(info.value) == "m.tsv: line 3: id nan is not an integer"


def test_read_prediction_table_names_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(TableError, match=r"nowhere/oof\.csv: prediction table not found"):
        read_prediction_table(tmp_path / "nowhere" / "oof.csv", KEYS, TARGETS)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TableError, match=r"empty\.csv: cannot be read as CSV"):
        read_prediction_table(tmp_path / "empty.csv", KEYS, TARGETS)
    (tmp_path / "oof.csv").write_text("id,frame,valence,arousal\n1,1,0.5,\n1,2,x,0.1\n")
    with pytest.raises(TableError, match=r"oof\.csv: line 3: valence 'x' is not a number"):
        read_prediction_table(tmp_path / "oof.csv", KEYS, TARGETS)
