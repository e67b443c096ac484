"""The training rule's one call, ``train_fold_job``: from paths and config values to the same fold
outputs as ``train_fold`` called with the objects the job builds (and the test prediction rule's,
``predict_fold_job``, to the same test table as ``predict_fold``); and the start-up checks import
no torch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from affectflow.data import read_manifest, write_manifest
from affectflow.h5store import ShardWriter
from affectflow.tasks import EMI_TARGETS, VA_TARGETS
from affectflow.training.fold import train_fold, train_fold_job
from affectflow.training.predict import predict_fold, predict_fold_job
from affectflow.training.settings import TrainSettings

OUTPUTS = ("oof.csv", "config.json", "metrics.json")


def _shard(root, backbone, clips):
    path = root / "features" / backbone / "shard-0.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(path, file_attrs={"stage": "features", "backbone": backbone}) as writer:
        for i, (features, times) in clips.items():
            writer.add_clip(i, {"features": features, "timestamps": times})
    return str(path)


def _same_outputs(a, b):
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not (a / "test.csv").exists() and not (b / "test.csv").exists()  # the test prediction rule's


def _same_test_tables(tmp_path, manifest, shards, shard_paths, task, run):
    """predict_fold_job on the job's fold (paths, the run) writes what predict_fold on the direct one does."""
    write_manifest(manifest[manifest["split"] == "test"], tmp_path / "test_manifest.tsv")
    predict_fold_job(tmp_path / "job" / "model.pt", tmp_path / "job" / "config.json", tmp_path / "test_manifest.tsv",
                     shards, tmp_path / "job" / "test.csv", task=task, run=run)
    predict_fold(tmp_path / "direct" / "model.pt", tmp_path / "direct" / "config.json",
                 read_manifest(tmp_path / "test_manifest.tsv"), shard_paths, tmp_path / "direct" / "test.csv")
    assert (tmp_path / "job" / "test.csv").read_bytes() == (tmp_path / "direct" / "test.csv").read_bytes()
    return pd.read_csv(tmp_path / "job" / "test.csv")


def test_a_fused_clip_run_from_paths_equals_train_fold(tmp_path):
    rng = np.random.default_rng(0)
    rows, vis, aud = [], {}, {}
    for i in range(1, 21):
        n = int(rng.integers(4, 12))
        vis[i] = (rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) / 10)
        aud[i] = (rng.normal(size=(2 * n, 2)).astype(np.float32), np.arange(2 * n) / 20)
        test = i > 16
        rows.append({"id": i, "split": "test" if test else "train", "subject": "", "media": f"/m/{i}.mp4",
                     "fold": -1 if test else i % 2,
                     **{t: np.nan if test else float(rng.uniform()) for t in EMI_TARGETS}})
    manifest = pd.DataFrame(rows)
    write_manifest(manifest, tmp_path / "manifest.tsv")
    shards = [_shard(tmp_path, "aud", aud), _shard(tmp_path, "vis", vis)]  # as the rule lists them: any order
    run = {"backbone": "vis", "fuse_with": ["aud"], "model": "fusion", "epochs": 2, "batch_size": 4,
           "model_params": {"encoder": "tcn", "hidden": 4, "tcn_layers": 1, "fusion_dim": 4}}
    metrics = train_fold_job(tmp_path / "manifest.tsv", shards, 1, tmp_path / "job", task="emi", run=run, seed=7,
                             k_folds=2, frame_labels=None, branch_models=[])
    settings = TrainSettings(model="fusion", task="emi", epochs=2, batch_size=4, seed=7,
                             model_params=run["model_params"])
    direct = train_fold(read_manifest(tmp_path / "manifest.tsv"), {"vis": [shards[1]], "aud": [shards[0]]}, 1,
                        tmp_path / "direct",
                        targets=list(EMI_TARGETS), settings=settings, k_folds=2, metric="pearson")
    assert json.dumps(metrics) == json.dumps(direct)
    assert metrics["task"] == "emi" and metrics["oof_score"]["metric"] == "pearson"
    _same_outputs(tmp_path / "job", tmp_path / "direct")
    test = _same_test_tables(tmp_path, manifest, shards, {"vis": [shards[1]], "aud": [shards[0]]}, "emi", run)
    assert test["id"].tolist() == [17, 18, 19, 20]


def test_a_per_frame_run_reads_the_frame_label_table(tmp_path):
    rng = np.random.default_rng(1)
    rows, clips, labels = [], {}, []
    for i in range(1, 11):
        n = 20
        clips[i] = (rng.normal(size=(n, 3)).astype(np.float32), np.arange(n) / 30)
        test = i > 8
        rows.append({"id": i, "split": "test" if test else "train", "subject": "", "media": f"/m/{i}.mp4",
                     "name": f"v{i}", "labels": "" if test else f"/a/{i}.txt", "fps": 30.0, "frames": n,
                     "crops": "", "fold": -1 if test else i % 2})
        if not test:
            labels.append(pd.DataFrame({"id": i, "frame": np.arange(1, n + 1),
                                        **{t: rng.uniform(-1, 1, n) for t in VA_TARGETS}}))
    manifest = pd.DataFrame(rows)
    write_manifest(manifest, tmp_path / "manifest.tsv")
    table = pd.concat(labels, ignore_index=True)
    table.to_csv(tmp_path / "frame_labels.csv.gz", index=False)
    table = pd.read_csv(tmp_path / "frame_labels.csv.gz")  # what the job reads
    shards = [_shard(tmp_path, "vis", clips)]
    run = {"backbone": "vis", "model": "gru@2", "loss": "ccc", "epochs": 2, "batch_size": 4,
           "model_params": {"hidden": 4, "per_frame": True}}
    with pytest.raises(ValueError, match="frame_labels"):  # a per-frame task without its labels
        train_fold_job(tmp_path / "manifest.tsv", shards, 0, tmp_path / "none", task="va", run=run, seed=0,
                       k_folds=2)
    metrics = train_fold_job(tmp_path / "manifest.tsv", shards, 0, tmp_path / "job", task="va", run=run, seed=0,
                             k_folds=2, frame_labels=tmp_path / "frame_labels.csv.gz")
    settings = TrainSettings(model="gru@2", task="va", loss="ccc", epochs=2, batch_size=4,
                             model_params=run["model_params"])
    train_fold(read_manifest(tmp_path / "manifest.tsv"), {"vis": shards}, 0, tmp_path / "direct",
               targets=list(VA_TARGETS), settings=settings, k_folds=2, frame_labels=table, metric="ccc")
    assert metrics["oof_score"]["metric"] == "ccc" and metrics["oof_rows"] == 4 * 20
    _same_outputs(tmp_path / "job", tmp_path / "direct")
    test = _same_test_tables(tmp_path, manifest, shards, {"vis": shards}, "va", run)
    assert test[["id", "frame"]].values.tolist() == [[i, k] for i in (9, 10) for k in range(1, 21)]


def test_the_runs_branch_models_must_match_its_init_branches(tmp_path):
    run = {"backbone": "vis", "fuse_with": ["aud"], "model": "fusion", "init_branches": ["v", "a"]}
    with pytest.raises(ValueError, match=r"init_branches names 2 run\(s\) \(v, a\) but 1 checkpoint"):
        train_fold_job(tmp_path / "manifest.tsv", [], 0, tmp_path / "x", task="emi", run=run, seed=0, k_folds=2,
                       branch_models=["r/v/fold0/model.pt"])
