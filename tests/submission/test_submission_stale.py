"""The submission step reads the ids to submit from the organisers' files as they are when it runs.

A test clip added to the data set after the run's job graph was built (or removed from it) fails
the step, naming the clip and the step that produces it; the run's files are written by the real
manifest job and read through the real readers, on layouts whose videos are empty files (the
listing opens none: ``av.open`` is made to fail).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from organiser_layouts import (
    EMI_TARGETS,
    ERI_TARGETS,
    emi_media,
    touch,
    write_affwild2_root,
    write_emi_root,
    write_eri_root,
    write_test_list,
)

from affectflow.data import write_manifest, write_manifest_job
from affectflow.submission import SubmissionError, write_task_submission

EMI_SPLITS = {1: "train", 2: "train", 4: "train", 3: "val", 5: "val", 10: "test", 11: "test"}
VA_LABELLED = {"v3": "train", "v4": "val"}
VA_TESTS = {"v1": 5, "v2_left": 3, "v2_right": 3}  # test track -> frames (as the media stage counted them)


@pytest.fixture(autouse=True)
def no_video_is_opened(monkeypatch):
    """Listing the data set must not open a video (the layouts' videos are empty files anyway)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a video was opened: {args}")

    monkeypatch.setattr(av, "open", refuse)


def track_id(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)


def manifest_job(task: str, root: Path, partition: str, out: Path) -> Path:
    write_manifest_job(task, root, partition, out, n_shards=2, k_folds=2, seed=0)
    return out


def clip_predictions(ids, targets, path: Path) -> Path:
    """The ensemble's test predictions: one finite row per id (value id/100 for every target)."""
    table = pd.DataFrame({"id": list(ids)})
    for t in targets:
        table[t] = [(int(i) % 97) / 100 for i in ids]
    table.to_csv(path, index=False)
    return path


def emi_run(tmp_path: Path) -> dict:
    """An EMI data set and the files a run over it wrote (manifests, test predictions)."""
    root = write_emi_root(tmp_path / "emi", EMI_SPLITS)
    run = {"root": root, "labelled": manifest_job("emi", root, "labelled", tmp_path / "manifest.tsv"),
           "tests": manifest_job("emi", root, "test", tmp_path / "test_manifest.tsv"),
           "out": tmp_path / "submission.csv"}
    run["preds"] = clip_predictions([10, 11], EMI_TARGETS, tmp_path / "test.csv")
    return run


def submit_emi(run: dict) -> dict:
    return write_task_submission("emi", run["preds"], run["labelled"], run["tests"], run["out"], root=run["root"])


def filenames(path: Path) -> list[int]:
    return pd.read_csv(path)["Filename"].tolist()


def test_emi_test_video_added_after_the_run_fails_then_passes_once_processed(tmp_path):
    run = emi_run(tmp_path)
    assert submit_emi(run)["rows"] == 2
    assert filenames(run["out"]) == [10, 11]
    before = run["out"].read_text()

    touch(emi_media(run["root"], 12))  # the organisers release one more test video
    with pytest.raises(SubmissionError) as info:
        submit_emi(run)
    msg = str(info.value)
    assert "1 listed there but not processed by this run" in msg and "after its job graph was built): 12\n" in msg
    assert "the organisers' files under" in msg and "raw/ in neither split csv" in msg and "test_manifest.tsv" in msg
    assert "predict_test" in msg and "snakemake" in msg and "snakemake -n" in msg
    assert run["out"].read_text() == before  # the old file stays, never a short one

    # the next run processes it: the test manifest and the test predictions list it
    manifest_job("emi", run["root"], "test", run["tests"])
    clip_predictions([10, 11, 12], EMI_TARGETS, run["preds"])
    summary = submit_emi(run)
    assert summary["rows"] == summary["predicted"] == 3
    assert filenames(run["out"]) == [10, 11, 12]


def test_emi_removed_test_video_fails_naming_it(tmp_path):
    run = emi_run(tmp_path)
    emi_media(run["root"], 11).unlink()
    with pytest.raises(SubmissionError) as info:
        submit_emi(run)
    msg = str(info.value)
    assert "1 processed by this run but no longer listed there as test clip(s)" in msg
    assert "(removed, or moved to a labelled split): 11\n" in msg
    assert "predict_test" in msg and "snakemake" in msg
    assert not run["out"].exists()


def test_emi_test_video_moved_to_a_labelled_split_fails_naming_it(tmp_path):
    run = emi_run(tmp_path)
    with (run["root"] / "valid_split.csv").open("a") as fh:
        fh.write("10," + ",".join(["0.5"] * len(EMI_TARGETS)) + "\n")
    moved = (r"(?s)no longer listed there as test clip\(s\) "
             r"\(removed, or moved to a labelled split\): 10\n.*predict_test")
    with pytest.raises(SubmissionError, match=moved):
        submit_emi(run)
    assert not run["out"].exists()


def test_emi_several_new_videos_are_listed_first_few_and_counted(tmp_path):
    run = emi_run(tmp_path)
    for clip_id in range(20, 27):
        touch(emi_media(run["root"], clip_id))
    with pytest.raises(SubmissionError, match=r"7 listed there .*: 20, 21, 22, 23, 24 \.\.\. \(7 in all\)"):
        submit_emi(run)


def test_emi_hole_of_a_processed_clip_takes_the_training_mean(tmp_path):
    run = emi_run(tmp_path)
    preds = pd.read_csv(run["preds"])
    preds.loc[preds["id"] == 11, EMI_TARGETS[0]] = np.nan  # e.g. no face found in clip 11
    preds.to_csv(run["preds"], index=False)
    summary = submit_emi(run)
    assert summary["training_mean"] == 1 and summary["rows"] == 2
    labelled = pd.concat([pd.read_csv(run["root"] / name) for name in ("train_split.csv", "valid_split.csv")])
    got = pd.read_csv(run["out"]).set_index("Filename")
    assert got.loc[11, EMI_TARGETS[0]] == pytest.approx(labelled[EMI_TARGETS[0]].mean(), abs=5e-7)


def test_eri_test_row_added_to_the_data_info_fails_naming_it(tmp_path):
    clips = pd.DataFrame({"id": [16701, 16702, 16703, 16704, 16705],
                          "name": ["[16701]", "[16702]", "[16703]", "[16704]", "[16705]"],
                          "split": ["train", "val", "train", "test", "test"]})
    for k, t in enumerate(ERI_TARGETS):
        clips[t] = np.where(clips["split"] == "test", np.nan, (np.arange(5) + k) % 10 / 10)
    root = write_eri_root(tmp_path / "eri", clips)
    labelled = manifest_job("eri", root, "labelled", tmp_path / "manifest.tsv")
    tests = manifest_job("eri", root, "test", tmp_path / "test_manifest.tsv")
    preds = clip_predictions([16704, 16705], ERI_TARGETS, tmp_path / "test.csv")
    out = tmp_path / "s.csv"
    assert write_task_submission("eri", preds, labelled, tests, out, root=root)["rows"] == 2

    more = pd.concat([clips, pd.DataFrame({"id": [16706], "name": ["[16706]"], "split": ["test"]})])
    write_eri_root(root, more)
    with pytest.raises(SubmissionError, match=r"(?s)Test rows of data_info\.csv\).*built\): \[16706\]\n.*predict_test"):
        write_task_submission("eri", preds, labelled, tests, out, root=root)


# --------------------------------------------------------------------------------------
# VA / AU: the organisers' test list


def frame_test_manifest(tracks: dict[str, int], path: Path) -> Path:
    """The run's test manifest of Aff-Wild2 test tracks with the frame counts its media stage found."""
    names = list(tracks)
    write_manifest(
        pd.DataFrame({
            "id": [track_id(n) for n in names], "split": "test", "subject": "", "media": "", "name": names,
            "labels": "", "fps": 30.0, "frames": [tracks[n] for n in names], "crops": "",
        }),
        path,
    )
    return path


def frame_predictions(tracks: dict[str, int], path: Path) -> Path:
    rows = [(track_id(n), f) for n, count in tracks.items() for f in range(1, count + 1)]
    table = pd.DataFrame(rows, columns=["id", "frame"])
    table["valence"], table["arousal"] = 0.25, -0.5
    table.to_csv(path, index=False)
    return path


def va_run(tmp_path: Path, *, test_list: Path | None = None) -> dict:
    root = tmp_path / "aw"
    listed = write_affwild2_root(root, "va", VA_LABELLED, list(VA_TESTS), test_list=test_list)
    labels = pd.DataFrame({"id": track_id("v3"), "frame": [1, 2], "valence": [0.5, 0.1], "arousal": [0.0, 0.2]})
    labels.to_csv(tmp_path / "frame_labels.csv.gz", index=False)
    write_manifest(pd.DataFrame({"id": [track_id("v3")], "split": "train", "subject": "v3", "media": "",
                                 "name": "v3", "labels": "", "fps": 30.0, "frames": 2, "crops": ""}),
                   tmp_path / "manifest.tsv")
    return {"root": root, "test_list": listed, "labelled": tmp_path / "manifest.tsv",
            "tests": frame_test_manifest(VA_TESTS, tmp_path / "test_manifest.tsv"),
            "preds": frame_predictions(VA_TESTS, tmp_path / "test.csv"),
            "labels": tmp_path / "frame_labels.csv.gz", "out": tmp_path / "submission.csv"}


def submit_va(run: dict, *, explicit_list: bool, sample_file: Path | None = None) -> dict:
    return write_task_submission(
        "va", run["preds"], run["labelled"], run["tests"], run["out"], root=run["root"],
        test_list=run["test_list"] if explicit_list else None, frame_labels_csv=run["labels"],
        sample_file=sample_file,
    )


def locations(path: Path) -> list[str]:
    return pd.read_csv(path)["image_location"].tolist()


@pytest.mark.parametrize("explicit_list", [False, True], ids=["organisers-default-list", "configured-list"])
def test_va_track_added_to_the_test_list_fails_then_passes_once_processed(tmp_path, explicit_list):
    run = va_run(tmp_path, test_list=tmp_path / "my_tests.txt" if explicit_list else None)
    assert submit_va(run, explicit_list=explicit_list)["rows"] == sum(VA_TESTS.values())
    every = [f"{n}/{f:05d}.jpg" for n in sorted(VA_TESTS, key=track_id) for f in range(1, VA_TESTS[n] + 1)]
    assert locations(run["out"]) == every  # every frame of every test track, tracks in id order
    before = run["out"].read_text()

    touch(run["root"] / "videos" / "v5.mp4")
    write_test_list(run["test_list"], [*VA_TESTS, "v5"])
    with pytest.raises(SubmissionError) as info:
        submit_va(run, explicit_list=explicit_list)
    msg = str(info.value)
    assert "1 listed there but not processed by this run" in msg and "built): v5\n" in msg
    assert ("my_tests.txt" if explicit_list else "Valence_Arousal_Estimation_Challenge_test_set_release.txt") in msg
    assert "predict_test" in msg and "snakemake" in msg
    assert run["out"].read_text() == before

    tracks = {**VA_TESTS, "v5": 4}
    frame_test_manifest(tracks, run["tests"])
    frame_predictions(tracks, run["preds"])
    summary = submit_va(run, explicit_list=explicit_list)
    assert summary["rows"] == summary["predicted"] == sum(tracks.values())
    assert [loc for loc in locations(run["out"]) if loc.startswith("v5/")] == [f"v5/{f:05d}.jpg" for f in range(1, 5)]


def test_va_track_removed_from_the_test_list_fails_naming_it(tmp_path):
    run = va_run(tmp_path)
    write_test_list(run["test_list"], ["v1", "v2_left"])
    gone = r"(?s)1 processed by this run but no longer listed there as test track\(s\).*: v2_right\n.*predict_test"
    with pytest.raises(SubmissionError, match=gone):
        submit_va(run, explicit_list=False)
    assert not run["out"].exists()


def test_va_sample_file_tracks_must_be_on_the_test_list(tmp_path):
    run = va_run(tmp_path)
    sample = tmp_path / "sample.csv"
    sample.write_text("image_location,valence,arousal\nv1/00002.jpg,0,0\nv9/00001.jpg,0,0\nv3/00001.jpg,0,0\n")
    with pytest.raises(SubmissionError, match=r"1 track\(s\) of the sample file absent from the organisers' files"
                                              r".*test list.*: v9"):
        submit_va(run, explicit_list=False, sample_file=sample)
    sample.write_text("image_location,valence,arousal\nv1/00002.jpg,0,0\nv3/00001.jpg,0,0\n")
    with pytest.raises(SubmissionError, match=r"not test tracks in the organisers' files.*: v3 \(train\)"):
        submit_va(run, explicit_list=False, sample_file=sample)


def test_va_sample_file_keeps_the_fallback_of_a_track_without_a_readable_video(tmp_path):
    run = va_run(tmp_path)
    frame_test_manifest({**VA_TESTS, "v2_right": 0}, run["tests"])  # the media stage could not read it
    frame_predictions({n: c for n, c in VA_TESTS.items() if n != "v2_right"}, run["preds"])
    sample = tmp_path / "sample.csv"
    sample.write_text("image_location,valence,arousal\nv2_right/00002.jpg,0,0\nv1/00005.jpg,0,0\n")
    summary = submit_va(run, explicit_list=False, sample_file=sample)
    assert summary["training_mean"] == 1 and summary["predicted"] == 1
    got = pd.read_csv(run["out"])
    assert got["image_location"].tolist() == ["v2_right/00002.jpg", "v1/00005.jpg"]
    assert got.loc[0, "valence"] == pytest.approx(0.3) and got.loc[0, "arousal"] == pytest.approx(0.1)
    # without the sample file the frames of that track cannot be listed: named, nothing written
    run["out"].unlink()
    with pytest.raises(SubmissionError, match=r"1 test track\(s\) have no frame count.*v2_right"):
        submit_va(run, explicit_list=False)
    assert not run["out"].exists()
