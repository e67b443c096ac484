"""Shared fixtures: the repository root and a runner for the real Snakemake CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# The SLURM scenario needs a running scheduler: .ci/slurm_scenario.sh starts one and runs
# test_slurm.py with AFFECTFLOW_SLURM=1 (CI does, after the unit suite). Elsewhere the module is
# not collected at all, rather than collected and skipped.
collect_ignore = [] if os.environ.get("AFFECTFLOW_SLURM") == "1" else ["workflow/test_slurm.py"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow of this repository in ``workdir`` (results/, logs/ go there)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def pytest_collection_modifyitems(config, items):
    """Every test under tests/workflow/ drives the real Snakemake CLI: marked ``slow``, so that
    ``pytest -m "not slow"`` is the inner loop of unit tests."""
    workflow_dir = Path(__file__).resolve().parent / "workflow"
    for item in items:
        if workflow_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def dry_run_jobs(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """The (rule, wildcards) of every job listed by ``snakemake --dry-run``."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            jobs.append((stripped.split()[1].rstrip(":"), {}))
        elif stripped.startswith("wildcards:") and jobs:
            for item in stripped[len("wildcards:"):].split(","):
                key, _, value = item.strip().partition("=")
                jobs[-1][1][key] = value
    return jobs


def tiny_config(workdir: Path) -> dict:
    """The default demo config shrunk to seconds: 10 short clips, 2 shards, few epochs."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["dataset"]["n_shards"] = 2
    config["dataset"]["demo"].update(resources=str(REPO / "resources" / "demo"), n_clips=10, max_duration_s=3)
    config["features"]["dlib_face128"]["max_frames"] = 6
    for run in config["train"]["runs"].values():
        run["epochs"] = 5
    return config


def write_config(workdir: Path, config: dict) -> Path:
    """Write ``config`` as ``workdir/config.yaml`` for ``--configfile``."""
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
