"""The real Snakemake CLI for the tests of test_branch_freeze.py (slow)."""

from __future__ import annotations

from test_branch_freeze import (  # noqa: F401  (helpers and fixtures shared with the unit tests)
    FUSED,
    UNIMODAL,
    dry_run_inputs,
)

from conftest import run_snakemake


def test_the_dag_feeds_fused_fold_k_from_the_unimodal_runs_fold_k(tmp_path):
    from conftest import tiny_config, write_config

    config = tiny_config(tmp_path)
    config["train"]["runs"] = {
        "visual": {"backbone": "dlib_face128", "model": "tcn_transformer", "model_params": dict(UNIMODAL)},
        "audio": {"backbone": "mfcc128", "model": "tcn_transformer", "model_params": dict(UNIMODAL)},
        "fused": {"backbone": "dlib_face128", "fuse_with": ["mfcc128"], "model": "fusion",
                  "model_params": dict(FUSED), "init_branches": ["visual", "audio"], "freeze_branches": True},
    }
    config["ensemble"]["members"] = ["fused"]
    configfile = write_config(tmp_path, config)
    targets = [f"results/demo/train/fused/fold{k}/oof.csv" for k in range(2)]
    proc = run_snakemake(tmp_path, *targets, "-n", "--configfile", str(configfile))
    jobs = dry_run_inputs(proc.stdout)
    assert set(jobs) == {(run, str(k)) for run in ("visual", "audio", "fused") for k in range(2)}, proc.stdout[-3000:]
    for k in range(2):
        models = sorted(p for p in jobs[("fused", str(k))] if p.endswith("model.pt"))
        assert models == [f"results/demo/train/{run}/fold{k}/model.pt" for run in ("audio", "visual")]
        assert not any(p.endswith("model.pt") for run in ("visual", "audio") for p in jobs[(run, str(k))])
    # a bad init_branches stops the workflow before any job, naming the key
    config["train"]["runs"]["fused"]["init_branches"] = ["audio", "visual"]
    bad = run_snakemake(tmp_path, *targets, "-n", "--configfile", str(write_config(tmp_path, config)), check=False)
    assert bad.returncode != 0
    assert "train.runs.fused.init_branches[0]" in bad.stdout + bad.stderr

