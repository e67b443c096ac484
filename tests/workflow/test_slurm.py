"""The tiny demo on a real SLURM scheduler through ``--profile profiles/slurm``, with faults.

Needs a running single-node SLURM with one GPU gres: ``.ci/slurm_scenario.sh`` sets one up,
runs this module with AFFECTFLOW_SLURM=1, and stops it; without that variable it is skipped.

One work dir, two runs, in order:

1. ``--retries 0``, up to the faces shard: the ``faces`` job is cancelled by the scheduler (``scancel``) while its
   script runs. The run fails, and no output of that job is left, finished-looking or partial.
2. The profile as is (``retries: 2``): the re-run completes the workflow, although the first
   ``train`` job is cancelled once more while it runs: Snakemake resubmits it (a new SLURM job
   id for the same rule and wildcards). Every job of both runs went through sbatch (a SLURM
   job id in the Snakemake log, a log file under logs/slurm/), and the submission is valid.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from affectflow.submission import validate_submission
from affectflow.tasks import task_spec

from conftest import REPO, tiny_config, write_config

# Collected only when the scenario runs it (tests/conftest.py ignores this module otherwise);
# with AFFECTFLOW_SLURM=1 but no scheduler it must fail, not pass silently.
if shutil.which("sbatch") is None:
    raise RuntimeError("AFFECTFLOW_SLURM=1 but sbatch is not on PATH: start .ci/slurm_scenario.sh")

PROFILE = REPO / "profiles" / "slurm"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
RUN_LIMIT_S = 420


def _scenario_config(workdir: Path) -> dict:
    """The tiny demo of the workflow tests in one shard. The node has 2 CPUs and one GPU: faces
    and features ask for it (gres), train runs on CPU so that two folds train at once."""
    config = tiny_config(workdir)
    config["dataset"]["n_shards"] = 1
    config["resources"]["train"]["gpu"] = 0
    return config


def _snakemake(workdir: Path, *args: str, target: str = "results/submission.csv") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log = open(workdir / f"snakemake-{len(list(workdir.glob('snakemake-*.log')))}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", target, "-s", str(REPO / "Snakefile"),
         "-d", str(workdir), "--profile", str(PROFILE), "--configfile", str(workdir / "config.yaml"),
         # quicker first status check than the profile's: this cluster's jobs take seconds
         "--slurm-init-seconds-before-status-checks", "4", *args],
        stdout=log, stderr=subprocess.STDOUT, env=env, text=True,
    )


def _running_jobs() -> dict[str, str]:
    """SLURM job id -> comment (``rule_<name>_wildcards_<...>``) of the running jobs."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return dict(line.split("|", 1) for line in out.split())


def _cancel_when_running(proc: subprocess.Popen, rule: str, started: Path, limit_s: float = 300,
                         progress: str = "") -> str:
    """Wait until a job of ``rule`` runs and its script has started (``started`` exists, holding
    ``progress``), scancel it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "snakemake ended before a job could be cancelled"
        for job_id, comment in _running_jobs().items():
            if comment.startswith(f"rule_{rule}") and started.exists() and (
                not progress or progress in started.read_text()
            ):
                subprocess.run(["scancel", job_id], check=True, timeout=30)
                return job_id
        time.sleep(0.3)
    raise AssertionError(f"no running {rule} job within {limit_s} s")


def _submissions(log: Path) -> list[tuple[str, str, str]]:
    """(snakemake job id, SLURM job id, SLURM log) of every sbatch in a Snakemake log."""
    return SUBMITTED.findall(log.read_text())


def _planned_jobs(log: Path) -> int:
    """The job count of the run's 'Job stats' table ('total N')."""
    match = re.search(r"^total\s+(\d+)$", log.read_text(), re.M)
    assert match, log.read_text()[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, _scenario_config(workdir))
    return workdir


def test_cancelled_job_leaves_no_partial_output(workdir):
    # up to the faces shard only, so that no other job keeps the failed run waiting
    proc = _snakemake(workdir, "--retries", "0", target="results/demo/faces/mtcnn/shard-0.h5")
    try:
        faces_log = workdir / "logs" / "faces" / "demo-mtcnn-0.log"
        # cancelled mid-shard: one clip is done (logged), the shard file is being written
        job_id = _cancel_when_running(proc, "faces", faces_log, progress="frames/s")
        assert proc.wait(timeout=RUN_LIMIT_S) != 0
    finally:
        if proc.poll() is None:
            proc.terminate()
    log = workdir / "snakemake-0.log"
    text = log.read_text()
    assert re.search(rf"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED", text), text[-3000:]
    shard_dir = workdir / "results" / "demo" / "faces" / "mtcnn"
    left = sorted(p.name for p in shard_dir.iterdir()) if shard_dir.exists() else []
    assert left == [], f"the cancelled faces job left {left}"
    # what ran before the cancelled job is complete and kept
    assert (workdir / "results" / "demo" / "media" / "shard-0.h5").is_file()
    submitted = _submissions(log)
    assert submitted and all(Path(slurm_log).is_file() for _, _, slurm_log in submitted)


def test_rerun_completes_retrying_a_killed_job_all_through_sbatch(workdir):
    proc = _snakemake(workdir)  # the profile's retries: 2
    try:
        train_log = workdir / "logs" / "train"
        killed = _cancel_when_running(proc, "train", train_log)
        assert proc.wait(timeout=RUN_LIMIT_S) == 0, (workdir / "snakemake-1.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.terminate()
    log = workdir / "snakemake-1.log"
    submitted = _submissions(log)
    by_job: dict[str, list[str]] = {}
    for job, slurm_id, _ in submitted:
        by_job.setdefault(job, []).append(slurm_id)
    # every job of the re-run went through sbatch, and the killed one twice (a new SLURM id)
    assert len(by_job) == _planned_jobs(log), log.read_text()[-4000:]
    retried = [ids for ids in by_job.values() if killed in ids]
    assert retried and len(retried[0]) == 2 and retried[0][0] == killed, by_job
    assert "localrule" not in log.read_text().replace("localrule all:", "")
    for _, slurm_id, slurm_log in submitted:
        assert Path(slurm_log).is_file() and Path(slurm_log).stem == slurm_id
    # the GPU rules got SLURM's gres GPU (CUDA_VISIBLE_DEVICES set by the scheduler), train none
    for rule_log in ("faces/demo-mtcnn-0.log", "features/demo-dlib_face128-0.log", "features/demo-mfcc128-0.log"):
        assert "using the assigned GPU(s) 0" in (workdir / "logs" / rule_log).read_text(), rule_log
    assert "GPU" not in (workdir / "logs" / "train" / "demo-visual_gru-0.log").read_text()
    # the submission is valid: every test id once, values in range
    source = workdir / "results" / "demo" / "source"
    raw_ids = {int(p.stem) for p in (source / "raw").glob("*.mp4")}
    labelled = set(pd.read_csv(source / "train_split.csv")["Filename"]) | set(
        pd.read_csv(source / "valid_split.csv")["Filename"]
    )
    test_ids = sorted(raw_ids - labelled)
    expected = pd.DataFrame({"id": test_ids, "name": [str(i) for i in test_ids]})
    assert validate_submission(workdir / "results" / "submission.csv", task_spec("emi"), expected) == len(test_ids)
