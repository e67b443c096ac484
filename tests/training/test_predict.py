"""Test prediction as its own step (affectflow.training.predict): a fold's model.pt + config.json +
the test clips' features give exactly what the trained model in memory gives, for a clip task, a
per-frame task with carried state, and a fused run; training reads no test clip; a damaged
model.pt fails naming the file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import affectflow.training.clip_tracks as clip_tracks_module
import affectflow.training.fold as fold_module
from affectflow.data import write_manifest
from affectflow.h5store import ShardWriter
from affectflow.models import create_model
from affectflow.tasks import EMI_TARGETS, VA_TARGETS
from affectflow.training import checkpoints
from affectflow.training.fold import train_fold, train_fold_job
from affectflow.training.predict import load_fold_model, predict_fold, predict_fold_job
from affectflow.training.settings import TrainSettings

EMI = list(EMI_TARGETS)
VA = list(VA_TARGETS)
FPS = 25.0
MAX_STEPS = 12


def _shard(root, key, clips, name="shard-0.h5"):
    """``clips`` {id: (features, timestamps)} as ``root/features/<key>/<name>``."""
    path = root / "features" / key / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(path, file_attrs={"stage": "features", "backbone": key}) as writer:
        for i, (features, times) in clips.items():
            writer.add_clip(i, {"features": features, "timestamps": times})
    return str(path)


def _spy_fit(monkeypatch):
    """Capture the model train_fold's fit returns: the trained model as it is in memory."""
    captured = {}
    real_fit = fold_module.fit

    def spy(*args, **kwargs):
        model, history = real_fit(*args, **kwargs)
        captured["model"] = model
        return model, history

    monkeypatch.setattr(fold_module, "fit", spy)
    return captured


def _fresh_from_model_pt(fold_dir, model_name, input_dim, output_dim, **params):
    """The fold's weights in a freshly created model (built here from the test's own arguments)."""
    saved = torch.load(fold_dir / "model.pt", weights_only=True)
    model = create_model(model_name, input_dim=input_dim, output_dim=output_dim, **params)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["mean"].numpy(), saved["std"].numpy()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _one_clip(model, x: np.ndarray) -> np.ndarray:
    """A clip model's output for one (T, D) clip, unpadded."""
    with torch.no_grad():
        return model(torch.from_numpy(x)[None], torch.ones(1, len(x), dtype=torch.bool)).float().numpy()[0]


def _uniform(x: np.ndarray, steps: int) -> np.ndarray:
    """At most ``steps`` rows spread evenly over the clip (what a clip model reads of a long clip)."""
    return x if len(x) <= steps else x[np.linspace(0, len(x) - 1, steps).round().astype(int)]


# -- a clip task -----------------------------------------------------------------------------------

@pytest.fixture
def clip_data(tmp_path):
    """30 labelled clips and 6 test clips (one of them without features, two longer than MAX_STEPS),
    labelled and test clips in separate shards as the workflow writes them."""
    rng = np.random.default_rng(3)
    rows, labelled, test = [], {}, {}
    for i in range(1, 37):
        is_test = i > 30
        n = 0 if i == 33 else int(rng.integers(4, 20))
        x = rng.normal(0, 1, (n, 5)).astype(np.float32)
        (test if is_test else labelled)[i] = (x, np.arange(n) / 10.0)
        y = 1 / (1 + np.exp(-x[:, :len(EMI)].mean(0))) if n else np.full(5, 0.5)
        rows.append({"id": i, "split": "test" if is_test else ("train" if i % 3 else "val"), "subject": "",
                     "media": f"/raw/{i}.mp4", "fold": -1 if is_test else i % 2,
                     **{t: np.nan if is_test else float(y[j % 5]) for j, t in enumerate(EMI)}})
    manifest = pd.DataFrame(rows)
    shards = [_shard(tmp_path, "vis", labelled, "shard-0.h5")]
    test_shards = [_shard(tmp_path, "vis", test, "shard-test0.h5")]
    return manifest, shards, test_shards, {**labelled, **test}


def test_a_clip_fold_predicts_the_test_clips_as_the_trained_model_does(clip_data, tmp_path, monkeypatch):
    manifest, shards, test_shards, clips = clip_data
    captured = _spy_fit(monkeypatch)
    params = {"hidden": 16, "dropout": 0.2}
    settings = TrainSettings(model="gru", model_params=params, epochs=3, batch_size=4,
                                         max_steps=MAX_STEPS, seed=1)
    train_fold(manifest[manifest["split"] != "test"], shards, 0, tmp_path / "fold0", targets=EMI, k_folds=2,
               settings=settings)
    assert not (tmp_path / "fold0" / "test.csv").exists()
    test_rows = manifest[manifest["split"] == "test"].iloc[::-1]  # the table keeps the manifest's order
    table = predict_fold(tmp_path / "fold0" / "model.pt", tmp_path / "fold0" / "config.json", test_rows,
                         test_shards, tmp_path / "test.csv")
    written = pd.read_csv(tmp_path / "test.csv")
    assert list(written.columns) == ["id", *EMI]
    assert written["id"].tolist() == test_rows["id"].tolist() == table["id"].tolist()

    in_memory = captured["model"].eval()
    fresh, mean, std = _fresh_from_model_pt(tmp_path / "fold0", "gru", 5, len(EMI), **params)
    _same_weights(fresh, in_memory)
    assert any(len(clips[i][0]) > MAX_STEPS for i in test_rows["id"])  # long clips read subsampled
    for _, row in written.iterrows():
        x = clips[int(row["id"])][0]
        if not len(x):
            assert row[EMI].isna().all()  # no features: no prediction
            continue
        expected = _one_clip(in_memory, _uniform(((x - mean) / std).astype(np.float32), MAX_STEPS))
        np.testing.assert_allclose(row[EMI].to_numpy(float), expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(_one_clip(fresh, _uniform(((x - mean) / std).astype(np.float32), MAX_STEPS)),
                                   expected, rtol=0, atol=1e-6)


def test_training_neither_reads_nor_predicts_test_rows(clip_data, tmp_path, monkeypatch):
    manifest, shards, test_shards, _ = clip_data
    loaded = []
    real_load = clip_tracks_module.load_tracks  # what fold_tracks calls for a run on features

    def spy(table, *args, **kwargs):
        tracks = real_load(table, *args, **kwargs)
        loaded.append((set(table["id"]), tracks))
        return tracks

    monkeypatch.setattr(clip_tracks_module, "load_tracks", spy)
    settings = TrainSettings(model="gru", model_params={"hidden": 8}, epochs=2, batch_size=4, seed=1)
    # every shard, test clips included, and the test rows in the manifest: both are ignored
    train_fold(manifest, shards + test_shards, 1, tmp_path / "all", targets=EMI, k_folds=2, settings=settings)
    labelled = manifest[manifest["split"] != "test"]
    train_fold(labelled, shards, 1, tmp_path / "labelled", targets=EMI, k_folds=2, settings=settings)
    test_ids = set(manifest.loc[manifest["split"] == "test", "id"])
    for listed, tracks in loaded:  # neither indexed nor read
        assert not listed & test_ids and not set(tracks.times) & test_ids and not tracks.stored() & test_ids
    assert {p.name for p in (tmp_path / "all").iterdir()} == {"oof.csv", "model.pt", "config.json", "metrics.json"}
    for name in ("oof.csv", "config.json", "metrics.json"):
        assert (tmp_path / "all" / name).read_bytes() == (tmp_path / "labelled" / name).read_bytes(), name
    assert not set(pd.read_csv(tmp_path / "all" / "oof.csv")["id"]) & test_ids


# -- a per-frame task with segments and carried state ----------------------------------------------

def _va_data(tmp_path):
    """VA tracks with one feature step per video frame (frame k is step k-1); test tracks: one
    without features, one without a frame count, one whose frame count exceeds its steps."""
    rng = np.random.default_rng(4)
    rows, labels, labelled, test = [], [], {}, {}
    for n in range(16):
        i, is_test = 100 + n, n >= 12
        steps = 0 if n == 12 else int(rng.integers(20, 45))
        x = rng.normal(0, 1, (steps, 3)).astype(np.float32)
        (test if is_test else labelled)[i] = (x, np.arange(steps) / FPS)
        frames = {13: 0, 14: steps + 3}.get(n, steps if steps else 30)
        rows.append({"id": i, "split": "test" if is_test else "train", "subject": f"v{n}", "media": f"/v/{n}.mp4",
                     "name": f"v{n}", "labels": "" if is_test else f"/a/{n}.txt", "fps": FPS, "frames": frames,
                     "crops": "", "fold": -1 if is_test else n % 2})
        if not is_test:
            labels.append(pd.DataFrame({"id": i, "frame": np.arange(1, steps + 1),
                                        "valence": np.tanh(x[:, 0]), "arousal": np.tanh(x[:, 1] - x[:, 2])}))
    return (pd.DataFrame(rows), pd.concat(labels, ignore_index=True), [_shard(tmp_path, "vis", labelled)],
            [_shard(tmp_path, "vis", test, "shard-test0.h5")], {**labelled, **test})


def _carried(model, x: np.ndarray, length: int) -> np.ndarray:
    """A per-frame GRU's (T, K) output over one track, window by window, the state carried across."""
    xt, state, pieces = torch.from_numpy(x)[None], None, []
    with torch.no_grad():
        for start in range(0, len(x), length):
            piece = xt[:, start : start + length]
            y, state = model(piece, torch.ones(piece.shape[:2], dtype=torch.bool), state=state, return_state=True)
            pieces.append(y.float()[0])
    return torch.cat(pieces).numpy()


def test_a_per_frame_fold_with_carried_state_predicts_every_frame(tmp_path, monkeypatch):
    manifest, labels, shards, test_shards, tracks = _va_data(tmp_path)
    captured = _spy_fit(monkeypatch)
    params = {"hidden": 8, "per_frame": True}
    run = {"backbone": "vis", "model": "gru@2", "loss": "ccc", "epochs": 2, "batch_size": 4, "segment_length": 8,
           "carry_state": True, "model_params": params}
    labelled = manifest[manifest["split"] != "test"]
    write_manifest(labelled, tmp_path / "manifest.tsv")
    write_manifest(manifest[manifest["split"] == "test"], tmp_path / "test_manifest.tsv")
    labels.to_csv(tmp_path / "frame_labels.csv", index=False)
    train_fold_job(tmp_path / "manifest.tsv", shards, 0, tmp_path / "fold0", task="va", run=run, seed=0, k_folds=2,
                   frame_labels=tmp_path / "frame_labels.csv")
    predict_fold_job(tmp_path / "fold0" / "model.pt", tmp_path / "fold0" / "config.json",
                     tmp_path / "test_manifest.tsv", test_shards, tmp_path / "test.csv", task="va", run=run)
    written = pd.read_csv(tmp_path / "test.csv")
    assert list(written.columns) == ["id", "frame", *VA]

    in_memory = captured["model"].eval()
    fresh, mean, std = _fresh_from_model_pt(tmp_path / "fold0", "gru@2", 3, len(VA), **params)
    _same_weights(fresh, in_memory)
    expected_ids = []
    for _, row in manifest[manifest["split"] == "test"].iterrows():
        i, x = int(row["id"]), tracks[int(row["id"])][0]
        count = row["frames"] or len(x)  # no frame count: up to the frame the last step shows
        expected_ids += [i] * count
        got = written[written["id"] == i]
        assert got["frame"].tolist() == list(range(1, count + 1))
        if not len(x):
            assert got[VA].isna().all().all()
            continue
        per_step = _carried(in_memory, ((x - mean) / std).astype(np.float32), 8)
        np.testing.assert_allclose(_carried(fresh, ((x - mean) / std).astype(np.float32), 8), per_step,
                                   rtol=0, atol=1e-6)
        steps = np.minimum(np.arange(count), len(x) - 1)  # frames past the last step take the last one
        np.testing.assert_allclose(got[VA].to_numpy(float), per_step[steps], rtol=0, atol=1e-6)
    assert written["id"].tolist() == expected_ids
    # no test track: a header-only table, and no shard to read
    write_manifest(manifest.iloc[:0], tmp_path / "no_tests.tsv")
    predict_fold_job(tmp_path / "fold0" / "model.pt", tmp_path / "fold0" / "config.json", tmp_path / "no_tests.tsv",
                     [], tmp_path / "empty.csv", task="va", run=run)
    assert (tmp_path / "empty.csv").read_text().strip() == "id,frame,valence,arousal"


# -- a fused run whose branches were initialised from unimodal models -------------------------------

ENCODER = {"hidden": 8, "tcn_layers": 1, "kernel": 3, "dim": 8, "layers": 1, "heads": 2, "dropout": 0.1}
FUSED = {"fusion": "late_encoders", "encoder": "tcn_transformer", **ENCODER, "fusion_dim": 8,
         "modality_dropout": {"p_m": 0.9, "p_v": 0.5}, "pooling": "attention", "head_hidden": [], "sigmoid": True}


def test_a_fused_fold_predicts_without_its_branch_checkpoints(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    rows, vis, aud = [], {}, {}
    for i in range(1, 27):
        is_test = i > 20
        n = int(rng.integers(4, 10))
        times = np.arange(n) / 10.0
        vis[i] = (rng.normal(size=(n, 4)).astype(np.float32), times)
        aud[i] = (rng.normal(size=(n, 2)).astype(np.float32), times)  # one timeline: fused = side by side
        rows.append({"id": i, "split": "test" if is_test else "train", "subject": "", "media": f"/m/{i}.mp4",
                     "fold": -1 if is_test else i % 2,
                     **{t: np.nan if is_test else float(rng.uniform()) for t in EMI}})
    manifest = pd.DataFrame(rows)
    write_manifest(manifest[manifest["split"] != "test"], tmp_path / "manifest.tsv")
    write_manifest(manifest[manifest["split"] == "test"], tmp_path / "test_manifest.tsv")
    test_ids = [i for i in vis if i > 20]
    shards = [_shard(tmp_path, "aud", {i: aud[i] for i in aud if i <= 20}),
              _shard(tmp_path, "vis", {i: vis[i] for i in vis if i <= 20})]
    test_shards = [_shard(tmp_path, "vis", {i: vis[i] for i in test_ids}, "shard-test0.h5"),
                   _shard(tmp_path, "aud", {i: aud[i] for i in test_ids}, "shard-test0.h5")]
    branch_files = []
    for name, dim in (("v", 4), ("a", 2)):  # fold 0 of the unimodal runs the fused run starts from
        unimodal = create_model("tcn_transformer", input_dim=dim, output_dim=len(EMI), pooling="attention",
                                head_hidden=[], sigmoid=True, **ENCODER)
        path = tmp_path / "train" / name / "fold0" / "model.pt"
        checkpoints.save(path, {"state_dict": unimodal.state_dict(), "mean": torch.zeros(dim), "std": torch.ones(dim)})
        branch_files.append(path)
    captured = _spy_fit(monkeypatch)
    run = {"backbone": "vis", "fuse_with": ["aud"], "model": "fusion", "epochs": 2, "batch_size": 4,
           "model_params": FUSED, "init_branches": ["v", "a"], "freeze_branches": True}
    train_fold_job(tmp_path / "manifest.tsv", shards, 0, tmp_path / "fold0", task="emi", run=run, seed=2, k_folds=2,
                   branch_models=branch_files)
    config = json.loads((tmp_path / "fold0" / "config.json").read_text())
    assert config["backbones"] == ["vis", "aud"] and config["model_params"]["freeze_branches"] is True
    for path in branch_files:  # prediction reads the fold's own weights, not the branches' files
        path.unlink()
    predict_fold_job(tmp_path / "fold0" / "model.pt", tmp_path / "fold0" / "config.json",
                     tmp_path / "test_manifest.tsv", [*test_shards, *shards], tmp_path / "test.csv",
                     task="emi", run=run)
    written = pd.read_csv(tmp_path / "test.csv")
    assert written["id"].tolist() == test_ids

    in_memory = captured["model"].eval()
    fresh, mean, std = _fresh_from_model_pt(tmp_path / "fold0", "fusion", 6, len(EMI), modality_dims=[4, 2], **FUSED)
    _same_weights(fresh, in_memory)
    for _, row in written.iterrows():
        x = np.concatenate([vis[int(row["id"])][0], aud[int(row["id"])][0]], axis=1)
        expected = _one_clip(in_memory, ((x - mean) / std).astype(np.float32))
        np.testing.assert_allclose(row[EMI].to_numpy(float), expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(_one_clip(fresh, ((x - mean) / std).astype(np.float32)), expected,
                                   rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"trained on backbones \['vis', 'aud'\], given \['aud', 'vis'\]"):
        predict_fold(tmp_path / "fold0" / "model.pt", tmp_path / "fold0" / "config.json",
                     manifest[manifest["split"] == "test"], {"aud": test_shards[1:], "vis": test_shards[:1]},
                     tmp_path / "swapped.csv")


# -- what prediction refuses, and an empty test set ------------------------------------------------

@pytest.fixture
def small_fold(clip_data, tmp_path):
    manifest, shards, test_shards, _ = clip_data
    settings = TrainSettings(model="gru", task="emi", model_params={"hidden": 4}, epochs=1, batch_size=8, seed=0)
    train_fold(manifest, shards, 0, tmp_path / "fold0", targets=EMI, k_folds=2, settings=settings)
    return tmp_path / "fold0", manifest[manifest["split"] == "test"], test_shards


def test_a_tampered_model_pt_fails_naming_the_file(small_fold, tmp_path):
    fold_dir, test_rows, test_shards = small_fold
    config = fold_dir / "config.json"
    saved = checkpoints.load(fold_dir / "model.pt")
    missing_key = dict(saved, state_dict={k: v for k, v in list(saved["state_dict"].items())[1:]})
    wrong_std = dict(saved, std=torch.ones(3))
    for name, payload, why in (("missing_key.pt", missing_key, "Missing key"),
                               ("no_mean.pt", {k: v for k, v in saved.items() if k != "mean"}, r"missing \['mean'\]"),
                               ("wrong_std.pt", wrong_std, r"expected \(5,\)")):
        checkpoints.save(tmp_path / name, payload)
        with pytest.raises(ValueError, match=rf"{tmp_path / name}.*{why}"):
            predict_fold(tmp_path / name, config, test_rows, test_shards, tmp_path / "x.csv")
    (tmp_path / "truncated.pt").write_bytes((fold_dir / "model.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"{tmp_path / 'truncated.pt'}: not a readable checkpoint"):
        load_fold_model(tmp_path / "truncated.pt", config)
    assert not (tmp_path / "x.csv").exists()
    # the model is rebuilt as config.json says: another width does not fit the weights
    wider = json.loads(config.read_text())
    wider["model_params"]["hidden"] = 6
    (tmp_path / "wider.json").write_text(json.dumps(wider))
    with pytest.raises(ValueError, match=rf"{fold_dir / 'model.pt'}: does not fit .*wider.json"):
        load_fold_model(fold_dir / "model.pt", tmp_path / "wider.json")


def test_features_of_another_width_are_refused(small_fold, tmp_path):
    fold_dir, test_rows, _ = small_fold
    other = _shard(tmp_path / "other", "vis", {int(i): (np.zeros((4, 7), np.float32), np.arange(4) / 10.0)
                                               for i in test_rows["id"]})
    with pytest.raises(ValueError, match=r"width \[7\].*reads 5"):
        predict_fold(fold_dir / "model.pt", fold_dir / "config.json", test_rows, [other], tmp_path / "x.csv")


def test_an_empty_test_manifest_writes_a_header_only_table(small_fold, tmp_path):
    fold_dir, test_rows, _ = small_fold
    write_manifest(test_rows.iloc[:0], tmp_path / "test_manifest.tsv")
    run = {"backbone": "vis", "model": "gru", "model_params": {"hidden": 4}}
    predict_fold_job(fold_dir / "model.pt", fold_dir / "config.json", tmp_path / "test_manifest.tsv", [],
                     tmp_path / "test.csv", task="emi", run=run)
    assert (tmp_path / "test.csv").read_text().strip() == ",".join(["id", *EMI])
    with pytest.raises(ValueError, match="a model of task 'emi', but run 'va' is asked for"):
        predict_fold_job(fold_dir / "model.pt", fold_dir / "config.json", tmp_path / "test_manifest.tsv", [],
                         tmp_path / "va.csv", task="va", run=run)
