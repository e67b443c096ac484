"""Per-frame tasks (VA, AU) through train_fold and predict_fold: labels mapped onto feature steps by
time, predictions written per video frame, OOF scored with the task's metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from affectflow.h5store import ShardWriter
from affectflow.tasks import AU_TARGETS, VA_TARGETS
from affectflow.training.fold import train_fold
from affectflow.training.frames import frame_targets, frames_at_steps, steps_for_frames
from affectflow.training.predict import predict_fold
from affectflow.training.settings import TrainSettings

FEATURE_RATE = 10.0  # feature steps per second (coarser than the video, as after detect_every)
D = 4


def _ccc(t, p):
    # written out here, independent of affectflow.metrics
    return 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


def test_frame_step_mapping_matches_brute_force():
    rng = np.random.default_rng(0)
    times = np.sort(rng.choice(np.arange(0, 300) / 30.0, 80, replace=False))  # gaps: dropped faces
    fps = 25.0
    frames = np.arange(1, 251)
    nearest = steps_for_frames(times, frames, fps)
    shown = frames_at_steps(times, fps)
    for k, step in zip(frames, nearest, strict=True):
        if k in shown:  # a step showing frame k wins
            assert shown[step] == k
        else:  # else the step nearest to the frame's middle (ties either way)
            middle = (k - 0.5) / fps
            assert abs(times[step] - middle) == pytest.approx(np.abs(times - middle).min())
    shown = frames_at_steps(np.array([0.0, 0.039, 0.04, 1.0]), 25.0)
    assert shown.tolist() == [1, 1, 2, 26]


@pytest.mark.parametrize("video_fps", [30000 / 1001, 25.0, 30.0, 60.0])
def test_prediction_reads_the_step_training_labelled_with_that_frame(video_fps):
    # features at 30/s (the stage's timeline) over a video of another rate: wherever some step
    # shows frame k, frame k's prediction must come from such a step, as its label did in training
    times = np.arange(0, 60, 1 / 30.0)
    frames = np.arange(1, int(60 * video_fps) + 1)
    chosen = steps_for_frames(times, frames, video_fps)
    shown = frames_at_steps(times, video_fps)
    has_step = np.isin(frames, shown)
    assert np.array_equal(shown[chosen[has_step]], frames[has_step])
    # the others (a feature rate below the video's) take the step nearest to the frame's middle
    middle = (frames[~has_step] - 0.5) / video_fps
    brute = np.abs(times[None, :] - middle[:, None]).min(1)
    assert np.allclose(np.abs(times[chosen[~has_step]] - middle), brute)


def test_frame_targets_takes_the_label_of_the_frame_shown_and_nan_elsewhere():
    times = np.array([0.0, 0.1, 0.2, 0.3])  # frames 1, 4, 7, 10 at 30 fps
    frames = np.array([1, 4, 10])
    values = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], np.float32)
    y = frame_targets(times, 30.0, frames, values)
    assert np.allclose(y[[0, 1, 3]], values)
    assert np.isnan(y[2]).all()


def _write(tmp_path, task, targets, n_tracks=24, n_test=3):
    """Tracks whose per-frame label is a function of the current feature step; feature steps at
    10/s, video at 30 fps (so 3 video frames per step); some frames invalid (dropped)."""
    rng = np.random.default_rng(1)
    rows, label_rows, seqs, times = [], [], {}, {}
    for n in range(n_tracks + n_test):
        track_id = 1000 + n
        is_test = n >= n_tracks
        seconds = float(rng.uniform(4, 8))
        t = np.arange(0, seconds, 1 / FEATURE_RATE)
        x = rng.normal(0, 1, (len(t), D)).astype(np.float32)
        seqs[track_id], times[track_id] = x, t
        n_frames = int(seconds * 30)
        rows.append({"id": track_id, "split": "test" if is_test else ("train" if n % 3 else "val"),
                     "subject": f"video{n // 2}", "media": f"/v/{n // 2}.mp4", "name": f"video{n}",
                     "labels": "" if is_test else f"/a/{n}.txt", "fps": 30.0, "frames": n_frames, "crops": "",
                     "fold": -1 if is_test else n % 2})
        if is_test:
            continue
        k = np.arange(1, n_frames + 1)
        step = np.clip(np.floor((k - 1) / 30.0 * FEATURE_RATE + 1e-6).astype(int), 0, len(t) - 1)
        if task == "va":
            y = np.stack([np.tanh(x[step, 0]), np.tanh(x[step, 1] - x[step, 2])], 1)
        else:
            y = (x[step][:, [j % D for j in range(len(targets))]] > 0).astype(np.float32)
        keep = rng.random(n_frames) > 0.1  # invalid (-5 / -1) frames are absent from the table
        label_rows.append(pd.DataFrame({"id": track_id, "frame": k[keep],
                                        **{c: y[keep, j] for j, c in enumerate(targets)}}))
    shard = tmp_path / "shard-0.h5"
    with ShardWriter(shard, file_attrs={"stage": "features", "backbone": "fake"}) as writer:
        for i in seqs:
            writer.add_clip(i, {"features": seqs[i], "timestamps": times[i]})
    return pd.DataFrame(rows), pd.concat(label_rows, ignore_index=True), [str(shard)]


def _predict_test(fold_dir, manifest, shards) -> pd.DataFrame:
    """The fold's per-frame test table, as the test prediction step writes it."""
    out_csv = fold_dir.parent / f"{fold_dir.name}-test.csv"
    predict_fold(fold_dir / "model.pt", fold_dir / "config.json", manifest[manifest["split"] == "test"], shards,
                 out_csv)
    return pd.read_csv(out_csv)


@pytest.mark.parametrize("task", ["va", "au"])
def test_per_frame_train_fold_learns_and_predicts_every_frame(tmp_path, task):
    targets = list(VA_TARGETS if task == "va" else AU_TARGETS)
    manifest, labels, shards = _write(tmp_path, task, targets)
    s = TrainSettings(model="gru@2", task=task, loss="ccc" if task == "va" else "bce", epochs=30, lr=0.01,
                      batch_size=8, segment_length=20, segment_stride=20, seed=0,
                      model_params={"hidden": 32, "per_frame": True, "sigmoid": task == "au"})
    metrics = train_fold(manifest, shards, 0, tmp_path / "fold0", targets=targets, k_folds=2, settings=s,
                         frame_labels=labels)
    oof = pd.read_csv(tmp_path / "fold0" / "oof.csv")
    test = _predict_test(tmp_path / "fold0", manifest, shards)
    assert list(oof.columns) == ["id", "frame", *targets]
    # OOF rows are exactly the labelled frames of fold 0's tracks
    fold0 = manifest.loc[manifest["fold"] == 0, "id"]
    expected = labels[labels["id"].isin(fold0)][["id", "frame"]].sort_values(["id", "frame"])
    assert oof[["id", "frame"]].sort_values(["id", "frame"]).to_numpy().tolist() == expected.to_numpy().tolist()
    # test rows: every frame 1..frames of every test track
    for _, row in manifest[manifest["split"] == "test"].iterrows():
        assert test.loc[test["id"] == row["id"], "frame"].tolist() == list(range(1, row["frames"] + 1))
    assert not test[targets].isna().any().any()
    truth = oof.merge(labels, on=["id", "frame"], suffixes=("", "_true"))
    if task == "va":
        scores = [_ccc(truth[f"{c}_true"].to_numpy(), truth[c].to_numpy()) for c in targets]
        assert metrics["oof_score"]["metric"] == "ccc"
        assert metrics["oof_score"]["mean"] == pytest.approx(np.mean(scores), abs=1e-4)
        assert np.mean(scores) > 0.5
    else:
        f1 = f1_score(truth[[f"{c}_true" for c in targets]].to_numpy().astype(int),
                      (truth[targets].to_numpy() >= 0.5).astype(int), average="macro", zero_division=0)
        assert metrics["oof_score"]["metric"] == "f1"
        assert metrics["oof_score"]["mean"] == pytest.approx(f1, abs=1e-4)
        assert f1 > 0.7


def test_per_frame_task_without_frame_labels_is_refused(tmp_path):
    manifest, _, shards = _write(tmp_path, "va", list(VA_TARGETS), n_tracks=4, n_test=1)
    s = TrainSettings(model="gru@2", task="va", model_params={"per_frame": True})
    with pytest.raises(ValueError, match="frame_labels"):
        train_fold(manifest, shards, 0, tmp_path / "x", targets=list(VA_TARGETS), k_folds=2, settings=s)


def test_tracks_without_frame_rate_or_count_do_not_break_the_fold(tmp_path, caplog):
    targets = list(VA_TARGETS)
    manifest, labels, shards = _write(tmp_path, "va", targets, n_tracks=8, n_test=2)
    no_rate = int(manifest.loc[manifest["split"] != "test", "id"].iloc[0])
    test_ids = manifest.loc[manifest["split"] == "test", "id"].tolist()
    manifest.loc[manifest["id"] == no_rate, "fps"] = np.nan  # the probe failed
    manifest.loc[manifest["id"] == test_ids[0], "frames"] = 0  # no frame count in the container
    s = TrainSettings(model="gru@2", task="va", loss="ccc", epochs=2, batch_size=4, seed=0,
                      model_params={"hidden": 8, "per_frame": True})
    with caplog.at_level("WARNING", logger="affectflow.training.tracks"):
        metrics = train_fold(manifest, shards, 0, tmp_path / "f", targets=targets, k_folds=2, settings=s,
                             frame_labels=labels)
    assert any("without a usable frame rate" in r.message for r in caplog.records)
    oof = pd.read_csv(tmp_path / "f" / "oof.csv")
    test = _predict_test(tmp_path / "f", manifest, shards)
    if no_rate in set(oof["id"]):  # in this fold's OOF: listed, but not predicted
        assert oof.loc[oof["id"] == no_rate, targets].isna().all().all()
    # the test track without a frame count is predicted up to the frame its last feature step shows
    rows = test[test["id"] == test_ids[0]]
    assert len(rows) > 0 and not rows[targets].isna().any().any()
    assert metrics["train_clips"] >= 1
