"""Submission writers and validators of the four tasks (EMI, ERI, VA, AU).

Files written are re-read with the csv module and pandas and checked against values computed
here (brute force for the nearest-frame fallback), not against the writer's own helpers.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from organiser_layouts import write_affwild2_root, write_eri_root

import affectflow.submission.validate as validation
from affectflow.data import write_frame_labels, write_manifest
from affectflow.submission import (
    SubmissionError,
    expected_rows,
    training_fallback,
    validate_submission,
    write_submission,
    write_task_submission,
)
from affectflow.tasks import task_spec

REPO = Path(__file__).resolve().parents[2]

# The organisers' headers, written out here independently of affectflow.tasks.
HEADERS = {
    "emi": "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy",
    "eri": "File_ID,Adoration,Amusement,Anxiety,Disgust,Empathic-Pain,Fear,Surprise",
    "va": "image_location,valence,arousal",
    "au": "image_location,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
}
RANGES = {"emi": (0.0, 1.0), "eri": (0.0, 1.0), "va": (-1.0, 1.0), "au": (0.0, 1.0)}


def targets(task: str) -> list[str]:
    return HEADERS[task].split(",")[1:]


def track_id(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)


def clip_manifest(task: str) -> pd.DataFrame:
    """Train/val rows with labels, test rows (NaN labels) in a deliberately unsorted order."""
    rng = np.random.default_rng(1)
    ids = [50, 3, 17, 8, 41, 22, 9, 30, 12, 5]
    split = ["train", "test", "val", "test", "train", "test", "train", "test", "val", "test"]
    names = [str(i) if task == "emi" else f"[{16700 + i}]" for i in ids]
    df = pd.DataFrame(
        {"id": ids, "split": split, "subject": "", "media": [f"m/{i}.mp4" for i in ids], "name": names}
    )
    for t in targets(task):
        df[t] = np.where(df["split"] == "test", np.nan, rng.uniform(0, 1, len(ids)))
    return df


TRACKS = {"video1": ("test", 12), "video2_left": ("test", 9), "video2_right": ("test", 7),
          "video3": ("train", 20)}


def frame_manifest() -> pd.DataFrame:
    names = list(TRACKS)
    return pd.DataFrame(
        {
            "id": [track_id(n) for n in names],
            "split": [TRACKS[n][0] for n in names],
            "subject": "",
            "media": [f"videos/{n.split('_')[0]}.mp4" for n in names],
            "name": names,
            "labels": "",
            "fps": 30.0,
            "frames": [TRACKS[n][1] for n in names],
            "crops": "",
        }
    )


def read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def expected_keys(task: str, expected: pd.DataFrame) -> list[str]:
    if task in ("va", "au"):
        return [f"{n}/{int(f):05d}.jpg" for n, f in zip(expected["name"], expected["frame"], strict=True)]
    return [str(n) for n in expected["name"]]


def full_predictions(task: str, expected: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A prediction for every expected row, some outside the range."""
    rng = np.random.default_rng(seed)
    keys = ["id", "frame"] if task in ("va", "au") else ["id"]
    df = expected[keys].copy()
    for t in targets(task):
        df[t] = rng.uniform(-1.3, 1.3, len(df)) if task == "va" else rng.uniform(-0.2, 1.2, len(df))
    return df


def manifest_for(task: str) -> pd.DataFrame:
    return frame_manifest() if task in ("va", "au") else clip_manifest(task)


# --------------------------------------------------------------------------------------
# Every task: the file re-read independently


@pytest.mark.parametrize("task", ["emi", "eri", "va", "au"])
def test_writer_output_matches_format(tmp_path, task):
    spec = task_spec(task)
    expected = expected_rows(spec, manifest_for(task))
    preds = full_predictions(task, expected).sample(frac=1.0, random_state=3)  # any input order
    path = tmp_path / f"submission_{task}.csv"
    summary = write_submission(spec, preds, expected, path, fallback={t: 0.5 for t in targets(task)})

    lo, hi = RANGES[task]
    rows = read_csv_rows(path)
    assert ",".join(rows[0]) == HEADERS[task]
    assert len(rows) - 1 == len(expected) == summary["rows"] == summary["predicted"]
    assert [r[0] for r in rows[1:]] == expected_keys(task, expected)  # the expected order
    assert all(len(r) == len(rows[0]) for r in rows)

    table = pd.read_csv(path, keep_default_na=False, dtype={rows[0][0]: str})
    assert list(table.columns) == HEADERS[task].split(",")
    assert len(table) == len(expected)
    values = table[targets(task)]
    assert not values.isna().to_numpy().any()
    raw = preds.set_index(["id", "frame"] if task in ("va", "au") else "id").loc[
        pd.MultiIndex.from_frame(expected[["id", "frame"]]) if task in ("va", "au") else expected["id"],
        targets(task),
    ].to_numpy()
    if task == "au":
        assert all(values[t].dtype.kind == "i" for t in targets(task))
        assert {c for r in rows[1:] for c in r[1:]} <= {"0", "1"}
        np.testing.assert_array_equal(values.to_numpy(), (raw >= 0.5).astype(int))
        assert values.to_numpy().min() == 0 and values.to_numpy().max() == 1
    else:
        assert values.to_numpy().min() >= lo and values.to_numpy().max() <= hi
        np.testing.assert_allclose(values.to_numpy(), np.clip(raw, lo, hi), atol=5e-7)
        assert summary["clipped"] == int(((raw < lo) | (raw > hi)).sum()) > 0
    if task == "emi":
        assert table["Filename"].astype(int).tolist() == [3, 8, 22, 30, 5]  # manifest order
    if task == "eri":
        assert rows[1][0] == "[16703]"  # File_ID exactly as the manifest's name
    assert validate_submission(path, spec, expected) == len(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize("task", ["eri", "emi"])
def test_clip_missing_and_nan_predictions_take_the_training_mean(tmp_path, task, caplog):
    spec = task_spec(task)
    manifest = clip_manifest(task)
    expected = expected_rows(spec, manifest)
    fallback = training_fallback(spec, manifest)
    preds = full_predictions(task, expected).clip(lower=0.1, upper=0.9).assign(id=expected["id"].to_numpy())
    preds = preds[preds["id"] != 22]  # no row at all for id 22
    preds.loc[preds["id"] == 5, targets(task)[1]] = np.nan  # one target missing for id 5
    path = tmp_path / "s.csv"
    with caplog.at_level(logging.INFO, logger="affectflow.submission.write"):
        summary = write_submission(spec, preds, expected, path, fallback=fallback)
    assert summary["training_mean"] == 2 and summary["predicted"] == 3 and summary["rows"] == 5
    table = pd.read_csv(path, dtype={spec.submission_key: str}).set_index(spec.submission_key)
    train = manifest[manifest["split"] != "test"]
    name = dict(zip(manifest["id"], manifest["name"], strict=True))
    np.testing.assert_allclose(table.loc[name[22]].to_numpy(), train[targets(task)].mean().to_numpy(), atol=5e-7)
    row5 = preds[preds["id"] == 5].iloc[0]
    assert table.loc[name[5], targets(task)[1]] == pytest.approx(train[targets(task)[1]].mean(), abs=5e-7)
    assert table.loc[name[5], targets(task)[0]] == pytest.approx(row5[targets(task)[0]], abs=5e-7)
    assert "2 row(s) filled with the training mean" in caplog.text
    assert "2 training mean" in caplog.text


# --------------------------------------------------------------------------------------
# Per-frame fallbacks


def brute_nearest(source: pd.DataFrame, frame: int, target: str) -> float | None:
    """Value of the nearest frame with a finite value; ties go to the earlier frame."""
    best = None
    for f, v in zip(source["frame"], source[target], strict=True):
        if np.isfinite(v):
            cand = (abs(int(f) - frame), int(f), float(v))
            if best is None or cand[:2] < best[:2]:
                best = cand
    return None if best is None else best[2]


@pytest.mark.parametrize("task", ["va", "au"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_frame_fallback_matches_brute_force(tmp_path, task, seed):
    spec = task_spec(task)
    manifest = frame_manifest()
    expected = expected_rows(spec, manifest)
    rng = np.random.default_rng(seed)
    preds = full_predictions(task, expected, seed)
    preds = preds[rng.uniform(size=len(preds)) < 0.5].copy()  # gaps
    preds.loc[rng.uniform(size=len(preds)) < 0.2, targets(task)] = np.nan  # whole rows NaN
    first = targets(task)[0]
    preds.loc[rng.uniform(size=len(preds)) < 0.2, first] = np.nan  # one target only
    # a frame predicted beyond the listed ones still serves as a source
    extra = {"id": track_id("video2_right"), "frame": 8, **{t: 0.9 for t in targets(task)}}
    preds = pd.concat([preds, pd.DataFrame([extra])], ignore_index=True)
    fallback = {t: 0.25 for t in targets(task)}
    path = tmp_path / "s.csv"
    summary = write_submission(spec, preds, expected, path, fallback=fallback)

    lo, hi = RANGES[task]
    got = pd.read_csv(path).set_index("image_location")
    kinds = {"predicted": 0, "nearest_frame": 0, "training_mean": 0}
    for tid, name, frame in zip(expected["id"], expected["name"], expected["frame"], strict=True):
        source = preds[preds["id"] == tid]
        own = source[source["frame"] == frame]
        kind = "predicted"
        for t in targets(task):
            if len(own) and np.isfinite(own[t].iloc[0]):
                want = own[t].iloc[0]
            else:
                want = brute_nearest(source, int(frame), t)
                if want is None:
                    want, kind = fallback[t], "training_mean"
                elif kind == "predicted":
                    kind = "nearest_frame"
            want = np.clip(want, lo, hi)
            value = got.loc[f"{name}/{int(frame):05d}.jpg", t]
            if task == "au":
                assert value == int(want >= 0.5)
            else:
                assert value == pytest.approx(want, abs=5e-7)
        kinds[kind] += 1
    assert {k: summary[k] for k in kinds} == kinds
    assert kinds["nearest_frame"] > 0


def test_nearest_frame_tie_takes_the_earlier_frame(tmp_path):
    spec = task_spec("va")
    tid = track_id("video1")
    expected = pd.DataFrame({"id": tid, "name": "video1", "frame": [2, 4, 6, 9]})
    preds = pd.DataFrame({"id": tid, "frame": [2, 6], "valence": [0.1, 0.6], "arousal": [-0.1, -0.6]})
    path = tmp_path / "s.csv"
    summary = write_submission(spec, preds, expected, path, fallback={"valence": 0, "arousal": 0})
    rows = read_csv_rows(path)[1:]
    assert rows == [
        ["video1/00002.jpg", "0.100000", "-0.100000"],
        ["video1/00004.jpg", "0.100000", "-0.100000"],  # 2 and 6 are both 2 away: the earlier
        ["video1/00006.jpg", "0.600000", "-0.600000"],
        ["video1/00009.jpg", "0.600000", "-0.600000"],
    ]
    assert summary["nearest_frame"] == 2 and summary["predicted"] == 2


def frame_labels_through_the_data_stage(where: Path, task: str, annotation: pd.DataFrame) -> pd.DataFrame:
    """The frame label table of ``annotation`` (video3's), as the submission rule reads it.

    Written by the data stage (:func:`affectflow.data.write_frame_labels`) from an organisers'
    annotation file, then read back with pandas as :func:`affectflow.submission.write_task_submission` does.
    """
    where.mkdir()
    lines = [",".join(targets(task))]
    lines += [",".join(f"{v:g}" for v in row) for row in annotation.to_numpy(float)]
    write_lines(where / "video3.txt", lines)
    manifest = frame_manifest()
    manifest.loc[manifest["name"] == "video3", "labels"] = str(where / "video3.txt")
    write_manifest(manifest, where / "manifest.tsv")
    write_frame_labels(where / "manifest.tsv", task, where / "frame_labels.csv.gz")
    return pd.read_csv(where / "frame_labels.csv.gz")


@pytest.mark.parametrize("task", ["va", "au"])
def test_track_without_predictions_takes_the_training_mean(tmp_path, task, caplog):
    spec = task_spec(task)
    manifest = frame_manifest()
    expected = expected_rows(spec, manifest)
    rng = np.random.default_rng(4)
    raw = pd.DataFrame({t: rng.integers(0, 2, 40) if task == "au" else rng.integers(-1000, 1001, 40) / 1000
                        for t in targets(task)})
    if task == "au":
        raw.loc[:2, "AU1"] = -1  # the organisers' invalid code must not count
        raw["AU12"] = [1] * 30 + [0] * 10  # positive rate 27/37 once the invalid frames are dropped -> 1
    else:
        raw.loc[:2, "valence"] = -5.0
    labels = frame_labels_through_the_data_stage(tmp_path / "data", task, raw)
    # The invalid codes never reach training_fallback: the data stage drops those frames.
    assert not labels[targets(task)].isin([-1.0 if task == "au" else -5.0]).to_numpy().any()
    assert labels["frame"].tolist() == list(range(4, 41))
    fallback = training_fallback(spec, labels)
    for t in targets(task):
        assert fallback[t] == pytest.approx(float(np.mean(raw[t].iloc[3:])))  # the frames without an invalid code

    preds = full_predictions(task, expected)
    preds = preds[preds["id"] != track_id("video2_left")]
    preds.loc[preds["id"] == track_id("video2_right"), targets(task)] = np.nan  # all NaN
    path = tmp_path / "s.csv"
    with caplog.at_level(logging.INFO, logger="affectflow.submission.write"):
        summary = write_submission(spec, preds, expected, path, fallback=fallback)
    n_missing = TRACKS["video2_left"][1] + TRACKS["video2_right"][1]
    assert summary["training_mean"] == n_missing
    assert summary["nearest_frame"] == 0
    assert f"{n_missing} row(s) filled with the training mean" in caplog.text
    got = pd.read_csv(path)
    for name in ("video2_left", "video2_right"):
        rows = got[got["image_location"].str.startswith(name + "/")]
        assert len(rows) == TRACKS[name][1]
        for t in targets(task):
            want = int(fallback[t] >= 0.5) if task == "au" else fallback[t]
            assert (rows[t] - want).abs().max() <= 5e-7
    if task == "au":
        assert (got.loc[got["image_location"].str.startswith("video2_left/"), "AU12"] == 1).all()


@pytest.mark.parametrize("task", ["emi", "eri", "va", "au"])
def test_nan_in_predictions_never_reaches_the_file(tmp_path, task):
    spec = task_spec(task)
    expected = expected_rows(spec, manifest_for(task))
    preds = full_predictions(task, expected)
    preds.loc[preds.index[::2], targets(task)] = np.nan
    path = tmp_path / "s.csv"
    write_submission(spec, preds, expected, path, fallback={t: 0.3 for t in targets(task)})
    text = path.read_text()
    assert "nan" not in text.lower() and ",," not in text and ",\n" not in text
    assert not pd.read_csv(path, keep_default_na=True).isna().to_numpy().any()


def test_without_fallback_holes_are_an_error(tmp_path):
    spec = task_spec("va")
    expected = expected_rows(spec, frame_manifest())
    preds = full_predictions("va", expected)
    preds = preds[preds["id"] != track_id("video1")]
    with pytest.raises(SubmissionError, match=r"12 expected row\(s\).*video1/00001.jpg"):
        write_submission(spec, preds, expected, tmp_path / "s.csv", fallback=None)
    assert not (tmp_path / "s.csv").exists()


def test_predictions_of_unlisted_tracks_are_ignored_and_counted(tmp_path):
    spec = task_spec("va")
    expected = expected_rows(spec, frame_manifest())
    preds = full_predictions("va", expected)
    stray = pd.DataFrame({"id": track_id("video3"), "frame": [1, 2, 3], "valence": 0.0, "arousal": 0.0})
    summary = write_submission(
        spec, pd.concat([preds, stray]), expected, tmp_path / "s.csv", fallback={"valence": 0, "arousal": 0}
    )
    assert summary["unused"] == 3 and summary["rows"] == len(expected)
    assert "video3" not in (tmp_path / "s.csv").read_text()


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda p: p.assign(valence=p["valence"].astype(object).where(p.index != 1, "high")),
         r"predictions: line 3: valence 'high' is not a number"),
        (lambda p: p.assign(arousal=np.where(p.index == 2, np.inf, p["arousal"])), r"predictions: infinite"),
        (lambda p: pd.concat([p, p.iloc[[3]]]), r"predictions: line \d+: duplicate row for \{'id': \d+, 'frame': 4\}"),
        (lambda p: p.drop(columns="frame"), r"predictions: missing column\(s\) \['frame'\]"),
    ],
)
def test_bad_predictions_raise(tmp_path, change, pattern):
    spec = task_spec("va")
    expected = expected_rows(spec, frame_manifest())
    with pytest.raises(SubmissionError, match=pattern):
        write_submission(spec, change(full_predictions("va", expected)), expected, tmp_path / "s.csv",
                         fallback={"valence": 0, "arousal": 0})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# The writer never leaves a short or partial file


@pytest.mark.parametrize("task", ["eri", "au"])
def test_broken_writer_leaves_no_file_and_keeps_the_old_one(tmp_path, task, monkeypatch):
    spec = task_spec(task)
    expected = expected_rows(spec, manifest_for(task))
    preds = full_predictions(task, expected)
    fallback = {t: 0.5 for t in targets(task)}
    path = tmp_path / "s.csv"
    real_to_csv = pd.DataFrame.to_csv

    def short_to_csv(self, path_or_buf, *args, **kwargs):  # drops the last row: a short file
        return real_to_csv(self.iloc[:-1], path_or_buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", short_to_csv)
    with pytest.raises(SubmissionError, match=r"s\.csv: 1 expected row\(s\) missing"):
        write_submission(spec, preds, expected, path, fallback=fallback)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    write_submission(spec, preds, expected, path, fallback=fallback)
    before = path.read_text()

    def bad_value_to_csv(self, path_or_buf, *args, **kwargs):  # an out-of-range value
        broken = self.copy()
        broken.iloc[1, 1] = 7
        return real_to_csv(broken, path_or_buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", bad_value_to_csv)
    with pytest.raises(SubmissionError, match=r"s\.csv, line 3: "):
        write_submission(spec, preds, expected, path, fallback=fallback)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


# --------------------------------------------------------------------------------------
# The validator on hand-written files

AU_GOOD = ["v1/00001.jpg," + ",".join(["0"] * 12), "v1/00002.jpg,1," + ",".join(["0"] * 11)]
VA_GOOD = ["v1/00001.jpg,0.5,-0.25", "v1/00002.jpg,-1,1"]
ERI_GOOD = ["[7],0.1,0.2,0.3,0.4,0.5,0.6,1", "[9],0,0,0,0,0,0,1"]


def frame_expected(frames=(1, 2)) -> pd.DataFrame:
    return pd.DataFrame({"id": 7, "name": "v1", "frame": list(frames)})


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "task, lines, pattern",
    [
        ("va", ["image_location,arousal,valence", *VA_GOOD], r"line 1: wrong header"),
        ("va", ["image_location, valence,arousal", *VA_GOOD], r"line 1: wrong header"),
        ("au", [HEADERS["au"].replace("AU26", "AU27"), *AU_GOOD], r"line 1: wrong header"),
        ("va", [HEADERS["va"], *VA_GOOD, VA_GOOD[0]],
         r"line 4: duplicate image_location v1/00001.jpg \(first on line 2\)"),
        ("va", [HEADERS["va"], VA_GOOD[0]], r"1 expected row\(s\) missing \(the file ends at line 2\).*v1/00002.jpg"),
        ("va", [HEADERS["va"], *VA_GOOD, "v1/00003.jpg,0,0"], r"line 4: 1 unexpected row\(s\).*v1/00003.jpg"),
        ("va", [HEADERS["va"], VA_GOOD[0], "v1/00002.jpg,nan,0"], r"line 3: valence value is NaN"),
        ("va", [HEADERS["va"], VA_GOOD[0], "v1/00002.jpg,0,"], r"line 3: arousal value '' is not a number"),
        ("va", [HEADERS["va"], VA_GOOD[0], "v1/00002.jpg,0,1.5"], r"line 3: arousal value 1.5 is outside \[-1, 1\]"),
        ("va", [HEADERS["va"], "v1/00001.jpg,-1.01,0", VA_GOOD[1]], r"line 2: valence value -1.01 is outside"),
        ("va", [HEADERS["va"], VA_GOOD[0], "v1/00002.jpg,inf,0"], r"line 3: valence value inf is outside"),
        ("va", [HEADERS["va"], VA_GOOD[0], "v1/00002.jpg,0"], r"line 3: 2 columns, expected 3"),
        ("va", [HEADERS["va"], VA_GOOD[0], "", VA_GOOD[1]], r"line 3: empty row"),
        ("au", [HEADERS["au"], AU_GOOD[0], "v1/00002.jpg,0.7," + ",".join(["0"] * 11)],
         r"line 3: AU1 value '0.7' is not 0 or 1"),
        ("au", [HEADERS["au"], AU_GOOD[0], "v1/00002.jpg," + ",".join(["0"] * 11) + ",1.0"],
         r"line 3: AU26 value '1.0' is not 0 or 1"),
        ("au", [HEADERS["au"], AU_GOOD[0], "v1/00002.jpg," + ",".join(["0"] * 11) + ",nan"],
         r"line 3: AU26 value 'nan' is not 0 or 1"),
        ("au", [HEADERS["au"], AU_GOOD[0], "v1/00002.jpg,2," + ",".join(["0"] * 11)],
         r"line 3: AU1 value '2' is not 0 or 1"),
        ("eri", [HEADERS["eri"], ERI_GOOD[0], "[9],0,0,0,1.5,0,0,1"], r"line 3: Disgust value 1.5 is outside \[0, 1\]"),
        ("eri", [HEADERS["eri"], ERI_GOOD[0], "9,0,0,0,0,0,0,1"],
         r"line 3: 1 unexpected row\(s\), File_ID not expected: 9"),
        ("eri", [HEADERS["eri"].replace("Empathic-Pain", "Empathic Pain"), *ERI_GOOD], r"line 1: wrong header"),
    ],
)
def test_validate_rejects_bad_files(tmp_path, task, lines, pattern):
    spec = task_spec(task)
    expected = pd.DataFrame({"id": [7, 9], "name": ["[7]", "[9]"]}) if task == "eri" else frame_expected()
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(SubmissionError, match=r"bad\.csv.*" + pattern):
        validate_submission(path, spec, expected)


def test_validate_accepts_good_files_in_any_order(tmp_path):
    assert validate_submission(write_lines(tmp_path / "a.csv", [HEADERS["au"], *AU_GOOD[::-1]]),
                               task_spec("au"), frame_expected()) == 2
    assert validate_submission(write_lines(tmp_path / "v.csv", [HEADERS["va"], *VA_GOOD]),
                               task_spec("va"), frame_expected()) == 2
    eri = pd.DataFrame({"id": [9, 7], "name": ["[9]", "[7]"]})
    assert validate_submission(write_lines(tmp_path / "e.csv", [HEADERS["eri"], *ERI_GOOD]),
                               task_spec("eri"), eri) == 2


def test_validate_lists_the_first_five_missing(tmp_path):
    path = write_lines(tmp_path / "s.csv", [HEADERS["va"], VA_GOOD[0]])
    with pytest.raises(SubmissionError) as info:
        validate_submission(path, task_spec("va"), frame_expected(range(1, 21)))
    msg = str(info.value)
    assert "19 expected row(s) missing" in msg and "(19 in all)" in msg
    assert "v1/00006.jpg" in msg and "v1/00007.jpg" not in msg


def test_validate_errors_in_a_large_file_name_the_right_line(tmp_path):
    # more rows than one validation block, the bad value far down
    n = validation._CHUNK + 10
    expected = frame_expected(range(1, n + 1))
    lines = [HEADERS["va"]] + [f"v1/{f:05d}.jpg,0.1,0.2" for f in range(1, n + 1)]
    lines[n - 3] = lines[n - 3].replace("0.2", "-2")
    path = write_lines(tmp_path / "big.csv", lines)
    with pytest.raises(SubmissionError, match=rf"big\.csv, line {n - 2}: arousal value -2 is outside"):
        validate_submission(path, task_spec("va"), expected)


def test_validate_missing_file(tmp_path):
    with pytest.raises(SubmissionError, match=r"none\.csv: submission file not found"):
        validate_submission(tmp_path / "none.csv", task_spec("au"), frame_expected())


# --------------------------------------------------------------------------------------
# What must be submitted


def test_expected_rows_clip_tasks_are_the_test_rows_in_manifest_order():
    got = expected_rows(task_spec("eri"), clip_manifest("eri"))
    assert got["id"].tolist() == [3, 8, 22, 30, 5]
    assert got["name"].tolist() == ["[16703]", "[16708]", "[16722]", "[16730]", "[16705]"]
    # EMI names read back as numbers (read_manifest) and a manifest without names both work
    emi = clip_manifest("emi")
    emi["name"] = emi["id"].astype(float)
    assert expected_rows(task_spec("emi"), emi)["name"].tolist() == ["3", "8", "22", "30", "5"]
    assert expected_rows(task_spec("emi"), emi.drop(columns="name"))["name"].tolist() == ["3", "8", "22", "30", "5"]
    with pytest.raises(SubmissionError, match="lacks column 'name'"):
        expected_rows(task_spec("eri"), clip_manifest("eri").drop(columns="name"))


def test_expected_rows_per_frame_without_sample_lists_every_frame():
    got = expected_rows(task_spec("au"), frame_manifest())
    want = [(n, f) for n, (split, count) in TRACKS.items() if split == "test" for f in range(1, count + 1)]
    assert list(zip(got["name"], got["frame"], strict=True)) == want
    assert got["id"].tolist() == [track_id(n) for n, _ in want]
    manifest = frame_manifest()
    manifest.loc[1, "frames"] = 0
    with pytest.raises(SubmissionError, match=r"no frame count.*video2_left"):
        expected_rows(task_spec("au"), manifest)


def test_expected_rows_follow_the_sample_file(tmp_path):
    frames = pd.DataFrame({"name": ["video2_left", "video1", "video1"], "frame": [3, 1, 10]})
    got = expected_rows(task_spec("va"), frame_manifest(), sample_frames=frames)
    assert got.to_dict("list") == {
        "id": [track_id("video2_left"), track_id("video1"), track_id("video1")],
        "name": ["video2_left", "video1", "video1"],
        "frame": [3, 1, 10],
    }
    # the writer then lists exactly those frames, in that order
    preds = full_predictions("va", expected_rows(task_spec("va"), frame_manifest()))
    path = tmp_path / "s.csv"
    write_submission(task_spec("va"), preds, got, path, fallback={"valence": 0, "arousal": 0})
    assert [r[0] for r in read_csv_rows(path)[1:]] == ["video2_left/00003.jpg", "video1/00001.jpg", "video1/00010.jpg"]
    with pytest.raises(SubmissionError, match=r"sample_frames lists 1 frame\(s\) twice: video1/00001.jpg"):
        expected_rows(task_spec("va"), frame_manifest(), sample_frames=pd.concat([frames, frames.iloc[[1]]]))


def test_sample_track_absent_from_the_manifest_is_named():
    frames = pd.DataFrame({"name": ["video1", "video99_right", "video98"], "frame": [1, 1, 2]})
    absent = r"2 track\(s\) of the sample file absent from the manifest: video98, video99_right"
    with pytest.raises(SubmissionError, match=absent):
        expected_rows(task_spec("va"), frame_manifest(), sample_frames=frames)
    with pytest.raises(SubmissionError, match=r"not test tracks.*video3 \(train\)"):
        expected_rows(task_spec("va"), frame_manifest(), sample_frames=pd.DataFrame({"name": ["video3"], "frame": [1]}))


def test_training_fallback_clip_uses_labelled_rows_only():
    manifest = clip_manifest("eri")
    fallback = training_fallback(task_spec("eri"), manifest)
    labelled = manifest[manifest["split"].isin(["train", "val"])]
    for t in targets("eri"):
        assert fallback[t] == pytest.approx(float(np.mean(labelled[t].to_numpy())))
    with pytest.raises(SubmissionError, match=r"no finite training label.*Fear"):
        training_fallback(task_spec("eri"), manifest.assign(Fear=np.nan))


# --------------------------------------------------------------------------------------
# The workflow script (the contract the submission rule wires)


class _Named(list):
    """Stands in for Snakemake's Namedlist: attributes, get(), positional access."""

    def __init__(self, items=(), **named):
        super().__init__(items or named.values())
        self.__dict__.update(named)

    def get(self, key, default=None):
        return self.__dict__.get(key, default)


def _run_script(tmp_path, *, task, root, test_list=None, sample_frames=None, frame_labels=None, **inputs) -> dict:
    out = tmp_path / "results" / "submission.csv"
    fake = type("Snakemake", (), {})()
    # as the rule gives them: the optional inputs are lists, empty when absent
    lists = {"sample_frames": [str(sample_frames)] if sample_frames else [],
             "frame_labels": [str(frame_labels)] if frame_labels else []}
    fake.input = _Named(**{k: str(v) for k, v in inputs.items()}, **lists)
    fake.output = _Named([str(out)])
    fake.log = _Named([str(tmp_path / "submission.log")])
    fake.params = _Named(task=task, root=str(root), test_list=str(test_list) if test_list else None)
    runpy.run_path(str(REPO / "workflow" / "scripts" / "submission.py"), init_globals={"snakemake": fake})
    logging.getLogger("affectflow").handlers.clear()  # the script pointed it at the log file
    return {"out": out, "log": (tmp_path / "submission.log").read_text()}


def split_manifests(manifest: pd.DataFrame, where: Path) -> tuple[Path, Path]:
    """The labelled and the test manifest the workflow writes from ``manifest``'s rows."""
    test = manifest["split"] == "test"
    write_manifest(manifest[~test], where / "manifest.tsv")
    write_manifest(manifest[test], where / "test_manifest.tsv")
    return where / "manifest.tsv", where / "test_manifest.tsv"


def eri_manifest() -> pd.DataFrame:
    """:func:`clip_manifest` of ERI with the ids the reader gives its File_IDs (the number inside)."""
    manifest = clip_manifest("eri")
    return manifest.assign(id=manifest["id"] + 16700)


def test_script_writes_a_per_frame_submission_from_the_sample_file(tmp_path):
    manifest = frame_manifest()
    labelled, test = split_manifests(manifest, tmp_path)
    tests = [n for n, (split, _) in TRACKS.items() if split == "test"]
    test_list = write_affwild2_root(tmp_path / "aw", "au", {"video3": "train"}, tests, test_list=tmp_path / "tests.txt")
    expected = expected_rows(task_spec("au"), manifest)
    preds = full_predictions("au", expected)
    preds = preds[preds["id"] != track_id("video1")]  # one track never predicted
    preds.to_csv(tmp_path / "test.csv", index=False)
    labels = pd.DataFrame({"id": track_id("video3"), "frame": [1, 2, 3, 4]})
    for t in targets("au"):
        labels[t] = [1, 1, 1, 0] if t == "AU25" else [0, 0, 1, 0]
    labels.to_csv(tmp_path / "frame_labels.csv.gz", index=False)
    zeros = "," + ",".join(["0"] * 12)  # the organisers' sample rows carry placeholder values
    write_lines(tmp_path / "sample.txt", [HEADERS["au"], "video1/00002.jpg" + zeros, "video2_right/00007.jpg" + zeros])

    run = _run_script(tmp_path, task="au", root=tmp_path / "aw", test_list=test_list, manifest=labelled,
                      test_manifest=test,
                      test=tmp_path / "test.csv", sample_frames=tmp_path / "sample.txt",
                      frame_labels=tmp_path / "frame_labels.csv.gz")
    rows = read_csv_rows(run["out"])
    assert ",".join(rows[0]) == HEADERS["au"]
    # video1 had no prediction: the training positive rate, binarised (AU25 0.75 -> 1, others 0)
    assert rows[1] == ["video1/00002.jpg"] + ["1" if t == "AU25" else "0" for t in targets("au")]
    assert rows[2][0] == "video2_right/00007.jpg" and len(rows) == 3
    assert "1 training mean" in run["log"]


def test_script_writes_a_clip_submission_of_the_rule_task(tmp_path):
    manifest = eri_manifest()
    labelled, test = split_manifests(manifest, tmp_path)
    write_eri_root(tmp_path / "eri", manifest)
    expected = expected_rows(task_spec("eri"), manifest)
    full_predictions("eri", expected).to_csv(tmp_path / "test.csv", index=False)
    run = _run_script(tmp_path, task="eri", root=tmp_path / "eri", manifest=labelled, test_manifest=test,
                      test=tmp_path / "test.csv")
    table = pd.read_csv(run["out"], dtype={"File_ID": str})
    # the organisers' test clips, in id order (the step lists them from data_info.csv, not the manifest)
    assert table["File_ID"].tolist() == ["[16703]", "[16705]", "[16708]", "[16722]", "[16730]"]
    assert "5 predicted" in run["log"]


def test_bad_predictions_file_is_named_in_the_error(tmp_path):
    manifest = eri_manifest()
    labelled, test = split_manifests(manifest, tmp_path)
    write_eri_root(tmp_path / "eri", manifest)
    preds = full_predictions("eri", expected_rows(task_spec("eri"), manifest)).astype({"Fear": object})
    preds.loc[preds.index[2], "Fear"] = "oops"
    preds.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(SubmissionError, match=r"test\.csv: line 4: Fear 'oops' is not a number"):
        write_task_submission("eri", tmp_path / "test.csv", labelled, test, tmp_path / "s.csv", root=tmp_path / "eri")
    assert not (tmp_path / "s.csv").exists()
