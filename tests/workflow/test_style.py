"""The workflow is snakefmt-formatted and lint-clean, and the DAG scales with shards only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from affectflow.data.listing import count_test_shards

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import dag_scale  # noqa: E402

BIN = Path(sys.executable).parent


def test_snakefmt_check_is_clean():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_is_clean(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"),
                           "-d", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_job_count_grows_with_shards_not_clips(tmp_path):
    dag_scale.make_dataset(tmp_path / "a", {"train": 30, "val": 10, "test": 10})
    dag_scale.make_dataset(tmp_path / "b", {"train": 300, "val": 100, "test": 100})
    _, jobs_small = dag_scale.dry_run(tmp_path / "wa", tmp_path / "a", 4)
    _, jobs_large = dag_scale.dry_run(tmp_path / "wb", tmp_path / "b", 4)
    _, jobs_more_shards = dag_scale.dry_run(tmp_path / "wc", tmp_path / "b", 8)
    assert jobs_small == jobs_large
    # media, faces and two backbones per shard: 4 more jobs per extra shard (labelled or test)
    extra_shards = (8 + count_test_shards(8)) - (4 + count_test_shards(4))
    assert extra_shards == 5 and jobs_more_shards - jobs_large == 4 * extra_shards
