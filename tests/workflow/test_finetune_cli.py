"""Fine-tuning through the real Snakemake CLI (issue 15): a fine-tuning run trains from the faces
shards' crops, a features entry dumps its best fold's frozen encoder to HDF5, a fused run reads
those features; changing the fine-tune settings re-runs exactly what depends on them."""

from __future__ import annotations

import json
import re

import h5py
import pandas as pd

from affectflow.features.testing import resnet18_checkpoint

from conftest import run_snakemake, tiny_config, write_config

FINETUNE = {"input": "crops", "frames": 4, "size": 32}


def _config(tmp_path, frames: int = 4) -> dict:
    config = tiny_config(tmp_path)
    weights = resnet18_checkpoint(tmp_path / "resnet18.pt")
    config["features"]["resnet18_pool512"] = {"weights": str(weights)}
    config["features"]["visual_ft"] = {"backbone": "finetuned", "run": "visual_finetune", "fold": "best"}
    config["train"]["runs"] = {
        "visual_finetune": {
            "backbone": "resnet18_pool512", "model": "finetune", "epochs": 2, "batch_size": 4, "lr": 0.001,
            "finetune": {**FINETUNE, "frames": frames},
            "model_params": {"encoder": "resnet18_spatial", "encoder_params": {"image_size": 32, "spatial_layers": 1},
                             "temporal": "gru", "temporal_params": {"hidden": 8}},
        },
        "fused": {"backbone": "visual_ft", "fuse_with": ["mfcc128"], "model": "gru",
                  "model_params": {"hidden": 8}, "epochs": 3, "batch_size": 4},
        "audio_gru": config["train"]["runs"]["audio_gru"],
    }
    config["ensemble"]["members"] = ["fused", "audio_gru", "visual_finetune"]  # its test.csv too
    config["ensemble"]["compare"] = []
    return config


def _jobs(stdout: str) -> dict[str, set[str]]:
    """Rule name -> the wildcards of each job a dry run lists."""
    jobs: dict[str, set[str]] = {}
    rule = None
    for line in stdout.splitlines():
        if found := re.match(r"^(?:local)?rule (\w+):", line):
            rule = found.group(1)
            jobs.setdefault(rule, set())
        elif rule and (found := re.match(r"^\s+wildcards: (.*)", line)):
            jobs[rule].add(found.group(1))
    return jobs


def test_finetuned_features_feed_a_fused_run_and_a_settings_change_reruns_what_depends(tmp_path):
    config = _config(tmp_path)
    configfile = write_config(tmp_path, config)
    run_snakemake(tmp_path, "--cores", "2", "--configfile", str(configfile))
    results = tmp_path / "results" / "demo"
    # the fine-tuning run wrote what every run writes, with no feature statistics
    for k in range(2):
        fold = results / "train" / "visual_finetune" / f"fold{k}"
        assert json.loads((fold / "config.json").read_text())["input_dim"] == 0
        assert len(pd.read_csv(fold / "test.csv")) > 0
    # its best fold's encoder was dumped like any backbone: 256-d per valid crop
    scores = {k: json.loads((results / "train" / "visual_finetune" / f"fold{k}" / "metrics.json").read_text())
              ["oof_score"]["mean"] for k in range(2)}
    shards = sorted((results / "features" / "visual_ft").glob("shard-*.h5"))
    assert len(shards) == 3  # two labelled shards and the test shard
    with h5py.File(shards[0]) as h5:
        assert h5.attrs["dim"] == 256 and h5.attrs["backbone"] == "finetuned"
        widths = {h5["clips"][c]["features"].shape[1] for c in h5["clips"]}
        assert widths == {256}
    log = (tmp_path / "logs" / "features").glob("demo-visual_ft-*.log")
    best = max(sorted(scores), key=lambda k: scores[k])
    assert any(f"fold{best}" in path.read_text() for path in log)
    # the fused run read them (256 + 128 MFCC columns)
    fused = json.loads((results / "train" / "fused" / "fold0" / "config.json").read_text())
    assert fused["input_dim"] == 256 + 128 and fused["backbones"] == ["visual_ft", "mfcc128"]
    # its out-of-fold clips trained the fine-tuned encoder: metrics.json says its OOF score is in-sample
    metrics = json.loads((results / "train" / "fused" / "fold0" / "metrics.json").read_text())
    assert "fine-tuned encoder" in metrics["oof_in_sample"]
    assert "oof_in_sample" not in json.loads((results / "train" / "audio_gru" / "fold0" / "metrics.json").read_text())

    # nothing to do on a second look; a changed fine-tune setting re-runs exactly its dependants
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", "--configfile", str(configfile)).stdout
    changed = write_config(tmp_path, _config(tmp_path, frames=3))
    jobs = _jobs(run_snakemake(tmp_path, "-n", "--configfile", str(changed)).stdout)
    assert jobs["train"] == {f"run=visual_finetune, k={k}" for k in range(2)} | {f"run=fused, k={k}" for k in range(2)}
    assert jobs["predict_test"] == jobs["train"]
    assert jobs["features"] == {f"backbone=visual_ft, s={path.stem.removeprefix('shard-')}" for path in shards}
    assert not {"media", "faces", "manifest"} & set(jobs)  # the data stages stay
    assert "ensemble" in jobs and "submission" in jobs
