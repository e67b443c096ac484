"""Features read as a job needs them (affectflow.training.track_store): the stored tracks are the
shards' features (one backbone, or fused on one timeline), the fold statistics those of the
concatenated tracks, views read the rows a batch needs normalised; a fold reads its out-of-fold
tracks only when it predicts them; the memmap and in-memory loaders train identical folds, and a
killed per-frame fold resumes to identical weights."""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import pytest
import torch
from test_predict import _shard, _va_data, clip_data  # noqa: F401  (clip_data: a fixture)
from test_train_loop import one_thread  # noqa: F401  (autouse: one intra-op thread, as the loop tests)

import affectflow.training.fold as fold_module
import affectflow.training.tracks as tracks_module
from affectflow.data import read_manifest, write_manifest
from affectflow.tasks import EMI_TARGETS
from affectflow.training import checkpoints
from affectflow.training.fold import train_fold, train_fold_job
from affectflow.training.loop import Interrupted
from affectflow.training.sequences import align_modalities, load_features
from affectflow.training.settings import TrainSettings, settings_from_run
from affectflow.training.track_store import as_tensor, fold_mean_std, index_tracks, store_tracks

EMI = list(EMI_TARGETS)


@pytest.fixture
def two_backbones(tmp_path):
    """Clips of a 4-d backbone at 10 steps/s and a 3-d one at 4 steps/s (clip 3: no steps in the
    first, clip 4: none in the second), over two shards each, plus a clip the job does not list."""
    rng = np.random.default_rng(0)
    vis, aud = {}, {}
    for i in range(1, 8):
        n_vis = 0 if i == 3 else int(rng.integers(5, 30))
        n_aud = 0 if i == 4 else int(rng.integers(2, 12))
        vis[i] = (rng.normal(0, 2, (n_vis, 4)).astype(np.float32), np.arange(n_vis) / 10.0)
        aud[i] = (rng.normal(1, 3, (n_aud, 3)).astype(np.float32), np.arange(n_aud) / 4.0)
    shards = {key: [_shard(tmp_path, key, {i: c for i, c in clips.items() if i % 2 == part}, f"shard-{part}.h5")
                    for part in (0, 1)] for key, clips in (("vis", vis), ("aud", aud))}
    return shards, vis, aud


@pytest.mark.parametrize("loader", ["memmap", "memory"])
def test_the_store_holds_the_shards_features(two_backbones, loader, tmp_path, monkeypatch):
    shards, vis, aud = two_backbones
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read $TMPDIR
    listed = [1, 2, 3, 4, 5, 6]  # clip 7 is not this job's
    # one backbone: the shards' arrays as load_features reads them
    alone = load_features(shards["vis"])
    index = index_tracks(shards["vis"], listed)
    assert sorted(index.times) == listed and index.dims == [4]
    store = store_tracks(index, listed, loader=loader)
    assert isinstance(store.array, np.memmap) == (loader == "memmap")
    assert sorted(store.rows) == [1, 2, 4, 5, 6]  # clip 3 has no steps: nothing stored
    for i in store.rows:
        np.testing.assert_array_equal(as_tensor(store.view(i)).numpy(), alone[i])
        np.testing.assert_array_equal(store.track(i), alone[i])
    # fused: the first backbone's timeline (the second's where the first has no steps), nearest step
    fused = index_tracks({"vis": shards["vis"], "aud": shards["aud"]}, listed)
    assert fused.dims == [4, 3]
    store = store_tracks(fused, listed, loader=loader)
    assert sorted(store.rows) == listed
    for i in listed:
        expected = align_modalities([vis[i], aud[i]], [4, 3])
        np.testing.assert_array_equal(as_tensor(store.view(i)).numpy(), expected)
        np.testing.assert_array_equal(fused.times[i], (vis[i] if len(vis[i][0]) else aud[i])[1])
    assert os.listdir(tmp_path / "tmp") == []  # the memmap's file is unlinked at once: a kill leaves nothing


def test_fold_statistics_are_those_of_the_concatenated_tracks(two_backbones):
    shards, vis, _ = two_backbones
    index = index_tracks(shards["vis"], range(1, 8))
    early, late = store_tracks(index, [1, 2]), store_tracks(index, [4, 5, 6, 7])
    ids = [6, 1, 4, 2]
    mean, std = fold_mean_std([early, late], ids)
    stacked = np.concatenate([vis[i][0] for i in ids]).astype(np.float64)
    np.testing.assert_allclose(mean, stacked.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, stacked.std(0) + 1e-6, rtol=1e-5)


def test_a_normalised_store_and_its_views_read_the_rows_asked_for(two_backbones):
    shards, vis, _ = two_backbones
    index = index_tracks(shards["vis"], [2, 5])
    store = store_tracks(index, [2, 5], loader="memory")
    mean, std = np.array([1, -1, 0, 2], np.float32), np.array([2, 1, 4, 0.5], np.float32)
    x = ((vis[5][0] - mean) / std).astype(np.float32)
    store.normalise(mean, std)
    np.testing.assert_array_equal(store.track(2), ((vis[2][0] - mean) / std).astype(np.float32))
    view = store.view(5)
    assert len(view) == len(x) and view.shape == x.shape
    np.testing.assert_array_equal(view.read().numpy(), x)
    np.testing.assert_array_equal(view[3:9].read().numpy(), x[3:9])
    np.testing.assert_array_equal(view[3:9][2:4].read().numpy(), x[5:7])
    np.testing.assert_array_equal(view[len(x) + 2 : len(x) + 9].read().numpy(), x[len(x) + 2 :])  # past the end
    rows = np.array([0, 4, 4, len(x) - 1])
    np.testing.assert_array_equal(view[rows].read().numpy(), x[rows])
    np.testing.assert_array_equal(view[1:][np.array([0, 2])].read().numpy(), x[[1, 3]])


def test_a_full_disk_fails_naming_the_directory_and_the_way_out(two_backbones, monkeypatch, tmp_path):
    shards, _, _ = two_backbones
    index = index_tracks(shards["vis"], [1, 2])

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"need .* GiB in .*TMPDIR.*No space left.*loader: memory"):
        store_tracks(index, [1, 2])
    assert store_tracks(index, [1, 2], loader="memory").rows  # RAM needs no disk


def test_bad_shards_are_refused_naming_what_is_wrong(tmp_path):
    vis = [_shard(tmp_path, "vis", {1: (np.zeros((3, 4), np.float32), np.arange(3.0))}, "shard-0.h5"),
           _shard(tmp_path, "vis", {2: (np.zeros((3, 5), np.float32), np.arange(3.0))}, "shard-1.h5")]
    aud = [_shard(tmp_path, "aud", {1: (np.zeros((3, 2), np.float32), np.arange(3.0))})]
    with pytest.raises(ValueError, match=r"backbone 'vis': feature widths \[4, 5\]"):
        index_tracks({"vis": vis, "aud": aud}, [1, 2])
    # a listed clip in none of a fused backbone's shards: that backbone's width comes from its other clips
    other = [_shard(tmp_path, "other", {9: (np.zeros((2, 6), np.float32), np.arange(2.0))})]
    assert index_tracks({"vis": vis[:1], "other": other}, [1]).dims == [4, 6]
    empty = [_shard(tmp_path, "empty", {})]
    with pytest.raises(ValueError, match=r"backbone 'empty': feature widths \[\]"):
        index_tracks({"vis": vis[:1], "empty": empty}, [1])
    torn = [_shard(tmp_path, "torn", {5: (np.zeros((4, 2), np.float32), np.arange(3.0))})]
    with pytest.raises(ValueError, match=r"torn/shard-0.h5: clip 5 has 4 feature rows but 3 timestamps"):
        index_tracks(torn, [5])


def test_out_of_fold_tracks_are_read_only_when_predicted(clip_data, tmp_path, monkeypatch):  # noqa: F811
    manifest, shards, _, _ = clip_data
    events = []
    real_store, real_fit = tracks_module.store_tracks, fold_module.fit

    def store_spy(index, ids, **kwargs):
        events.append(("read", sorted(int(i) for i in ids)))
        return real_store(index, ids, **kwargs)

    def fit_spy(*args, **kwargs):
        events.append(("fit", None))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tracks_module, "store_tracks", store_spy)
    monkeypatch.setattr(fold_module, "fit", fit_spy)
    labelled = manifest[manifest["split"] != "test"]
    settings = TrainSettings(model="gru", model_params={"hidden": 8}, epochs=1, batch_size=4, seed=1, val_fraction=0.2)
    metrics = train_fold(labelled, shards, 1, tmp_path / "fold1", targets=EMI, k_folds=2, settings=settings)
    oof = {int(i) for i in labelled.loc[labelled["fold"] == 1, "id"]}
    assert [kind for kind, _ in events] == ["read", "fit", "read"]
    before, after = events[0][1], events[2][1]
    assert len(before) == metrics["train_clips"] + metrics["val_clips"] and not set(before) & oof
    assert set(after) == oof - {33}  # every out-of-fold clip with features, after fitting


def _va_job(tmp_path, out, *, loader, callback=None):
    """Fold 0 of a per-frame GRU carrying its state over 8-step windows, on _va_data, through the train rule's call."""
    manifest, labels, shards, _, _ = _va_data(tmp_path)
    write_manifest(manifest[manifest["split"] != "test"], tmp_path / "manifest.tsv")
    labels.to_csv(tmp_path / "frame_labels.csv", index=False)
    run = {"backbone": "vis", "model": "gru@2", "loss": "ccc", "epochs": 4, "batch_size": 4, "segment_length": 8,
           "carry_state": True, "model_params": {"hidden": 8, "per_frame": True}, "loader": loader,
           "monitor": {"metric": "ccc", "split": "heldout"}}
    if callback is not None:  # what train_fold_job calls, with a callback to stop it
        return train_fold(read_manifest(tmp_path / "manifest.tsv"), {"vis": shards}, 0, out,
                          targets=["valence", "arousal"], settings=settings_from_run({"task": "va", **run}, seed=0),
                          k_folds=2, frame_labels=pd.read_csv(tmp_path / "frame_labels.csv"), callback=callback)
    return train_fold_job(tmp_path / "manifest.tsv", shards, 0, out, task="va", run=run, seed=0, k_folds=2,
                          frame_labels=tmp_path / "frame_labels.csv")


def _same_fold(a, b) -> None:
    """Two fold directories with the same OOF table, config, metrics and weights."""
    for name in ("oof.csv", "config.json", "metrics.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    wa, wb = checkpoints.load(a / "model.pt"), checkpoints.load(b / "model.pt")
    assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
    assert torch.equal(wa["mean"], wb["mean"]) and torch.equal(wa["std"], wb["std"])


def test_both_loaders_and_a_resumed_kill_train_the_same_per_frame_fold(tmp_path):
    _va_job(tmp_path, tmp_path / "memmap", loader="memmap")
    _va_job(tmp_path, tmp_path / "memory", loader="memory")
    _same_fold(tmp_path / "memmap", tmp_path / "memory")

    def kill_after_epoch_1(epoch, history):
        if epoch == 1:
            raise Interrupted("killed")

    with pytest.raises(Interrupted):
        _va_job(tmp_path, tmp_path / "killed", loader="memmap", callback=kill_after_epoch_1)
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    _va_job(tmp_path, tmp_path / "killed", loader="memory")  # resumes: the loader is not part of the run's key
    _same_fold(tmp_path / "memmap", tmp_path / "killed")
