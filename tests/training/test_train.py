"""Tests of training one fold, the temporal models and the late-fusion ensemble."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from affectflow.ensemble import build_ensemble
from affectflow.h5store import ShardWriter
from affectflow.models import create_model
from affectflow.registry import UnknownNameError
from affectflow.tasks import EMI_TARGETS, task_spec
from affectflow.training.fold import train_fold
from affectflow.training.predict import predict_fold
from affectflow.training.sequences import load_features
from affectflow.training.settings import TrainSettings

TARGETS = list(EMI_TARGETS)
D = 8  # 6 signal dimensions + 2 noise dimensions
MAX_STEPS = 24
EMPTY_LABELLED, EMPTY_TEST = 6, 1005  # 6 is in fold 0


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def settings(**overrides) -> TrainSettings:
    base = dict(model="gru", model_params={"hidden": 32, "dropout": 0.0}, epochs=40, lr=0.01, batch_size=16,
                max_steps=MAX_STEPS, seed=3)
    return TrainSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two feature shards and a manifest; label j = sigmoid(mean over time of feature j)."""
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(42)
    labelled_ids = list(range(1, 81))
    test_ids = list(range(1001, 1011))
    sequences, rows = {}, []
    for clip_id in labelled_ids + test_ids:
        is_test = clip_id in test_ids
        if clip_id in (EMPTY_LABELLED, EMPTY_TEST):
            seq = np.zeros((0, D), np.float32)
        else:
            # test clips fit in max_steps (no subsampling), training clips may be longer
            n = int(rng.integers(5, MAX_STEPS if is_test else 40))
            latent = rng.normal(0, 1, 6)
            seq = np.concatenate([latent + rng.normal(0, 0.5, (n, 6)), rng.normal(0, 1, (n, 2))], axis=1)
            seq = seq.astype(np.float32)
        sequences[clip_id] = seq
        labels = sigmoid(seq[:, :6].mean(0)) if len(seq) else np.full(6, 0.5)
        rows.append({
            "id": clip_id,
            "split": "test" if is_test else ("train" if clip_id % 4 else "val"),
            "subject": "",
            "media": f"/raw/{clip_id:05d}.mp4",
            "fold": -1 if is_test else clip_id % 2,
            **({t: np.nan for t in TARGETS} if is_test else dict(zip(TARGETS, labels, strict=True))),
        })
    manifest = pd.DataFrame(rows)
    shards = [d / "shard-0.h5", d / "shard-1.h5"]
    for s, path in enumerate(shards):
        with ShardWriter(path, file_attrs={"stage": "features", "backbone": "fake"}) as writer:
            for clip_id, seq in sequences.items():
                if clip_id % 2 == s:
                    writer.add_clip(clip_id, {"features": seq, "timestamps": np.arange(len(seq)) / 10.0})
    return manifest, [str(p) for p in shards], sequences


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    manifest, shards, _ = data
    out = tmp_path_factory.mktemp("fold0")
    metrics = train_fold(manifest, shards, 0, out, targets=TARGETS, k_folds=2, settings=settings())
    return out, metrics


def predict_test(fold_dir, manifest, shards) -> pd.DataFrame:
    """The fold's test table, as the test prediction step writes it (next to the fold's directory)."""
    out_csv = fold_dir.parent / f"{fold_dir.name}-test.csv"
    predict_fold(fold_dir / "model.pt", fold_dir / "config.json", manifest[manifest["split"] == "test"], shards,
                 out_csv)
    return pd.read_csv(out_csv)


def test_load_features_reads_every_clip(data):
    manifest, shards, sequences = data
    loaded = load_features(shards)
    assert set(loaded) == set(sequences)
    assert all(isinstance(k, int) for k in loaded)
    for clip_id, seq in sequences.items():
        assert loaded[clip_id].dtype == np.float32
        np.testing.assert_array_equal(loaded[clip_id], seq)


def test_train_fold_learns_planted_signal(trained, data):
    manifest, _, _ = data
    out, metrics = trained
    fold0 = manifest[manifest["fold"] == 0]
    assert metrics["fold"] == 0
    assert metrics["train_clips"] == int((manifest["fold"] == 1).sum())
    assert metrics["oof_clips"] == len(fold0)
    assert metrics["oof_clips_predicted"] == len(fold0) - 1  # the empty clip has no prediction
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]

    # recompute the OOF Pearson from the written file and the manifest
    oof = pd.read_csv(out / "oof.csv").dropna()
    truth = manifest.set_index("id").loc[oof["id"], TARGETS]
    pearson = [np.corrcoef(truth[t], oof[t])[0, 1] for t in TARGETS]
    assert np.mean(pearson) > 0.8
    assert metrics["oof_score"]["metric"] == "pearson"
    assert metrics["oof_score"]["mean"] == pytest.approx(np.mean(pearson), abs=1e-4)
    assert set(metrics["oof_score"]["per_target"]) == set(TARGETS)


def test_train_fold_outputs(trained, data):
    manifest, shards, _ = data
    out, metrics = trained
    assert {p.name for p in out.iterdir()} == {"oof.csv", "metrics.json", "model.pt", "config.json"}
    assert json.loads((out / "metrics.json").read_text())["oof_clips"] == metrics["oof_clips"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "gru" and config["targets"] == TARGETS and config["input_dim"] == D
    assert config["max_steps"] == MAX_STEPS

    oof = pd.read_csv(out / "oof.csv")
    test = predict_test(out, manifest, shards)
    assert list(oof.columns) == ["id", *TARGETS] == list(test.columns)
    assert sorted(oof["id"]) == sorted(manifest.loc[manifest["fold"] == 0, "id"])
    assert sorted(test["id"]) == sorted(manifest.loc[manifest["split"] == "test", "id"])
    # the clips without features get NaN, every other clip a value in (0, 1)
    assert oof.set_index("id").loc[EMPTY_LABELLED].isna().all()
    assert test.set_index("id").loc[EMPTY_TEST].isna().all()
    for frame, empty in ((oof, EMPTY_LABELLED), (test, EMPTY_TEST)):
        values = frame[frame["id"] != empty][TARGETS].to_numpy()
        assert np.isfinite(values).all()
        assert ((values > 0) & (values < 1)).all()


def test_saved_model_reproduces_test_predictions(trained, data):
    manifest, shards, sequences = data
    out, _ = trained
    saved = torch.load(out / "model.pt", weights_only=True)
    config = json.loads((out / "config.json").read_text())
    model = create_model(config["model"], input_dim=config["input_dim"], output_dim=len(config["targets"]),
                         **config["model_params"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    mean, std = saved["mean"].numpy(), saved["std"].numpy()
    assert mean.shape == (D,) and std.shape == (D,)

    test = predict_test(out, manifest, shards).set_index("id")
    for clip_id in test.index:
        if clip_id == EMPTY_TEST:
            continue
        # one clip at a time, unpadded: padding must not change a prediction
        x = torch.from_numpy(((sequences[clip_id] - mean) / std).astype(np.float32))[None]
        with torch.no_grad():
            pred = model(x, torch.ones(1, len(x[0]), dtype=torch.bool)).numpy()[0]
        np.testing.assert_allclose(pred, test.loc[clip_id, TARGETS].to_numpy(float), atol=2e-5)


def test_train_fold_is_deterministic(data, tmp_path):
    manifest, shards, _ = data
    quick = settings(epochs=5)
    train_fold(manifest, shards, 1, tmp_path / "a", targets=TARGETS, k_folds=2, settings=quick)
    train_fold(manifest, shards, 1, tmp_path / "b", targets=TARGETS, k_folds=2, settings=quick)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "oof.csv"), pd.read_csv(tmp_path / "b" / "oof.csv"))
    test_a = predict_test(tmp_path / "a", manifest, shards)
    pd.testing.assert_frame_equal(test_a, predict_test(tmp_path / "b", manifest, shards))
    # and the seed matters
    train_fold(manifest, shards, 1, tmp_path / "c", targets=TARGETS, k_folds=2, settings=settings(epochs=5, seed=4))
    c = predict_test(tmp_path / "c", manifest, shards)
    assert not np.allclose(c[TARGETS].fillna(0), test_a[TARGETS].fillna(0))


def test_train_fold_needs_training_clips(data, tmp_path):
    manifest, shards, _ = data
    few = manifest[(manifest["fold"] != 1) | (manifest["id"] == 1)]
    with pytest.raises(ValueError, match="training clips"):
        train_fold(few, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=settings(epochs=1))
    assert not any(tmp_path.iterdir())


def test_create_model_shapes_and_unknown_name():
    model = create_model("gru", input_dim=5, output_dim=6, hidden=8)
    x = torch.randn(3, 7, 5)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    y = model.eval()(x, mask)
    assert y.shape == (3, 6)
    assert ((y > 0) & (y < 1)).all()
    # masked steps at the end do not change the output
    x2 = x.clone()
    x2[1, 4:] = 1000.0
    torch.testing.assert_close(model(x2, mask), y)
    with pytest.raises(UnknownNameError, match="gru"):
        create_model("transformer-xxl", input_dim=5, output_dim=6)


# -- late fusion ----------------------------------------------------------------------------


def write_fold(path, oof: pd.DataFrame, test: pd.DataFrame) -> str:
    path.mkdir(parents=True)
    oof.to_csv(path / "oof.csv", index=False)
    test.to_csv(path / "test.csv", index=False)
    return str(path)


def predictions(ids, rng, nan_ids=()):
    frame = pd.DataFrame({"id": ids})
    frame[TARGETS] = rng.uniform(0, 1, (len(ids), len(TARGETS)))
    frame.loc[frame["id"].isin(nan_ids), TARGETS] = np.nan
    return frame


def test_mean_ensemble_averages_runs(tmp_path):
    rng = np.random.default_rng(7)
    labelled = list(range(1, 21))
    test_ids = [101, 102, 103, 104]
    manifest = pd.DataFrame({"id": labelled + test_ids, "split": ["train"] * 20 + ["test"] * 4,
                             "fold": [i % 2 for i in labelled] + [-1] * 4})
    manifest[TARGETS] = np.vstack([rng.uniform(0, 1, (20, 6)), np.full((4, 6), np.nan)])

    runs = {}
    for run in ("a", "b"):
        dirs = []
        for k in (0, 1):
            fold_ids = [i for i in labelled if i % 2 == k]
            # run b: clip 3 (no face) and test clip 103 have no prediction; clip 104 is missing entirely
            nan_ids = (3, 103) if run == "b" else ()
            tests = [i for i in test_ids if not (run == "b" and i == 104)]
            dirs.append(write_fold(tmp_path / run / f"fold{k}", predictions(fold_ids, rng, nan_ids),
                                   predictions(tests, rng, nan_ids)))
        runs[run] = dirs

    out = tmp_path / "fused"
    score = build_ensemble(runs, manifest, out, spec=task_spec("emi"), method="mean")

    def run_test(dirs):
        frames = pd.concat([pd.read_csv(f"{d}/test.csv") for d in dirs])
        return frames.groupby("id")[TARGETS].mean()

    def run_oof(dirs):
        return pd.concat([pd.read_csv(f"{d}/oof.csv") for d in dirs]).set_index("id").sort_index()

    expected_test = pd.concat([run_test(runs["a"]), run_test(runs["b"])]).groupby(level=0).mean()
    fused_test = pd.read_csv(out / "test.csv").set_index("id")
    assert list(fused_test.index) == test_ids
    np.testing.assert_allclose(fused_test[TARGETS].to_numpy(), expected_test.loc[test_ids, TARGETS].to_numpy(),
                               atol=2e-6)
    # a clip predicted by one run only takes that run's value
    a_test = run_test(runs["a"])
    for only_a in (103, 104):
        np.testing.assert_allclose(fused_test.loc[only_a, TARGETS].to_numpy(float),
                                   a_test.loc[only_a, TARGETS].to_numpy(float), atol=2e-6)
    # fold mean within a run: clip 101 of run a is the mean of its two fold models
    a0 = pd.read_csv(f"{runs['a'][0]}/test.csv").set_index("id")
    a1 = pd.read_csv(f"{runs['a'][1]}/test.csv").set_index("id")
    b0 = pd.read_csv(f"{runs['b'][0]}/test.csv").set_index("id")
    b1 = pd.read_csv(f"{runs['b'][1]}/test.csv").set_index("id")
    by_hand = ((a0.loc[101] + a1.loc[101]) / 2 + (b0.loc[101] + b1.loc[101]) / 2) / 2
    np.testing.assert_allclose(fused_test.loc[101, TARGETS].to_numpy(float), by_hand[TARGETS].to_numpy(float),
                               atol=2e-6)

    fused_oof = pd.read_csv(out / "oof.csv").set_index("id")
    oof_a, oof_b = run_oof(runs["a"]), run_oof(runs["b"])
    expected_oof = (oof_a[TARGETS] + oof_b[TARGETS]) / 2
    expected_oof.loc[3] = oof_a.loc[3, TARGETS]
    assert list(fused_oof.index) == labelled
    np.testing.assert_allclose(fused_oof[TARGETS].to_numpy(), expected_oof.loc[labelled, TARGETS].to_numpy(),
                               atol=2e-6)

    truth = manifest.set_index("id").loc[labelled, TARGETS]
    fused_pearson = np.mean([np.corrcoef(truth[t], expected_oof.loc[labelled, t])[0, 1] for t in TARGETS])
    assert score["method"] == "mean"
    assert score["oof"]["rows"] == 20
    assert score["oof"]["mean"] == pytest.approx(fused_pearson, abs=1e-4)
    scored_b = oof_b.dropna()
    b_pearson = np.mean([np.corrcoef(truth.loc[scored_b.index, t], scored_b[t])[0, 1] for t in TARGETS])
    assert score["members"]["b"]["rows"] == 19
    assert score["members"]["b"]["mean"] == pytest.approx(b_pearson, abs=1e-4)

    chosen = json.loads((out / "members.json").read_text())
    assert chosen["method"] == "mean" and chosen["weights"] == {t: {"a": 0.5, "b": 0.5} for t in TARGETS}
    assert json.loads((out / "score.json").read_text())["oof"]["rows"] == 20


def test_mean_ensemble_of_one_run_is_that_run(tmp_path):
    rng = np.random.default_rng(1)
    manifest = pd.DataFrame({"id": [1, 2, 3, 4, 9], "split": ["train"] * 4 + ["test"], "fold": [0, 1, 0, 1, -1]})
    manifest[TARGETS] = rng.uniform(0, 1, (5, 6))
    dirs = [write_fold(tmp_path / f"f{k}", predictions([i for i in (1, 2, 3, 4) if i % 2 != k], rng),
                       predictions([9], rng)) for k in (0, 1)]
    build_ensemble({"only": dirs}, manifest, tmp_path / "out", spec=task_spec("emi"), method="mean")
    fused = pd.read_csv(tmp_path / "out" / "test.csv").set_index("id")
    t0, t1 = (pd.read_csv(f"{d}/test.csv").set_index("id") for d in dirs)
    np.testing.assert_allclose(fused.loc[9, TARGETS].to_numpy(float),
                               ((t0.loc[9] + t1.loc[9]) / 2)[TARGETS].to_numpy(float), atol=2e-6)


# -- fold schemes, resume and recipes through train_fold --------------------------------------------


def test_official_and_mix_schemes_through_train_fold(data, tmp_path):
    manifest, shards, _ = data
    quick = settings(epochs=3, fold_scheme="official")
    metrics = train_fold(manifest, shards, 0, tmp_path / "official", targets=TARGETS, k_folds=2, settings=quick)
    oof = pd.read_csv(tmp_path / "official" / "oof.csv")
    val_ids = manifest.loc[manifest["split"] == "val", "id"]
    assert sorted(oof["id"]) == sorted(val_ids)
    assert metrics["train_clips"] == int((manifest["split"] == "train").sum()) - (EMPTY_LABELLED % 4 != 0)
    mix = train_fold(manifest, shards, 0, tmp_path / "mix", targets=TARGETS, k_folds=2,
                     settings=settings(epochs=3, fold_scheme="mix"))
    assert mix["oof_clips"] == 0 and np.isnan(mix["oof_score"]["mean"])
    assert mix["train_clips"] == int((manifest["split"] != "test").sum()) - 1
    assert len(predict_test(tmp_path / "mix", manifest, shards)) == 10


def test_train_fold_resumes_after_a_kill(data, tmp_path):
    from affectflow.training.loop import Interrupted

    manifest, shards, _ = data
    quick = settings(epochs=4, model="tcn", model_params={"hidden": 16, "tcn_layers": 2, "dropout": 0.3},
                     scheduler="cosine")
    train_fold(manifest, shards, 1, tmp_path / "ref", targets=TARGETS, k_folds=2, settings=quick)

    def kill(epoch, history):
        if epoch == 1:
            raise Interrupted("SIGKILL stand-in")

    with pytest.raises(Interrupted):
        train_fold(manifest, shards, 1, tmp_path / "run", targets=TARGETS, k_folds=2, settings=quick, callback=kill)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    assert not (tmp_path / "run" / "oof.csv").exists() and not (tmp_path / "run" / "model.pt").exists()
    train_fold(manifest, shards, 1, tmp_path / "run", targets=TARGETS, k_folds=2, settings=quick)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "oof.csv"), pd.read_csv(tmp_path / "ref" / "oof.csv"))
    pd.testing.assert_frame_equal(predict_test(tmp_path / "run", manifest, shards),
                                  predict_test(tmp_path / "ref", manifest, shards))


def test_align_modalities_by_nearest_time():
    from affectflow.training.sequences import align_modalities

    video = (np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0.0, 0.1, 0.2, 0.3]))
    audio = (np.array([[10.0], [11.0], [12.0]], np.float32), np.array([0.0, 0.14, 0.31]))
    out = align_modalities([video, audio], [2, 1])
    np.testing.assert_array_equal(out[:, :2], video[0])
    assert out[:, 2].tolist() == [10.0, 11.0, 11.0, 12.0]  # 0.1 -> 0.14, 0.2 -> 0.14, 0.3 -> 0.31
    no_face = align_modalities([(np.zeros((0, 2), np.float32), np.zeros(0)), audio], [2, 1])
    assert no_face.shape == (3, 3) and (no_face[:, :2] == 0).all() and no_face[:, 2].tolist() == [10, 11, 12]


def test_fused_backbones_through_train_fold(data, tmp_path):
    from affectflow.training.sequences import shards_by_backbone

    manifest, shards, sequences = data
    rng = np.random.default_rng(5)
    audio_dir = tmp_path / "features" / "audio"
    audio_dir.mkdir(parents=True)
    audio_path = audio_dir / "shard-0.h5"
    with ShardWriter(audio_path, file_attrs={"stage": "features", "backbone": "audio"}) as writer:
        for clip_id in sequences:
            n = 30
            writer.add_clip(clip_id, {"features": rng.normal(size=(n, 3)).astype(np.float32),
                                      "timestamps": np.arange(n) / 20.0})
    grouped = {"visual": shards, "audio": [str(audio_path)]}
    s = settings(model="fusion", epochs=12, lr=0.01,
                 model_params={"encoder": "tcn", "hidden": 16, "tcn_layers": 2, "fusion_dim": 16,
                               "modality_dropout": {"p_m": 0.9, "p_v": 0.5}, "sigmoid": True})
    metrics = train_fold(manifest, grouped, 0, tmp_path / "fold0", targets=TARGETS, k_folds=2, settings=s)
    config = json.loads((tmp_path / "fold0" / "config.json").read_text())
    assert config["model_params"]["modality_dims"] == [D, 3] and config["input_dim"] == D + 3
    assert metrics["oof_clips_predicted"] == metrics["oof_clips"]  # the faceless clip has audio
    assert metrics["oof_score"]["mean"] > 0.6  # the signal lives in the visual modality only
    test = predict_test(tmp_path / "fold0", manifest, grouped).set_index("id")
    assert sorted(test.index) == sorted(manifest.loc[manifest["split"] == "test", "id"])
    assert not test[TARGETS].isna().any().any()  # the faceless test clip is predicted from its audio
    with pytest.raises(ValueError, match=r"\['video'\]"):
        shards_by_backbone([str(audio_path)], ["audio", "video"])
