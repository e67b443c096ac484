"""Tests of the Hume-Vidmimic2 reader and the manifest TSV round trip."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectflow.data import (
    DatasetError,
    count_clips,
    organiser_files,
    read_dataset,
    read_emi_manifest,
    read_manifest,
    write_manifest,
    write_manifest_job,
)
from affectflow.data.folds import assign_folds
from affectflow.data.shards import shard_of
from affectflow.testing import make_vidmimic

HEADER = "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy"
TARGETS = ["Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy"]


def make_root(tmp_path: Path, train: list[str], valid: list[str], media: list[str]) -> Path:
    """Build a data set root from csv body lines and raw/ file names."""
    root = tmp_path / "emi"
    (root / "raw").mkdir(parents=True)
    (root / "train_split.csv").write_text("\n".join([HEADER, *train]) + "\n")
    (root / "valid_split.csv").write_text("\n".join([HEADER, *valid]) + "\n")
    for name in media:
        (root / "raw" / name).write_bytes(b"")
    return root


@pytest.fixture
def root(tmp_path):
    return make_root(
        tmp_path,
        train=["3,0.1,0.2,0.3,0.4,0.5,0.6", "1,0,1,0.5,0.25,0.75,0.125"],
        valid=["12,0.9,0.8,0.7,0.6,0.5,0.4"],
        media=[
            "00001.mp4",
            "00003.mp4",
            "00012.mp4",
            "00007.mp4",
            "00020.mp4",
            "notes.txt",
            "7.mp4",
            "00008.mp4.part",
            "abcde.mp4",
        ],
    )


def test_manifest_columns_splits_and_order(root):
    df = read_emi_manifest(root)
    assert list(df.columns) == ["id", "split", "subject", "media", *TARGETS]
    assert df["id"].tolist() == [1, 3, 7, 12, 20]
    assert df["split"].tolist() == ["train", "train", "test", "val", "test"]
    assert df["id"].dtype.kind == "i"
    assert all(df[t].dtype == np.float64 for t in TARGETS)
    assert (df["subject"] == "").all()


def test_labels_media_and_test_rows(root):
    df = read_emi_manifest(root).set_index("id")
    assert df.loc[1, TARGETS].tolist() == [0.0, 1.0, 0.5, 0.25, 0.75, 0.125]
    assert df.loc[12, "Empathic Pain"] == pytest.approx(0.6)
    assert df.loc[[7, 20], TARGETS].isna().all().all()
    for clip_id, media in df["media"].items():
        assert Path(media).is_absolute()
        assert Path(media) == (root / "raw" / f"{clip_id:05d}.mp4").resolve()


def test_non_clip_names_in_raw_are_ignored(root):
    # 7.mp4, abcde.mp4 and the .part file must not become test clips.
    df = read_emi_manifest(root)
    assert not any(Path(m).name in {"7.mp4", "abcde.mp4", "00008.mp4.part"} for m in df["media"])
    assert 8 not in df["id"].tolist()


def test_reordered_header_is_read_by_name(tmp_path):
    cols = ["Joy", "Filename", *TARGETS[:-1]]
    root = make_root(tmp_path, [], ["5,0.5,0,0,0,0,0"], ["00005.mp4"])
    (root / "train_split.csv").write_text(",".join(cols) + "\n0.9,4,0.1,0.2,0.3,0.4,0.5\n")
    (root / "raw" / "00004.mp4").write_bytes(b"")
    df = read_emi_manifest(root).set_index("id")
    assert df.loc[4, "Joy"] == pytest.approx(0.9)
    assert df.loc[4, "Admiration"] == pytest.approx(0.1)


def test_missing_csv(tmp_path):
    root = make_root(tmp_path, [], [], [])
    (root / "valid_split.csv").unlink()
    with pytest.raises(DatasetError, match=r"valid_split\.csv.*not found"):
        read_emi_manifest(root)


def test_missing_raw_dir(tmp_path):
    root = make_root(tmp_path, [], [], [])
    (root / "raw").rmdir()
    with pytest.raises(DatasetError, match=r"raw.*not found"):
        read_emi_manifest(root)


@pytest.mark.parametrize(
    "header, pattern",
    [
        (HEADER.replace(",Joy", ""), r"missing column\(s\) \['Joy'\]"),
        (HEADER + ",Extra", r"unexpected column\(s\) \['Extra'\]"),
        (
            HEADER.replace("Empathic Pain", "EmpathicPain"),
            r"missing column\(s\) \['Empathic Pain'\].*unexpected column\(s\) \['EmpathicPain'\]",
        ),
        (HEADER.replace("Joy", "Amusement"), r"duplicated column\(s\) \['Amusement'\]"),
    ],
)
def test_bad_header(tmp_path, header, pattern):
    root = make_root(tmp_path, [], [], [])
    (root / "train_split.csv").write_text(header + "\n")
    with pytest.raises(DatasetError, match=r"train_split\.csv, line 1: bad header") as info:
        read_emi_manifest(root)
    assert re.search(pattern, str(info.value))


@pytest.mark.parametrize(
    "bad_row, reason",
    [
        ("x1,0.1,0.1,0.1,0.1,0.1,0.1", r"Filename 'x1' is not a non-negative integer"),
        ("2.5,0.1,0.1,0.1,0.1,0.1,0.1", r"Filename '2.5' is not a non-negative integer"),
        ("2,0.1,,0.1,0.1,0.1,0.1", r"empty label in column 'Amusement'"),
        ("2,0.1,0.1,nan,0.1,0.1,0.1", r"NaN label in column 'Determination'"),
        ("2,0.1,0.1,0.1,high,0.1,0.1", r"non-numeric label 'high' in column 'Empathic Pain'"),
        ("2,0.1,0.1,0.1,0.1,1.5,0.1", r"label '1.5' in column 'Excitement' is outside \[0, 1\]"),
        ("2,0.1,0.1,0.1,0.1,0.1,-0.01", r"label '-0.01' in column 'Joy' is outside \[0, 1\]"),
        ("2,0.1,0.1,0.1,0.1,0.1", r"6 fields, expected 7"),
        ("1,0.1,0.1,0.1,0.1,0.1,0.1", r"duplicate Filename 1 \(first seen on line 2\)"),
    ],
)
def test_bad_rows_name_file_line_and_reason(tmp_path, bad_row, reason):
    root = make_root(tmp_path, ["1,0,0,0,0,0,0", bad_row], [], ["00001.mp4", "00002.mp4"])
    with pytest.raises(DatasetError, match=r"train_split\.csv, line 3: " + reason):
        read_emi_manifest(root)


def test_duplicate_across_files(tmp_path):
    root = make_root(
        tmp_path,
        ["1,0,0,0,0,0,0", "2,0,0,0,0,0,0"],
        ["4,0,0,0,0,0,0", "2,1,1,1,1,1,1"],
        ["00001.mp4", "00002.mp4", "00004.mp4"],
    )
    with pytest.raises(DatasetError) as info:
        read_emi_manifest(root)
    msg = str(info.value)
    assert "valid_split.csv, line 3" in msg
    assert "train_split.csv, line 3" in msg
    assert "Filename 2" in msg


def test_labelled_id_without_media(tmp_path):
    root = make_root(tmp_path, ["1,0,0,0,0,0,0"], ["9,0,0,0,0,0,0"], ["00001.mp4"])
    with pytest.raises(
        DatasetError, match=r"valid_split\.csv, line 2: no media for Filename 9.*00009\.mp4"
    ):
        read_emi_manifest(root)


def test_manifest_round_trip(root, tmp_path):
    df = read_emi_manifest(root)
    df["subject"] = ["", "s1", "", "NA", ""]  # "NA" must stay a string, "" must stay ""
    df.loc[0, "Joy"] = 1 / 3  # needs full precision to survive the text round trip
    path = tmp_path / "out" / "manifest.tsv"
    write_manifest(df, path)
    assert not list(path.parent.glob(".*tmp*"))
    back = read_manifest(path)
    assert list(back.columns) == list(df.columns)
    assert back["id"].dtype.kind == "i"
    assert back["subject"].tolist() == ["", "s1", "", "NA", ""]
    assert back["Joy"].iloc[0] == 1 / 3
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert all(back[t].dtype == np.float64 for t in TARGETS)
    assert math.isnan(back.set_index("id").loc[7, "Joy"])


def test_manifest_extra_int_column_round_trips(root, tmp_path):
    df = read_emi_manifest(root)
    df["fold"] = [0, 1, -1, 0, -1]
    write_manifest(df, tmp_path / "m.tsv")
    back = read_manifest(tmp_path / "m.tsv")
    assert back["fold"].tolist() == [0, 1, -1, 0, -1]
    assert back["fold"].dtype.kind == "i"


def test_write_manifest_requires_columns(tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['media'\]"):
        write_manifest(
            pd.DataFrame({"id": [1], "split": ["train"], "subject": [""]}), tmp_path / "m.tsv"
        )
    assert not (tmp_path / "m.tsv").exists()


def test_read_manifest_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.tsv: manifest not found"):
        read_manifest(tmp_path / "nope.tsv")


def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path):
    root = make_root(tmp_path, [], [], ["00001.mp4", "00002.mp4"])
    text = "\ufeff" + HEADER + "\r\n1,0.5,0,0,0,0,0\r\n\r\n2,0,0,0,0,0,0.25\r\n"
    (root / "train_split.csv").write_bytes(text.encode("utf-8"))
    df = read_emi_manifest(root)
    assert df["id"].tolist() == [1, 2]
    assert df["Joy"].tolist() == [0.0, 0.25]


def test_error_line_numbers_count_blank_lines(tmp_path):
    root = make_root(tmp_path, ["1,0,0,0,0,0,0", "", "2,0,0,0,0,0,7"], [], ["00001.mp4", "00002.mp4"])
    with pytest.raises(DatasetError, match=r"train_split\.csv, line 4: label '7'"):
        read_emi_manifest(root)


# --- what the workflow asks of the reader before and while it reads -----------------------------
@pytest.fixture(scope="module")
def vidmimic(tmp_path_factory):
    return make_vidmimic(tmp_path_factory.mktemp("vidmimic") / "emi", n_clips=5, seed=1)


def test_organiser_files_and_clip_count(vidmimic, root):
    for r in (vidmimic, str(vidmimic)):
        assert organiser_files("emi", r) == [f"{vidmimic}/train_split.csv", f"{vidmimic}/valid_split.csv"]
        assert organiser_files("emi", r, test_list="ignored.txt") == organiser_files("emi", r)
        assert count_clips("emi", r) == 5
    assert count_clips("emi", vidmimic, demo_clips=72) == 72
    # media-like names of any case count (test clips are only files under raw/); no raw/: unknown
    assert count_clips("emi", root) == 7  # 00001/3/12/7/20.mp4, 7.mp4, abcde.mp4
    (root / "raw" / "extra.MOV").write_bytes(b"")
    assert count_clips("emi", root) == 8
    assert count_clips("emi", root.parent / "nowhere") is None
    with pytest.raises(ValueError, match=r"unknown task 'xyz'; known: emi, eri, va, au"):
        organiser_files("xyz", root)
    with pytest.raises(ValueError, match=r"unknown task 'xyz'"):
        count_clips("xyz", root)


def test_write_manifest_job_writes_one_partition_each(vidmimic, tmp_path):
    kwargs = dict(options={}, n_shards=2, test_shards=1, k_folds=2, seed=3)
    summary = write_manifest_job("emi", vidmimic, "labelled", tmp_path / "m.tsv", **kwargs)
    write_manifest_job("emi", vidmimic, "test", tmp_path / "t.tsv", **kwargs)
    dataset = read_dataset("emi", vidmimic)
    # shards: the stable hash within each partition (test clips apart, "test0"); folds over the labelled only
    dataset["shard"] = [f"test{shard_of(i, 1)}" if s == "test" else str(shard_of(i, 2))
                        for i, s in zip(dataset["id"], dataset["split"])]
    expected = assign_folds(dataset, 2, seed=3)
    labelled, test = expected[expected["split"] != "test"], expected[expected["split"] == "test"]
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m.tsv"),
                                  read_manifest_frame(labelled.reset_index(drop=True), tmp_path))
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "t.tsv"),
                                  read_manifest_frame(test.reset_index(drop=True), tmp_path))
    assert summary.startswith(f"{len(labelled)} labelled clips") and summary.endswith(f"of {len(expected)}")
    # the labelled folds do not depend on the test clips
    only_labelled = assign_folds(dataset[dataset["split"] != "test"], 2, seed=3)
    assert only_labelled["fold"].tolist() == labelled["fold"].tolist()


def read_manifest_frame(df: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """``df`` as :func:`read_manifest` gives it back after :func:`write_manifest`."""
    write_manifest(df, tmp_path / "expected.tsv")
    return read_manifest(tmp_path / "expected.tsv")
