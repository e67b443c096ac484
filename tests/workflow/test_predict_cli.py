"""Predicting any videos with a trained ensemble, in place and from a bundle on another checkout's
working directory: the real workflow and the real ``affectflow`` command on the tiny demo set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from affectflow.runtime.ffmpeg import ffmpeg_exe
from affectflow.tasks import task_spec

from conftest import REPO, dry_run_jobs, run_snakemake, tiny_config, write_config

TARGETS = list(task_spec("emi").targets)
PREDICT_RULES = {"predict_manifest", "predict_media", "predict_faces", "predict_features", "predict_fold",
                 "predict_ensemble", "predict_outputs", "predict"}


def _affectflow(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "affectflow.predict.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=1200)


def _jobs(stdout):
    return sorted((rule, tuple(sorted(w.items()))) for rule, w in dry_run_jobs(stdout))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny demo trained and submitted; a list file of its test clips."""
    workdir = tmp_path_factory.mktemp("predict")
    config = tiny_config(workdir)
    configfile = write_config(workdir, config)
    run_snakemake(workdir, "results/submission.csv", "--cores", "2", "--configfile", str(configfile))
    test = pd.read_csv(workdir / "results" / "demo" / "test_manifest.tsv", sep="\t")
    (workdir / "test_videos.txt").write_text("\n".join(test["media"]) + "\n")
    submission = pd.read_csv(workdir / "results" / "submission.csv").set_index("Filename")
    return workdir, config, submission


def test_predicting_before_training_builds_exactly_what_training_needs(tmp_path):
    config = tiny_config(tmp_path)
    config["predict"] = {"videos": str(REPO / "resources" / "demo")}  # one video: movie-hello.mp4
    configfile = write_config(tmp_path, config)
    fit = _jobs(run_snakemake(tmp_path, "results/demo/ensemble/late_mean/members.json", "-n",
                              "--configfile", str(configfile)).stdout)
    predict = _jobs(run_snakemake(tmp_path, "predict", "-n", "--configfile", str(configfile)).stdout)
    assert {rule for rule, _ in fit} >= {"train", "ensemble", "features", "faces", "media", "manifest"}
    assert set(fit) <= set(predict)
    assert {rule for rule, _ in set(predict) - set(fit)} == PREDICT_RULES
    # the test split is not predicted for it: no test manifest, no test shard, no test prediction
    assert not {"predict_test", "test_manifest", "ensemble_test", "submission"} & {rule for rule, _ in predict}
    assert not [w for rule, w in predict if rule in ("media", "faces", "features") and dict(w)["s"].startswith("test")]


def test_predictions_after_training_train_nothing_and_equal_the_submission(trained):
    workdir, config, submission = trained
    try:
        _predict_in_place(workdir, {**config, "predict": {"videos": str(workdir / "test_videos.txt")}}, submission)
    finally:
        write_config(workdir, config)  # the module's other tests use the training config


def _predict_in_place(workdir, config, submission):
    configfile = write_config(workdir, config)
    planned = _jobs(run_snakemake(workdir, "predict", "-n", "--configfile", str(configfile)).stdout)
    assert {rule for rule, _ in planned} == PREDICT_RULES  # zero train jobs, nothing of the data set
    run_snakemake(workdir, "predict", "--cores", "2", "--configfile", str(configfile))
    out = workdir / "results" / "demo" / "predict"
    summary = pd.read_csv(out / "summary.csv", dtype={"video": str})
    summary["id"] = [int(Path(f).stem) for f in summary["file"]]  # names: paths from the list file's folder
    summary = summary.set_index("id")
    assert sorted(summary.index) == sorted(submission.index)
    pd.testing.assert_frame_equal(summary.loc[submission.index, TARGETS], submission[TARGETS], check_names=False,
                                  atol=5e-7)
    for video in summary["video"]:
        assert len(pd.read_csv(out / "videos" / f"{video}.csv")) == 1
    assert "Nothing to be done" in run_snakemake(workdir, "predict", "-n", "--configfile", str(configfile)).stdout


def _mixed_folder(folder, good):
    """One good video, one without audio, one zero-byte file, one without a face (grey frames, a tone)."""
    folder.mkdir()
    shutil.copy(good, folder / "good.mp4")
    ffmpeg = ffmpeg_exe()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(good), "-an", "-c:v", "copy", str(folder / "mute.mp4")],
                   check=True)
    (folder / "empty.mp4").write_bytes(b"")
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "color=c=gray:size=160x120:rate=30:duration=2",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-shortest", "-pix_fmt", "yuv420p",
                    str(folder / "faceless.mp4")], check=True)


def test_bundle_round_trip_on_a_mixed_folder_and_refusals(trained, tmp_path):
    workdir, config, submission = trained
    made = _affectflow(workdir, "bundle", "--out", str(tmp_path / "model.tar.gz"), "--configfile",
                       str(workdir / "config.yaml"), "--cores", "2")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    media = pd.read_csv(workdir / "results" / "demo" / "media" / "shard-test0.qc.tsv", sep="\t")
    good_id = int(media[media["has_audio"].astype(bool)]["id"].iloc[0])
    other = tmp_path / "elsewhere"  # another working directory: no data set, no training results
    other.mkdir()
    _mixed_folder(other / "videos", workdir / "results" / "demo" / "source" / "raw" / f"{good_id:05d}.mp4")
    done = _affectflow(other, "predict", "videos", "--bundle", str(tmp_path / "model.tar.gz"), "--out", "out",
                       "--cores", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "affectflow: faces      1/1" in done.stdout and "affectflow: outputs    1/1" in done.stdout
    assert not (other / "results").exists()
    summary = pd.read_csv(other / "out" / "summary.csv").set_index("video")
    assert sorted(summary.index) == ["empty", "faceless", "good", "mute"]  # every video has its row
    assert summary.at["good", "status"] == "ok"
    pd.testing.assert_series_equal(summary.loc["good", TARGETS].astype(float), submission.loc[good_id, TARGETS],
                                   check_names=False, atol=5e-7)  # the bundle predicts as in place
    assert summary.at["mute", "status"] == "partial" and "no audio" in summary.at["mute", "reason"]
    assert summary.at["faceless", "status"] == "partial" and "no face" in summary.at["faceless", "reason"]
    assert summary.at["empty", "status"] == "no_prediction" and summary.at["empty", "reason"]
    assert summary.loc["empty", TARGETS].isna().all()
    # the same command again: the archive is unpacked again, and nothing re-runs
    again = _affectflow(other, "predict", "videos", "--bundle", str(tmp_path / "model.tar.gz"), "--out", "out",
                        "--cores", "2", "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in (other / "out" / "affectflow.log").read_text()

    # other weights than the bundle was trained with: refused before any job, naming key and checksums
    bundle = tmp_path / "bundle"
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        archive.extractall(bundle, filter="data")
    bundle = bundle / "model"
    record = json.loads((bundle / "bundle.json").read_text())
    here = record["backbones"]["dlib_face128"]["weights_sha256"]
    record["backbones"]["dlib_face128"]["weights_sha256"] = "0" * 64
    (bundle / "bundle.json").write_text(json.dumps(record))
    refused = _affectflow(other, "predict", "videos", "--bundle", str(bundle), "--out", "out2", "--cores", "2")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "features.dlib_face128" in said and "0" * 64 in said and here in said, said[-3000:]
    assert not (other / "out2" / "summary.csv").exists()
