"""The data set is an input: a new, removed or replaced video, or an edited label, re-runs exactly
what it changes (EMI layout of the demo set, without the demo rule: the organisers' files as a
user has them)."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from affectflow.config.runs import run_backbones, run_folds
from affectflow.data.shards import shard_of
from affectflow.tasks import emi_media_name

from conftest import REPO, dry_run_jobs, run_snakemake, tiny_config, write_config

TARGET = "results/submission.csv"
OLD_TIME = 1_000_000_000  # 2001: a replacing copy that keeps an older modification time


@pytest.fixture(scope="module")
def vidmimic_run(tmp_path_factory):
    """A finished run on a Hume-Vidmimic2-style folder (the tiny demo set, rendered once)."""
    from affectflow.demo import build_demo_dataset

    tmp = tmp_path_factory.mktemp("data_changes")
    source = tmp / "source"
    build_demo_dataset(REPO / "resources" / "demo", source, tmp / "truth.csv", tmp / "props.tsv",
                       n_clips=10, max_duration_s=3)
    workdir = tmp / "work"
    workdir.mkdir()
    config = tiny_config(workdir)
    del config["dataset"]["demo"], config["dataset"]["ground_truth"]
    config["dataset"].update(name="vidmimic", root=str(source), n_shards=2, test_shards=2)
    configfile = write_config(workdir, config)
    run_snakemake(workdir, TARGET, "--cores", "2", "--configfile", str(configfile))
    return workdir, source, config, configfile


def planned(config, shard_jobs, *, train=False, manifest=False, test_manifest=False, frame_labels=False):
    """The jobs a change must run for the submission: per shard media, faces and features of the ensemble's
    backbones; training and/or test prediction of every member fold; the ensemble's fit (only when a
    member retrains: it is fitted on OOF predictions), its application to the test split, the submission."""
    members = config["ensemble"]["members"]
    runs = config["train"]["runs"]
    backbones = sorted({b for run in members for b in run_backbones(runs[run])})
    folds = [(run, str(k)) for run in members for k in range(run_folds(runs[run], config["train"]["k_folds"]))]
    jobs = []
    for s in shard_jobs:
        jobs += [("media", (("s", s),)), ("faces", (("detector", config["faces"]["detector"]), ("s", s)))]
        jobs += [("features", (("backbone", b), ("s", s))) for b in backbones]
    if train:
        jobs += [("train", (("k", k), ("run", run))) for run, k in folds]
    jobs += [("predict_test", (("k", k), ("run", run))) for run, k in folds]
    jobs += [("manifest", ())] * manifest + [("test_manifest", ())] * test_manifest
    jobs += [("frame_labels", ())] * frame_labels
    jobs += [("ensemble", ())] * train
    return sorted(jobs + [("ensemble_test", ()), ("submission", ())])


def listed_jobs(workdir, configfile, target=TARGET):
    proc = run_snakemake(workdir, target, "-n", "--configfile", str(configfile))
    return sorted((rule, tuple(sorted(w.items()))) for rule, w in dry_run_jobs(proc.stdout)), proc.stdout


def nothing_to_do(workdir, configfile, target=TARGET):
    return "Nothing to be done" in run_snakemake(workdir, target, "-n", "--configfile", str(configfile)).stdout


def split_ids(source):
    labelled = {split: set(pd.read_csv(source / f"{name}_split.csv")["Filename"])
                for split, name in (("train", "train"), ("val", "valid"))}
    every = {int(p.stem) for p in (source / "raw").glob("*.mp4")}
    return labelled["train"], every - labelled["train"] - labelled["val"], every


def test_a_new_test_video_reruns_its_test_shard_and_prediction_and_no_training(vidmimic_run):
    workdir, source, config, configfile = vidmimic_run
    assert nothing_to_do(workdir, configfile)
    _, test_ids, every = split_ids(source)
    new_id = max(every) + 1
    shard = f"test{shard_of(new_id, 2)}"
    before = {i: f"test{shard_of(i, 2)}" for i in test_ids}
    shutil.copyfile(source / "raw" / emi_media_name(min(test_ids)), source / "raw" / emi_media_name(new_id))

    listed, stdout = listed_jobs(workdir, configfile)
    assert listed == planned(config, [shard], test_manifest=True), stdout[-3000:]

    run_snakemake(workdir, TARGET, "--cores", "2", "--configfile", str(configfile))
    submission = pd.read_csv(workdir / TARGET)
    assert sorted(submission["Filename"]) == sorted(test_ids | {new_id})
    # adding a clip moved no other clip: each old test clip is still in its shard's test manifest rows
    test_manifest = pd.read_csv(workdir / "results" / "vidmimic" / "test_manifest.tsv", sep="\t")
    assert {int(i): s for i, s in zip(test_manifest["id"], test_manifest["shard"]) if i != new_id} == before
    assert nothing_to_do(workdir, configfile)

    # and removing it again re-runs the same jobs; the submission no longer lists it
    (source / "raw" / emi_media_name(new_id)).unlink()
    listed, stdout = listed_jobs(workdir, configfile)
    assert listed == planned(config, [shard], test_manifest=True), stdout[-3000:]
    run_snakemake(workdir, TARGET, "--cores", "2", "--configfile", str(configfile))
    assert sorted(pd.read_csv(workdir / TARGET)["Filename"]) == sorted(test_ids)


def test_a_replaced_training_video_reruns_its_shard_and_training_only(vidmimic_run):
    workdir, source, config, configfile = vidmimic_run
    train_ids, _, _ = split_ids(source)
    victim, donor = sorted(train_ids)[:2]
    path = source / "raw" / emi_media_name(victim)
    saved = path.read_bytes(), os.stat(path)
    try:
        shutil.copyfile(source / "raw" / emi_media_name(donor), path)
        os.utime(path, (OLD_TIME, OLD_TIME))  # older than every output: the time alone would miss it
        listed, stdout = listed_jobs(workdir, configfile)
        assert listed == planned(config, [str(shard_of(victim, 2))], train=True), stdout[-3000:]
    finally:
        path.write_bytes(saved[0])
        os.utime(path, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
    assert nothing_to_do(workdir, configfile)  # the original file back: nothing to do


def test_an_edited_label_reruns_manifest_training_and_prediction_not_media(vidmimic_run):
    workdir, source, config, configfile = vidmimic_run
    path = source / "train_split.csv"
    saved = path.read_text(), os.stat(path)
    lines = saved[0].splitlines()
    cells = lines[1].split(",")
    cells[1] = "0.123456" if cells[1] != "0.123456" else "0.654321"
    try:
        path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
        listed, stdout = listed_jobs(workdir, configfile)
        assert listed == planned(config, [], train=True, manifest=True), stdout[-3000:]
    finally:
        path.write_text(saved[0])
        os.utime(path, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
    assert nothing_to_do(workdir, configfile)


# --- Aff-Wild2 (VA): tracks from annotation files and a test list; the manifest reads the videos ---


@pytest.fixture(scope="module")
def affwild2_run(tmp_path_factory):
    """A finished run of the VA recipe (tiny) on the Aff-Wild2 fixture."""
    import yaml

    from affectflow.testing import make_affwild2
    from affectflow.testing.recipes import tiny_recipe_config

    tmp = tmp_path_factory.mktemp("data_changes_va")
    root = make_affwild2(tmp / "data", n_videos=12, two_person=True, seconds=(0.6, 1.0))  # 5 folds need 5 videos
    recipe = yaml.safe_load((REPO / "config" / "recipes" / "va_liu2023.yaml").read_text())
    # the recipe's first run and its features: what a data change re-runs does not depend on how many
    # runs there are, and each run costs six fold jobs
    first = next(iter(recipe["train"]["runs"]))
    recipe["train"]["runs"] = {first: recipe["train"]["runs"][first]}
    recipe["ensemble"]["members"] = [first]
    used = run_backbones(recipe["train"]["runs"][first])
    recipe["features"] = {key: entry for key, entry in recipe["features"].items() if key in used}
    config = tiny_recipe_config(recipe, data_root=root, weights_dir=tmp / "weights", name="va_changes")
    config["dataset"]["test_shards"] = 2
    workdir = tmp / "work"
    workdir.mkdir()
    configfile = write_config(workdir, config)
    target = config["submission"]
    run_snakemake(workdir, target, "--cores", "2", "--configfile", str(configfile))
    return workdir, root, config, configfile, target


def _track_shards(workdir, config, split):
    from affectflow.data import read_manifest

    name = "test_manifest.tsv" if split == "test" else "manifest.tsv"
    manifest = read_manifest(workdir / "results" / config["dataset"]["name"] / name)
    return manifest[manifest["split"] == split]


def test_affwild2_changes_rerun_exactly_what_they_affect(affwild2_run):
    from affectflow.data.affwild2 import track_id
    from affectflow.testing.datasets import TEST_LIST_DIR

    workdir, root, config, configfile, target = affwild2_run
    assert nothing_to_do(workdir, configfile, target)

    # an edited annotation value: manifest, frame labels, training, prediction; no media job
    train = _track_shards(workdir, config, "train").iloc[0]
    labels = train["labels"]
    saved = open(labels).read(), os.stat(labels)
    lines = saved[0].splitlines()
    lines[1] = "0.5,0.5" if lines[1] != "0.5,0.5" else "0.25,0.25"
    try:
        open(labels, "w").write("\n".join(lines) + "\n")
        listed, stdout = listed_jobs(workdir, configfile, target)
        assert listed == planned(config, [], train=True, manifest=True, frame_labels=True), stdout[-3000:]
    finally:
        open(labels, "w").write(saved[0])
        os.utime(labels, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))

    # a replaced training video (older time kept): its tracks' shards, the manifest (it reads the frame
    # count from the video), frame labels, training and prediction
    video = train["media"]
    tracks = _track_shards(workdir, config, "train")
    shards = sorted(set(tracks.loc[tracks["media"] == video, "shard"].astype(str)))
    saved = open(video, "rb").read(), os.stat(video)
    try:
        open(video, "ab").write(b"\0" * 16)  # new content, same name
        os.utime(video, (OLD_TIME, OLD_TIME))
        listed, stdout = listed_jobs(workdir, configfile, target)
        assert listed == planned(config, shards, train=True, manifest=True, frame_labels=True), stdout[-3000:]
    finally:
        open(video, "wb").write(saved[0])
        os.utime(video, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))

    # the test list named in the config (the organisers' file, released late): no training job
    test_lists = sorted((root / TEST_LIST_DIR).glob("Valence*"))
    assert len(test_lists) == 1
    test_list = test_lists[0]
    named = json.loads(json.dumps(config))
    named["dataset"]["test_list"] = str(test_list)
    listed, stdout = listed_jobs(workdir, write_config(workdir, named), target)
    assert listed == planned(config, [], test_manifest=True), stdout[-3000:]
    write_config(workdir, config)

    # a new test track (a video and its line in the test list): its test shard, the test manifest, prediction
    saved = test_list.read_text(), os.stat(test_list)
    source = _track_shards(workdir, config, "test").iloc[0]["media"]
    new_video = os.path.join(os.path.dirname(source), "added_video" + os.path.splitext(source)[1])
    shutil.copyfile(source, new_video)
    try:
        test_list.write_text(saved[0].rstrip("\n") + "\nadded_video\n")
        listed, stdout = listed_jobs(workdir, configfile, target)
        shard = f"test{shard_of(track_id('added_video'), 2)}"
        assert listed == planned(config, [shard], test_manifest=True), stdout[-3000:]
    finally:
        test_list.write_text(saved[0])
        os.utime(test_list, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
        os.unlink(new_video)
    assert nothing_to_do(workdir, configfile, target)
