"""Tests of the Aff-Wild2 (VA, AU) reader, per-frame labels and sample-submission reader."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from affectflow.data import (
    DatasetError,
    count_clips,
    dataset_options,
    organiser_files,
    read_dataset,
    read_manifest,
    write_frame_labels,
    write_manifest,
)
from affectflow.data.affwild2 import (
    CHALLENGE_DIRS,
    TEST_LIST_NAMES,
    read_affwild2_manifest,
    read_sample_frames,
    video_of_track,
)
from affectflow.data.affwild2_frames import frame_label_table, read_frame_labels
from affectflow.tasks import AU_TARGETS, VA_TARGETS
from affectflow.testing import PROPERTIES_FILE, SAMPLE_SUBMISSION_NAMES, TEST_LIST_DIR, make_affwild2

TARGETS = {"va": list(VA_TARGETS), "au": list(AU_TARGETS)}
INVALID = {"va": -5.0, "au": -1.0}
COLUMNS = ["id", "split", "subject", "media", "name", "labels", "fps", "frames", "crops"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_affwild2(tmp_path_factory.mktemp("affwild2") / "aw", n_videos=5, seed=7)


@pytest.fixture(scope="module")
def props(root):
    return pd.read_csv(root / PROPERTIES_FILE, sep="\t", dtype={"name": str, "video": str})


@pytest.fixture(scope="module")
def manifests(root):
    return {task: read_affwild2_manifest(root, task) for task in ("va", "au")}


def light_root(src: Path, dest: Path) -> Path:
    """A copy of ``src`` whose big folders are symlinks and whose Annotations are real copies."""
    dest.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name == "Annotations":
            shutil.copytree(entry, dest / entry.name)
        else:
            os.symlink(entry, dest / entry.name)
    return dest


def raw_values(path: Path) -> np.ndarray:
    """Independent parse of an annotation file: numpy on the text after the header line."""
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


@pytest.mark.parametrize("task", ["va", "au"])
def test_manifest_tracks_splits_and_ids(root, props, manifests, task):
    df = manifests[task]
    assert list(df.columns) == COLUMNS
    ann = root / "Annotations" / CHALLENGE_DIRS[task]
    expected = {p.stem: "train" for p in (ann / "Train_Set").glob("*.txt")}
    expected |= {p.stem: "val" for p in (ann / "Validation_Set").glob("*.txt")}
    test_list = (root / TEST_LIST_DIR / TEST_LIST_NAMES[task]).read_text().split()
    expected |= {name: "test" for name in test_list}
    assert dict(zip(df["name"], df["split"])) == expected
    assert set(df["split"]) == {"train", "val", "test"}
    assert df["id"].tolist() == [int(hashlib.sha1(n.encode()).hexdigest()[:12], 16) for n in df["name"]]
    assert df["id"].is_monotonic_increasing
    for row in df.itertuples():
        folder = {"train": "Train_Set", "val": "Validation_Set"}.get(row.split)
        assert row.labels == ("" if folder is None else str(ann / folder / f"{row.name}.txt"))
        assert Path(row.crops) == root.resolve() / "cropped_aligned" / row.name
        assert Path(row.media).is_file() and Path(row.media).stem == row.subject
    # the AU challenge leaves out one train video
    if task == "au":
        assert len(df) == len(manifests["va"]) - 1
        assert set(df["name"]) < set(manifests["va"]["name"])


def test_left_right_share_media_and_subject(manifests):
    df = manifests["va"]
    pairs = df[df["name"].str.endswith(("_left", "_right"))]
    assert len(pairs) == 4 and set(pairs["split"]) == {"train", "test"}
    for video, group in pairs.groupby("subject"):
        assert sorted(group["name"]) == [f"{video}_left", f"{video}_right"]
        assert group["media"].nunique() == 1 and Path(group["media"].iloc[0]).stem == video
        assert group["frames"].nunique() == 1


def test_fps_and_frames_agree_with_decoding(manifests, props):
    df = manifests["va"]
    truth = props.set_index("name")
    for row in df.itertuples():
        with av.open(row.media) as container:
            decoded = sum(1 for _ in container.decode(video=0))
            stream = container.streams.video[0]
            timestamps_fps = 1 / float(stream.time_base * (stream.duration / stream.frames))
        assert row.frames == decoded == truth.loc[row.name, "frames"]
        assert row.fps == pytest.approx(truth.loc[row.name, "fps"])
        assert row.fps == pytest.approx(timestamps_fps, rel=0.02)
    assert set(df["fps"]) == {25.0, 30.0}


@pytest.mark.parametrize("task", ["va", "au"])
def test_frame_labels_drop_invalid_rows(manifests, task):
    df = manifests[task]
    n_single_invalid = 0
    for path in df.loc[df["labels"] != "", "labels"]:
        raw = raw_values(Path(path))
        bad = (raw == INVALID[task]).any(axis=1)
        n_single_invalid += int(((raw == INVALID[task]).sum(axis=1) == 1).sum())
        frames, values = read_frame_labels(path, task)
        assert frames.dtype == np.int64 and values.dtype == np.float32
        np.testing.assert_array_equal(frames, np.flatnonzero(~bad) + 1)
        np.testing.assert_allclose(values, raw[~bad], rtol=1e-6)
    # the fixture plants both fully and partially invalid rows
    assert n_single_invalid > 0


@pytest.mark.parametrize("task", ["va", "au"])
def test_frame_label_table(manifests, task):
    df = manifests[task]
    table = frame_label_table(df, task)
    assert list(table.columns) == ["id", "frame", *TARGETS[task]]
    labelled = df[df["split"] != "test"]
    expected_rows = 0
    for row in labelled.itertuples():
        raw = pd.read_csv(row.labels)
        expected_rows += int((raw != INVALID[task]).all(axis=1).sum())
    assert len(table) == expected_rows
    assert set(table["id"]) == set(labelled["id"])
    assert not set(table["id"]) & set(df.loc[df["split"] == "test", "id"])
    assert (table[TARGETS[task]] != INVALID[task]).all().all()
    assert table.sort_values(["id", "frame"]).index.equals(table.index)
    frames = df.set_index("id")["frames"]
    assert (table["frame"] >= 1).all() and (table["frame"].to_numpy() <= frames.loc[table["id"]].to_numpy()).all()


@pytest.mark.parametrize("task", ["va", "au"])
def test_sample_frames_cover_test_tracks(root, manifests, task):
    sample = read_sample_frames(root / SAMPLE_SUBMISSION_NAMES[task])
    assert list(sample.columns) == ["name", "frame"] and sample["frame"].dtype == np.int64
    raw = pd.read_csv(root / SAMPLE_SUBMISSION_NAMES[task])
    assert len(sample) == len(raw)
    locations = sample["name"] + "/" + sample["frame"].map("{:05d}".format) + ".jpg"
    assert locations.tolist() == raw["image_location"].tolist()
    test = manifests[task][manifests[task]["split"] == "test"]
    assert sample.groupby("name")["frame"].max().to_dict() == dict(zip(test["name"], test["frames"]))


def test_explicit_and_missing_test_list(root, tmp_path, caplog):
    r = light_root(root, tmp_path / "r")
    # an explicit list
    own = tmp_path / "mine.txt"
    own.write_text("video4_extra\n\n")
    df = read_affwild2_manifest(r, "va", test_list=own)
    assert df.loc[df["split"] == "test", "name"].tolist() == ["video4_extra"]
    assert df.set_index("name").loc["video4_extra", "subject"] == "video4_extra"
    # no list at all: no test rows, and a warning
    os.unlink(r / TEST_LIST_DIR)
    with caplog.at_level(logging.WARNING, logger="affectflow.data.affwild2"):
        df = read_affwild2_manifest(r, "va")
    assert "test" not in set(df["split"])
    assert "no test list" in caplog.text
    # via read_dataset, with options
    df = read_dataset("va", r, test_list=own)
    assert (df["split"] == "test").sum() == 1
    # the reader options a config's dataset section sets (the manifest rule's)
    section = {"name": "x", "task": "va", "root": str(r), "n_shards": 2, "test_list": str(own)}
    assert dataset_options(section) == {"test_list": str(own)}
    assert dataset_options({**section, "frame_tolerance": 3}) == {"test_list": str(own), "frame_tolerance": 3}
    assert (read_dataset("va", r, **dataset_options(section))["split"] == "test").sum() == 1
    assert dataset_options({"name": "x", "task": "emi", "root": "r", "n_shards": 2}) == {}
    with pytest.raises(TypeError, match="test_list"):  # an option the task's reader does not take
        read_dataset("emi", r, **dataset_options({"task": "emi", "test_list": str(own)}))


def test_missing_video_keeps_row(root, tmp_path, caplog):
    own = tmp_path / "t.txt"
    own.write_text("ghost_left\n")
    with caplog.at_level(logging.WARNING, logger="affectflow.data.affwild2"):
        df = read_affwild2_manifest(root, "va", test_list=own)
    row = df.set_index("name").loc["ghost_left"]
    assert row["subject"] == "ghost" and np.isnan(row["fps"]) and row["frames"] == 0 and row["crops"] == ""
    assert "ghost_left" in caplog.text


def test_test_list_errors(root, tmp_path):
    own = tmp_path / "t.txt"
    own.write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match=r"t\.txt, line 3: duplicate track 'a' \(first seen on line 1\)"):
        read_affwild2_manifest(root, "va", test_list=own)
    train = next((root / "Annotations" / CHALLENGE_DIRS["va"] / "Train_Set").glob("*.txt")).stem
    own.write_text(f"x\n{train}\n")
    with pytest.raises(DatasetError, match=rf"t\.txt, line 2: test track '{re.escape(train)}' is also annotated in"):
        read_affwild2_manifest(root, "va", test_list=own)


def test_track_named_video_wins_and_avi_duplicates(root, tmp_path):
    assert video_of_track("v_left") == "v" and video_of_track("v_right") == "v" and video_of_track("_left") == "_left"
    assert video_of_track("v_left", {"v_left": Path("x")}) == "v_left"
    r = light_root(root, tmp_path / "r")
    os.unlink(r / "videos")
    shutil.copytree(root / "videos", r / "videos")
    src = next((r / "videos").rglob("video4.mp4"))
    src.rename(src.with_suffix(".avi"))  # an .avi is found as well
    df = read_affwild2_manifest(r, "va")
    assert df.set_index("name").loc["video4", "media"].endswith("video4.avi")
    assert df.set_index("name").loc["video4", "frames"] > 0
    shutil.copy(src.with_suffix(".avi"), r / "videos" / "video4.mp4")
    with pytest.raises(DatasetError, match=r"video 'video4' \(track 'video4'\) is found 2 times"):
        read_affwild2_manifest(r, "va")


def _broken(root: Path, tmp_path: Path, task: str, edit) -> tuple[Path, Path, int]:
    """Copy the root, apply ``edit(lines) -> (lines, line_no)`` to one annotation file."""
    r = light_root(root, tmp_path / "r")
    path = sorted((r / "Annotations" / CHALLENGE_DIRS[task] / "Train_Set").glob("*.txt"))[0]
    lines, line = edit(path.read_text().splitlines())
    path.write_text("\n".join(lines) + "\n")
    return r, path, line


def _set(line: int, text: str):
    def edit(lines):
        lines[line - 1] = text
        return lines, line
    return edit


def _frames_of(root: Path, task: str) -> int:
    path = sorted((root / "Annotations" / CHALLENGE_DIRS[task] / "Train_Set").glob("*.txt"))[0]
    return int(read_affwild2_manifest(root, task).set_index("name").loc[path.stem, "frames"])


@pytest.mark.parametrize(
    "task, edit, reason",
    [
        ("va", _set(1, "valence,arousal,dominance"),
         r"bad header 'valence,arousal,dominance', expected exactly valence,arousal"),
        ("au", _set(1, "AU1,AU2"), r"bad header 'AU1,AU2', expected exactly AU1,AU2,AU4"),
        ("va", _set(7, "0.1,0.2,0.3"), r"3 fields, expected 2"),
        ("va", _set(9, "0.1"), r"1 fields, expected 2"),
        ("va", _set(11, "0.1,high"), r"non-numeric value 'high' in column 'arousal'"),
        ("va", _set(12, "1.5,0.2"), r"valence '1.5' is outside \[-1, 1\] and not the invalid code -5"),
        ("va", _set(12, "-4,0.2"), r"valence '-4' is outside"),
        ("va", _set(13, "nan,0.2"), r"'nan' in column 'valence' is not a finite number"),
        ("au", _set(14, "0,1,0,1,0,1,0,1,0,1,0,2"), r"AU26 '2' is not 0, 1 or the invalid code -1"),
        ("au", _set(14, "0,1,0,1,0,1,0,0.5,0,1,0,1"), r"AU15 '0.5' is not 0, 1"),
        ("va", _set(6, ""), r"blank line inside the annotation"),
    ],
)
def test_malformed_annotation(root, tmp_path, task, edit, reason):
    r, path, line = _broken(root, tmp_path, task, edit)
    with pytest.raises(DatasetError) as info:
        read_affwild2_manifest(r, task)
    msg = str(info.value)
    assert f"{path.name}, line {line}: " in msg, msg
    assert re.search(reason, msg), msg
    # read_frame_labels reports the same
    with pytest.raises(DatasetError, match=re.escape(f"{path.name}, line {line}: ")):
        read_frame_labels(path, task)


def test_annotation_longer_than_video(root, tmp_path):
    n = _frames_of(root, "va")

    def pad(extra):
        def edit(lines):
            body = lines[1:] + ["0.1,0.1"] * (n - (len(lines) - 1) + extra)
            return [lines[0], *body], n + extra + 1
        return edit

    r, path, _ = _broken(root, tmp_path / "ok", "va", pad(1))  # one frame more is tolerated
    assert len(read_frame_labels(path, "va")[0]) > 0
    read_affwild2_manifest(r, "va")
    r, path, line = _broken(root, tmp_path / "bad", "va", pad(2))
    too_long = rf"{re.escape(path.name)}, line {line}: {n + 2} annotated frames but the video .* has {n} frames"
    with pytest.raises(DatasetError, match=too_long):
        read_affwild2_manifest(r, "va")
    read_affwild2_manifest(r, "va", frame_tolerance=2)


def test_trailing_blank_lines_and_crlf_are_tolerated(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"valence,arousal\r\n0.5,-5\r\n0.25,0.5\r\n\r\n\r\n")
    frames, values = read_frame_labels(path, "va")
    assert frames.tolist() == [2] and values.tolist() == [[0.25, 0.5]]


def test_bad_task_and_missing_dirs(root, tmp_path):
    with pytest.raises(ValueError, match=r"unknown Aff-Wild2 task 'expr'; expected one of va, au"):
        read_affwild2_manifest(root, "expr")
    with pytest.raises(DatasetError, match=r"VA_Estimation_Challenge: annotation directory not found"):
        read_affwild2_manifest(tmp_path, "va")


def test_sample_frames_errors(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("location,valence,arousal\nv/00001.jpg,0,0\n")
    with pytest.raises(DatasetError, match=r"s\.csv, line 1: bad header"):
        read_sample_frames(path)
    path.write_text("image_location,valence,arousal\nv/00001.jpg,0,0\nv/00002.png,0,0\n")
    with pytest.raises(DatasetError, match=r"s\.csv, line 3: image_location 'v/00002.png' is not <video>/<frame>\.jpg"):
        read_sample_frames(path)
    path.write_text("image_location,valence,arousal\nv/00001.jpg,0,0\n\nv/00001.jpg,0,0\n")
    duplicate = r"s\.csv, line 4: duplicate image_location 'v/00001.jpg' \(first seen on line 2\)"
    with pytest.raises(DatasetError, match=duplicate):
        read_sample_frames(path)
    path.write_text("image_location,valence,arousal\nv/00000.jpg,0,0\n")
    with pytest.raises(DatasetError, match=r"s\.csv, line 2: frame 0"):
        read_sample_frames(path)
    path.write_text("image_location,valence,arousal\nv/00001.jpg,0\n")
    with pytest.raises(DatasetError, match=r"s\.csv, line 2: 2 fields, expected 3"):
        read_sample_frames(path)


def test_per_frame_manifest_round_trip(manifests, tmp_path):
    df = manifests["va"].copy()
    df.loc[0, "name"] = "00012"  # a numeric-looking track name stays text
    df.loc[1, "fps"] = np.nan
    df["shard"] = np.arange(len(df)) % 2
    write_manifest(df, tmp_path / "m.tsv")
    back = read_manifest(tmp_path / "m.tsv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["name"].iloc[0] == "00012"
    assert back["frames"].dtype == np.int64 and back["fps"].dtype == np.float64 and back["id"].dtype == np.int64
    assert (back.loc[back["split"] == "test", "labels"] == "").all()
    lines = (tmp_path / "m.tsv").read_text().splitlines()
    cells = lines[3].split("\t")
    cells[COLUMNS.index("frames")] = "6x"  # data row 3 = line 4
    lines[3] = "\t".join(cells)
    (tmp_path / "bad.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"bad\.tsv, line 4: frames '6x' is not an integer"):
        read_manifest(tmp_path / "bad.tsv")


def test_organiser_files_and_clip_count(root, props, tmp_path):
    own = tmp_path / "mine.txt"
    for r in (root, str(root)):
        assert organiser_files("va", r) == [f"{root}/Annotations/VA_Estimation_Challenge"]
        assert organiser_files("au", r, test_list=own) == [f"{root}/Annotations/AU_Detection_Challenge", str(own)]
        assert organiser_files("va", r, test_list=str(own)) == [f"{root}/Annotations/VA_Estimation_Challenge", str(own)]
    # the annotated (train + val) tracks: 5 videos, two of them with two people, one left out of AU
    labelled = props[props["split"] != "test"]
    assert count_clips("va", root) == len(labelled) == 5
    assert count_clips("au", root) == int(labelled["in_au"].sum()) == 4
    assert count_clips("au", root, demo_clips=10) == 10
    # no annotation file (or no folder): unknown
    empty = tmp_path / "empty"
    (empty / "Annotations" / CHALLENGE_DIRS["va"] / "Train_Set").mkdir(parents=True)
    assert count_clips("va", empty) is None and count_clips("au", empty) is None


@pytest.mark.parametrize("task", ["va", "au"])
def test_write_frame_labels(manifests, task, tmp_path):
    write_manifest(manifests[task], tmp_path / "m.tsv")
    summary = write_frame_labels(tmp_path / "m.tsv", task, tmp_path / "frames.csv.gz")
    expected = frame_label_table(manifests[task], task)
    back = pd.read_csv(tmp_path / "frames.csv.gz")
    assert list(back.columns) == list(expected.columns)
    assert back[["id", "frame"]].equals(expected[["id", "frame"]].astype(back["id"].dtype))
    np.testing.assert_allclose(back[TARGETS[task]].to_numpy(), expected[TARGETS[task]].to_numpy(), rtol=1e-5)
    assert summary == f"{len(expected)} labelled frames in {expected['id'].nunique()} tracks"
