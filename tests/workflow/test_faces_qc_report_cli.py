"""The real Snakemake CLI for the tests of test_faces_qc_report.py (slow)."""

from __future__ import annotations

import pytest
import yaml

from affectflow.data.listing import count_test_shards

from conftest import REPO, dry_run_jobs, run_snakemake


@pytest.mark.slow
def test_qc_report_rule_is_in_the_workflow(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["dataset"]["demo"]["resources"] = str(REPO / "resources" / "demo")
    config["faces"]["detector"] = "dlib"
    config["faces"]["fallback"] = {"detector": "mtcnn", "params": {"min_face_size": 40}}
    config["faces"]["missing"] = {"policy": "interpolate", "max_gap": 12, "smooth": 5}
    config["faces"]["sampling"] = {"mode": "uniform", "num_frames": 32}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", "results/demo/qc/summary.tsv", "--configfile", str(tmp_path / "c.yaml"))
    rules = [rule for rule, _ in dry_run_jobs(proc.stdout)]
    n_shards = config["dataset"]["n_shards"]
    # one faces job per shard: the labelled clips' shards and those of the test clips
    assert "qc_report" in rules and rules.count("faces") == n_shards + count_test_shards(n_shards)
    faces_jobs = [w for rule, w in dry_run_jobs(proc.stdout) if rule == "faces"]
    assert all(w["detector"] == "dlib" for w in faces_jobs)
    # an unknown fallback detector fails at start-up, naming the known ones
    config["faces"]["fallback"] = {"detector": "retina"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", "results/demo/qc/summary.tsv", "--configfile", str(tmp_path / "c.yaml"),
                         check=False)
    assert proc.returncode != 0 and "retina" in proc.stderr + proc.stdout and "mtcnn" in proc.stderr + proc.stdout

