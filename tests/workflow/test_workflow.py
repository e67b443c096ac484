"""The real workflow, end to end on a tiny generated demo set, and its re-run behaviour."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from affectflow.submission import validate_submission
from affectflow.tasks import EMI_HEADER, task_spec

from conftest import dry_run_jobs, run_snakemake, tiny_config, write_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A complete run of the workflow on the tiny demo set."""
    workdir = tmp_path_factory.mktemp("workflow")
    config = tiny_config(workdir)
    configfile = write_config(workdir, config)
    run_snakemake(workdir, "results/submission.csv", "results/demo/test_score.json", "--cores", "2",
                  "--configfile", str(configfile))
    return workdir, config


def test_submission_lists_every_test_id_once_in_range(finished_run):
    workdir, _ = finished_run
    source = workdir / "results" / "demo" / "source"
    raw_ids = {int(p.stem) for p in (source / "raw").glob("*.mp4")}
    labelled = set(pd.read_csv(source / "train_split.csv")["Filename"]) | set(
        pd.read_csv(source / "valid_split.csv")["Filename"]
    )
    test_ids = sorted(raw_ids - labelled)
    submission = workdir / "results" / "submission.csv"
    assert submission.read_text().splitlines()[0] == ",".join(EMI_HEADER)
    frame = pd.read_csv(submission)
    assert frame["Filename"].tolist() == test_ids
    values = frame[list(EMI_HEADER[1:])].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    expected = pd.DataFrame({"id": test_ids, "name": [str(i) for i in test_ids]})
    assert validate_submission(submission, task_spec("emi"), expected) == len(test_ids)


def test_every_stage_wrote_its_shards_and_folds(finished_run):
    workdir, config = finished_run
    results = workdir / "results" / "demo"
    for s in ("0", "1", "test0"):  # the tiny config's 2 shards, and 1 of test clips (n_shards / 3)
        assert (results / "media" / f"shard-{s}.h5").is_file()
        assert (results / "faces" / "mtcnn" / f"shard-{s}.h5").is_file()
        for backbone in config["features"]:
            assert (results / "features" / backbone / f"shard-{s}.h5").is_file()
    for run in config["train"]["runs"]:
        for k in range(config["train"]["k_folds"]):
            metrics = json.loads((results / "train" / run / f"fold{k}" / "metrics.json").read_text())
            assert metrics["fold"] == k and metrics["train_clips"] >= 2
    score = json.loads((results / "test_score.json").read_text())
    assert score["clips"] >= 2
    # every rule leaves a log and a benchmark record
    assert any((workdir / "logs" / "faces").iterdir())
    assert any((workdir / "benchmarks" / "train").iterdir())


def test_changing_one_backbone_reruns_exactly_its_jobs(finished_run):
    workdir, config = finished_run
    assert "Nothing to be done" in run_snakemake(
        workdir, "results/submission.csv", "-n", "--configfile", str(write_config(workdir, config))
    ).stdout
    changed = json.loads(json.dumps(config))
    changed["features"]["dlib_face128"]["num_jitters"] = 1
    proc = run_snakemake(workdir, "results/submission.csv", "-n", "--configfile", str(write_config(workdir, changed)))
    jobs = dry_run_jobs(proc.stdout)
    listed = sorted((rule, tuple(sorted(w.items()))) for rule, w in jobs)
    expected = sorted(
        [("features", (("backbone", "dlib_face128"), ("s", s))) for s in ("0", "1", "test0")]
        + [(rule, (("k", str(k)), ("run", "visual_gru"))) for k in range(2) for rule in ("train", "predict_test")]
        + [("ensemble", ()), ("ensemble_test", ()), ("submission", ())]
    )
    assert listed == expected, proc.stdout[-3000:]
    write_config(workdir, config)  # leave the finished run consistent for other tests


def test_changing_the_audio_backbone_reruns_its_jobs_and_speed_keys_rerun_nothing(finished_run):
    workdir, config = finished_run
    faster = json.loads(json.dumps(config))
    faster["features"]["mfcc128"].update(batch_size=7, num_workers=0)  # speed only: no re-run
    assert "Nothing to be done" in run_snakemake(
        workdir, "results/submission.csv", "-n", "--configfile", str(write_config(workdir, faster))
    ).stdout
    changed = json.loads(json.dumps(config))
    changed["features"]["mfcc128"]["hop_s"] = 0.02
    proc = run_snakemake(workdir, "results/submission.csv", "-n", "--configfile", str(write_config(workdir, changed)))
    listed = sorted((rule, tuple(sorted(w.items()))) for rule, w in dry_run_jobs(proc.stdout))
    expected = sorted(
        [("features", (("backbone", "mfcc128"), ("s", s))) for s in ("0", "1", "test0")]
        + [(rule, (("k", str(k)), ("run", "audio_gru"))) for k in range(2) for rule in ("train", "predict_test")]
        + [("ensemble", ()), ("ensemble_test", ()), ("submission", ())]
    )
    assert listed == expected, proc.stdout[-3000:]
    write_config(workdir, config)


def test_unknown_config_key_is_rejected_naming_it(tmp_path):
    config = tiny_config(tmp_path)
    config["faces"]["detectr"] = "mtcnn"
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path, config)), check=False)
    assert proc.returncode != 0
    assert "detectr" in proc.stdout + proc.stderr


def test_unknown_backbone_fails_listing_known_ones(tmp_path):
    config = tiny_config(tmp_path)
    config["train"]["runs"]["visual_gru"]["backbone"] = "resnet999"
    config["features"]["resnet999"] = {}
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path, config)), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "resnet999" in out and "dlib_face128" in out and "mfcc128" in out
