"""The real Snakemake CLI for the tests of test_recipes.py (slow)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from test_recipes import (  # noqa: F401  (helpers and fixtures shared with the unit tests)
    RECIPES,
    build_fixture,
    load,
)

from affectflow.data import read_manifest
from affectflow.submission import expected_rows, validate_submission
from affectflow.tasks import task_spec
from affectflow.testing.recipes import tiny_recipe_config
from affectflow.training.recipes import resolve_run

from conftest import run_snakemake


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end_on_its_tiny_fixture(name, tmp_path):
    config = load(name)
    task = task_spec(config["dataset"]["task"])
    data, options = build_fixture(task.name, tmp_path / "data")
    tiny = tiny_recipe_config(config, data_root=data, weights_dir=tmp_path / "weights", name=f"tiny_{name}",
                              dataset_options=options, n_shards=1)  # one labelled and one test shard
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(tiny, sort_keys=False))
    work = tmp_path / "work"
    # the default target: submission, data-quality report and the report's figures
    run_snakemake(work, "--cores", "2", "--configfile", str(configfile))

    submission = pd.read_csv(work / tiny["submission"], dtype={task.submission_key: str})
    assert list(submission.columns) == [task.submission_key, *task.targets]
    # what must be listed, read here from the fixture's own files (not through the readers)
    if task.name == "emi":
        labelled = (set(pd.read_csv(data / "train_split.csv")["Filename"])
                    | set(pd.read_csv(data / "valid_split.csv")["Filename"]))
        expected = sorted(str(int(p.stem)) for p in (data / "raw").glob("*.mp4") if int(p.stem) not in labelled)
        assert sorted(submission[task.submission_key], key=int) == sorted(expected, key=int)
    elif task.name == "eri":
        info = pd.read_csv(data / "data_info.csv", dtype={"File_ID": str})
        assert sorted(submission[task.submission_key]) == sorted(info.loc[info["Split"] == "Test", "File_ID"])
    else:
        sample = pd.read_csv(options["sample_file"])
        assert submission[task.submission_key].tolist() == sample["image_location"].tolist()
    values = submission[list(task.targets)].to_numpy(float)
    assert not pd.isna(values).any()
    assert ((values >= task.low) & (values <= task.high)).all()
    if task.binary:
        assert set(pd.unique(values.ravel())) <= {0.0, 1.0}
    # the validator accepts it too, against the manifest the workflow wrote
    results = work / "results" / f"tiny_{name}"
    manifest = read_manifest(results / "test_manifest.tsv")
    from affectflow.data.affwild2 import read_sample_frames

    sample_frames = read_sample_frames(options["sample_file"]) if "sample_file" in options else None
    expected = expected_rows(task, manifest, sample_frames=sample_frames)
    assert validate_submission(work / tiny["submission"], task, expected) == len(submission)
    # the ensemble wrote its members, weights summing to 1 per target, and its OOF score
    ensemble = results / "ensemble" / tiny["ensemble"]["name"]
    members = json.loads((ensemble / "members.json").read_text())
    for _target, weights in members["weights"].items():
        assert set(weights) <= set(tiny["ensemble"]["members"])
        assert sum(weights.values()) == pytest.approx(1.0)
    score = json.loads((ensemble / "score.json").read_text())
    assert score["metric"] == task.metric and set(score["oof"]["per_target"]) == set(task.targets)
    # the report's figures exist for every run of the recipe, whatever the task
    report = results / "report"
    assert (report / "scores.svg").stat().st_size > 0
    for run in tiny["train"]["runs"]:
        assert (report / "learning_curves" / f"{run}.svg").stat().st_size > 0
        # a fine-tuning run (001's visual branch, 002's Wav2Vec2) trained its encoder from crops or audio
        if resolve_run(tiny["train"]["runs"][run]).get("finetune"):
            fold = json.loads((results / "train" / run / "fold0" / "config.json").read_text())
            assert fold["input_dim"] == 0 and fold["model"] == "finetune"
        assert (report / "oof" / f"run-{run}.svg").stat().st_size > 0
    for key, entry in tiny["features"].items():  # fine-tuned encoders dumped for the fused runs
        if entry.get("backbone") == "finetuned":
            assert list((results / "features" / key).glob("shard-*.h5"))

    if task.per_frame and task.name == "va":
        _predicted_videos_equal_the_test_split(work, tiny, configfile, results, task)


def _predicted_videos_equal_the_test_split(work, tiny, configfile, results, task):
    """The per-frame path of issue 16: the test tracks' videos predicted as any videos (predict
    target) give, frame by frame, the ensemble's test predictions of those tracks; nothing trains.
    Tracks of a video with two people (_left/_right) are left out: a video predicts its main face."""
    test = read_manifest(results / "test_manifest.tsv")
    single = test[~test["name"].str.contains(r"_(?:left|right)$")]
    assert len(single), "the fixture has no single-person test track"
    listed = work / "predict_videos.txt"
    listed.write_text("\n".join(sorted(set(single["media"]))) + "\n")
    config = yaml.safe_load(configfile.read_text())
    config["predict"] = {"videos": str(listed)}
    predict_config = work / "predict.yaml"
    predict_config.write_text(yaml.safe_dump(config, sort_keys=False))
    planned = run_snakemake(work, "predict", "-n", "--configfile", str(predict_config)).stdout
    assert "rule train:" not in planned and "rule ensemble:" not in planned
    run_snakemake(work, "predict", "--cores", "2", "--configfile", str(predict_config))
    out = results / "predict"
    summary = pd.read_csv(out / "summary.csv", dtype={"video": str}).set_index("file")
    ensemble = pd.read_csv(results / "ensemble" / tiny["ensemble"]["name"] / "test.csv")
    targets = list(task.targets)
    for track in single.itertuples():
        video = summary.at[str(track.media), "video"]
        frames = pd.read_csv(out / "videos" / f"{video}.csv")
        assert list(frames.columns) == ["frame", "time_s", "face", *targets]
        assert list(frames["frame"]) == list(range(1, int(track.frames) + 1))
        assert frames["time_s"].iloc[-1] == pytest.approx((int(track.frames) - 1) / float(track.fps), abs=1e-6)
        assert frames["face"].isin([0, 1]).all() and summary.at[str(track.media), "face_frames"] >= 0
        expected = ensemble[ensemble["id"] == track.id].set_index("frame")[targets]
        assert len(expected) == int(track.frames)  # never two empty tables compared
        got = frames.set_index("frame")[targets]
        pd.testing.assert_frame_equal(got.loc[expected.index], expected, atol=5e-6, check_dtype=False)
