"""Tests of the Hume-Reaction (ERI) reader on fixtures of both official layouts."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectflow.data import DatasetError, count_clips, organiser_files, read_dataset, read_manifest, write_manifest
from affectflow.data.reaction import read_reaction_manifest
from affectflow.tasks import ERI_TARGETS
from affectflow.testing import PROPERTIES_FILE, TRUTH_FILE, make_reaction, make_vidmimic

TARGETS = list(ERI_TARGETS)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("reaction")
    return {
        "data_info": make_reaction(base / "data_info", layout="data_info", n_clips=10, seed=3),
        "labels_partition": make_reaction(base / "labels_partition", layout="labels_partition", n_clips=10, seed=3),
    }


def csv_only_root(tmp_path: Path, src: Path, files: dict[str, str]) -> Path:
    """A root with an empty raw/ and the given csv texts (errors come before media matter)."""
    root = tmp_path / "r"
    (root / "raw").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("layout", ["data_info", "labels_partition"])
def test_manifest_matches_fixture(roots, layout):
    root = roots[layout]
    props = pd.read_csv(root / PROPERTIES_FILE, sep="\t", dtype={"name": str, "media_file": str})
    truth = pd.read_csv(root / TRUTH_FILE, dtype={"File_ID": str}).set_index("File_ID")
    df = read_reaction_manifest(root)
    assert list(df.columns) == ["id", "split", "subject", "media", "name", *TARGETS]
    assert len(df) == len(props) == 10
    assert df["id"].is_monotonic_increasing and df["id"].dtype == np.int64
    assert df["split"].value_counts().to_dict() == props["split"].value_counts().to_dict()
    # id is the number inside the brackets; name is File_ID exactly as written
    assert all(name == f"[{i}]" for i, name in zip(df["id"], df["name"]))
    assert all(isinstance(n, str) for n in df["name"])
    assert (df["subject"] == "").all()
    expected_media = dict(zip(props["name"], props["media_file"]))
    for name, media in zip(df["name"], df["media"]):
        assert Path(media) == (root / "raw" / expected_media[name]).resolve()
        assert Path(media).is_file()
    assert any(Path(m).name.startswith("0") for m in df["media"])  # zero-padded ones are found too
    test = df["split"] == "test"
    assert df.loc[test, TARGETS].isna().all().all()
    labelled = df[~test].set_index("name")
    np.testing.assert_allclose(labelled[TARGETS].to_numpy(), truth.loc[labelled.index, TARGETS].to_numpy())


def test_both_layouts_give_the_same_manifest(roots):
    a = read_reaction_manifest(roots["data_info"]).drop(columns="media")
    b = read_reaction_manifest(roots["labels_partition"]).drop(columns="media")
    pd.testing.assert_frame_equal(a, b)


def test_data_info_wins_over_old_layout(roots, tmp_path):
    root = tmp_path / "both"
    shutil.copytree(roots["data_info"], root)
    (root / "partition.csv").write_text("garbage\n")
    assert len(read_reaction_manifest(root)) == 10


def test_missing_media_keeps_row_and_warns(roots, tmp_path, caplog):
    root = tmp_path / "m"
    shutil.copytree(roots["data_info"], root)
    first = read_reaction_manifest(root).iloc[0]
    Path(first["media"].replace(str(roots["data_info"].resolve()), str(root.resolve()))).unlink()
    with caplog.at_level(logging.WARNING, logger="affectflow.data.reaction"):
        df = read_reaction_manifest(root)
    assert len(df) == 10
    row = df.set_index("name").loc[first["name"]]
    assert Path(row["media"]) == root.resolve() / "raw" / f"{first['id']}.mp4"
    assert not Path(row["media"]).exists()
    assert first["name"] in caplog.text and "no media" in caplog.text


def test_two_media_files_for_one_clip(tmp_path):
    root = csv_only_root(tmp_path, tmp_path, {
        "data_info.csv": "File_ID,Split," + ",".join(TARGETS) + "\n[7],Test,,,,,,,\n",
    })
    (root / "raw" / "7.mp4").write_bytes(b"")
    (root / "raw" / "007.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"\[7\] matches several media files \(007\.mp4, 7\.mp4\)"):
        read_reaction_manifest(root)


def test_no_split_files(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(DatasetError, match=r"neither data_info\.csv nor labels\.csv \+ partition\.csv"):
        read_reaction_manifest(tmp_path)


def _edit(text: str, line: int, fn) -> str:
    lines = text.splitlines()
    lines[line - 1] = fn(lines[line - 1])
    return "\n".join(lines) + "\n"


def _set_cell(col: int, value: str):
    def fn(line: str) -> str:
        cells = line.split(",")
        cells[col] = value
        return ",".join(cells)
    return fn


@pytest.mark.parametrize(
    "edit, header_line, reason",
    [
        (lambda t, k: _edit(t, 1, lambda s: s.replace("Fear", "Fright")),
         1, r"bad header: missing column\(s\) \['Fear'\]; unexpected column\(s\) \['Fright'\]"),
        (lambda t, k: _edit(t, 1, lambda s: s + ",Extra"), 1, r"unexpected column\(s\) \['Extra'\]"),
        (lambda t, k: _edit(t, k, lambda s: s + ",0.5"), None, r"12 fields, expected 11"),
        (lambda t, k: _edit(t, k, lambda s: s.rsplit(",", 1)[0]), None, r"10 fields, expected 11"),
        (lambda t, k: _edit(t, k, _set_cell(3, "lots")), None, r"non-numeric label 'lots' in column 'Amusement'"),
        (lambda t, k: _edit(t, k, _set_cell(4, "1.2")), None, r"label '1.2' in column 'Anxiety' is outside \[0, 1\]"),
        (lambda t, k: _edit(t, k, _set_cell(8, "")), None, r"empty label in column 'Surprise'"),
        (lambda t, k: _edit(t, k, _set_cell(1, "Dev")), None, r"unknown Split 'Dev'"),
        (lambda t, k: _edit(t, k, _set_cell(0, "[12a]")), None, r"File_ID '\[12a\]' is not an integer"),
        (lambda t, k: _edit(t, k, lambda s: t.splitlines()[1].split(",")[0] + "," + s.split(",", 1)[1]),
         None, r"duplicate File_ID \d+ \(first seen on line 2\)"),
    ],
)
def test_malformed_data_info(roots, tmp_path, edit, header_line, reason):
    text = (roots["data_info"] / "data_info.csv").read_text()
    # the first labelled row after line 2 (so that a duplicate of line 2 can be planted there)
    k = next(i for i, s in enumerate(text.splitlines()[2:], start=3) if ",Test," not in s)
    broken = edit(text, k)
    line = k if header_line is None else header_line
    root = csv_only_root(tmp_path, roots["data_info"], {"data_info.csv": broken})
    with pytest.raises(DatasetError) as info:
        read_reaction_manifest(root)
    msg = str(info.value)
    assert f"data_info.csv, line {line}: " in msg, msg
    assert re.search(reason, msg), msg


def test_test_rows_targets_are_not_read(roots, tmp_path):
    text = (roots["data_info"] / "data_info.csv").read_text()
    k = next(i for i, s in enumerate(text.splitlines()[1:], start=2) if ",Test," in s)
    broken = _edit(text, k, _set_cell(2, "whatever"))
    root = csv_only_root(tmp_path, roots["data_info"], {"data_info.csv": broken})
    df = read_reaction_manifest(root)
    assert df.loc[df["split"] == "test", TARGETS].isna().all().all()


def test_old_layout_errors(roots, tmp_path):
    labels = (roots["labels_partition"] / "labels.csv").read_text()
    partition = (roots["labels_partition"] / "partition.csv").read_text()
    p_lines = partition.splitlines()
    k = next(i for i, s in enumerate(p_lines[1:], start=2) if not s.endswith(",Test"))
    train_id = p_lines[k - 1].split(",")[0]
    # a train id with no labels row
    no_labels = "\n".join(s for s in labels.splitlines() if not s.startswith(train_id + ",")) + "\n"
    root = csv_only_root(tmp_path / "a", None, {"labels.csv": no_labels, "partition.csv": partition})
    no_labels = rf"partition\.csv, line {k}: File_ID \[\d+\] is in the \w+ split but has no row in .*labels\.csv"
    with pytest.raises(DatasetError, match=no_labels):
        read_reaction_manifest(root)
    # labels for an id with no split
    extra = labels + "[99999]" + ",0.5" * 7 + "\n"
    n = len(labels.splitlines()) + 1
    root = csv_only_root(tmp_path / "b", None, {"labels.csv": extra, "partition.csv": partition})
    no_split = rf"labels\.csv, line {n}: File_ID 99999 has labels but no row in .*partition\.csv"
    with pytest.raises(DatasetError, match=no_split):
        read_reaction_manifest(root)
    # unknown split in partition.csv
    bad = _edit(partition, 4, lambda s: s.split(",")[0] + ",Holdout")
    root = csv_only_root(tmp_path / "c", None, {"labels.csv": labels, "partition.csv": bad})
    with pytest.raises(DatasetError, match=r"partition\.csv, line 4: unknown Split 'Holdout'"):
        read_reaction_manifest(root)
    # partition.csv alone
    root = csv_only_root(tmp_path / "d", None, {"partition.csv": partition})
    with pytest.raises(DatasetError, match=r"labels\.csv: file not found"):
        read_reaction_manifest(root)


def test_manifest_round_trip_keeps_names_as_text(roots, tmp_path):
    df = read_reaction_manifest(roots["data_info"])
    df["fold"] = np.arange(len(df)) % 3
    write_manifest(df, tmp_path / "m.tsv")
    back = read_manifest(tmp_path / "m.tsv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["name"].tolist() == df["name"].tolist()
    assert all(isinstance(n, str) for n in back["name"])
    assert back["id"].dtype == np.int64 and back["fold"].dtype.kind == "i"
    assert all(back[t].dtype == np.float64 for t in TARGETS)


def test_read_dataset_dispatch(roots, tmp_path):
    pd.testing.assert_frame_equal(read_dataset("eri", roots["data_info"]), read_reaction_manifest(roots["data_info"]))
    emi = read_dataset("emi", make_vidmimic(tmp_path / "emi", n_clips=5, seed=1))
    assert list(emi.columns[:5]) == ["id", "split", "subject", "media", "name"]
    assert emi["name"].tolist() == [str(i) for i in emi["id"]]
    write_manifest(emi, tmp_path / "emi.tsv")
    assert read_manifest(tmp_path / "emi.tsv")["name"].tolist() == emi["name"].tolist()
    with pytest.raises(TypeError, match=r"read_dataset\('eri'\): unknown option\(s\) \['test_list'\]; allowed: none"):
        read_dataset("eri", roots["data_info"], test_list="x")
    with pytest.raises(ValueError, match=r"unknown task 'xyz'; known: emi, eri, va, au"):
        read_dataset("xyz", roots["data_info"])


def test_organiser_files_and_clip_count(roots, tmp_path):
    info, older = roots["data_info"], roots["labels_partition"]
    assert organiser_files("eri", info) == [f"{info}/data_info.csv"]
    assert organiser_files("eri", str(older)) == [f"{older}/labels.csv", f"{older}/partition.csv"]
    assert organiser_files("eri", older, test_list="ignored.txt") == organiser_files("eri", older)
    for root in (info, older):
        assert count_clips("eri", root) == 10  # one raw/<n>.mp4 per clip, zero-padded or not
        assert count_clips("eri", root, demo_clips=12) == 12
    # data_info.csv wins when both layouts are there; half of the older layout lists data_info.csv
    # (the file the reader will ask for); no raw/: the clip count is unknown
    texts = {name: (src / name).read_text() for src, name in
             [(info, "data_info.csv"), (older, "labels.csv"), (older, "partition.csv")]}
    both = csv_only_root(tmp_path / "both", older, texts)
    assert organiser_files("eri", both) == [f"{both}/data_info.csv"]
    assert count_clips("eri", both) == 0  # an empty raw/
    half = tmp_path / "half"
    half.mkdir()
    (half / "labels.csv").write_text((older / "labels.csv").read_text())
    assert organiser_files("eri", half) == [f"{half}/data_info.csv"]
    assert count_clips("eri", half) is None
