"""Paper 004's data balancing for the AU task, end to end: the features stage's ``mask`` stage key
(crops blacked out in one half of the face before the backbone sees them, part of the re-run
signature), train_fold's ``mask_augment`` (masked copies of training tracks whose hidden AUs are
0), and the config checks that refuse what cannot work."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from affectflow.config.runs import check_runs
from affectflow.data import write_manifest
from affectflow.faces.crop import encode_jpeg
from affectflow.features import create_backbone
from affectflow.features import testing as tiny
from affectflow.features.signature import RUNTIME_KEYS, check_feature_entries, feature_signature, runtime_options
from affectflow.features.stage import build_feature_shard
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs
from affectflow.tasks import AU_TARGETS
from affectflow.training import checkpoints
from affectflow.training.fold import train_fold, train_fold_job
from affectflow.training.predict import predict_fold, predict_fold_job
from affectflow.training.settings import TrainSettings, settings_from_run
from affectflow.training.track_store import as_tensor

from conftest import REPO

# The AU sets of paper 004 (section 3.1) and of the face halves, written out here rather than
# imported, so that the counts below do not reuse the code under test.
UPPER_FACE = {"AU1", "AU2", "AU4", "AU6", "AU7"}
LOWER_FACE = {"AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"}
RARE = {"AU1", "AU2", "AU4", "AU5", "AU12", "AU15", "AU23", "AU24", "AU26"}
HIDDEN = {"upper": UPPER_FACE, "lower": LOWER_FACE}
SHIFT = {"upper": 0.5, "lower": -0.5}  # the fake masked features: the originals shifted


# -- the features stage ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    return tiny.resnet18_checkpoint(tmp_path_factory.mktemp("ckpt") / "r18.pt")


# 5 points in crop pixels: an upright face (eyes above the nose at y=60) and an upside-down one
# (eyes below the nose at y=50): the upper face is then the bottom of the image.
UPRIGHT = np.array([[38, 40], [74, 40], [56, 60], [42, 85], [70, 85]], np.float32)
UPSIDE_DOWN = np.array([[74, 80], [38, 80], [56, 50], [70, 25], [42, 25]], np.float32)


def _faces_shard(path):
    rng = np.random.default_rng(0)
    clips = {}
    with ShardWriter(path, file_attrs={"stage": "faces"}) as writer:
        for clip_id, landmarks, n in (("up", UPRIGHT, 3), ("down", UPSIDE_DOWN, 2)):
            valid = np.ones(n, bool)
            valid[1] = False  # an invalid frame: no crop, NaN landmarks, no features
            crops = [encode_jpeg(rng.integers(30, 256, (112, 112, 3), dtype=np.uint8)) if v else b"" for v in valid]
            lms = np.where(valid[:, None, None], landmarks[None], np.nan).astype(np.float32)
            writer.add_clip(clip_id, {"crops": crops, "valid": valid, "timestamps": np.arange(n) / 30,
                                      "crop_landmarks": lms}, {"qc_status": "ok"})
            clips[clip_id] = int(valid.sum())
    return clips


def _expected_region(clip_id: str, region: str) -> np.ndarray:
    """Rows of the 112x112 crop on the ``region`` side of the horizontal line through the nose tip
    (the eye line is horizontal in both faces), by pixel centre."""
    rows = np.arange(112) + 0.5
    eyes_above = clip_id == "up"
    nose_y = 60 if eyes_above else 50
    upper_rows = rows < nose_y if eyes_above else rows > nose_y
    mask_rows = upper_rows if region == "upper" else ~upper_rows
    return np.repeat(mask_rows[:, None], 112, axis=1)


def test_masked_crops_differ_from_unmasked_only_in_the_masked_half(resnet_ckpt, tmp_path, monkeypatch):
    clips = _faces_shard(tmp_path / "faces.h5")
    params = {"weights": str(resnet_ckpt)}
    cls = type(create_backbone("resnet18_pool512", **params))
    seen: list[np.ndarray] = []
    real_embed = cls.embed

    def spy(self, images):  # runs in the main process; decoding (and masking) in the workers
        batch = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
        seen.extend(batch.copy())
        return real_embed(self, images)

    monkeypatch.setattr(cls, "embed", spy)
    runs = {}
    for mask in (None, "upper", "lower"):
        seen.clear()
        out = tmp_path / f"feat-{mask}.h5"
        build_feature_shard("resnet18_pool512", params, tmp_path / "faces.h5", out, batch_size=2,
                            num_workers=0 if mask is None else 1, mask=mask)
        runs[mask] = (list(seen), {cid: arrays["features"] for cid, arrays, _ in iter_clips(out)})
        assert read_file_attrs(out).get("mask") == mask
    plain = runs[None][0]
    assert len(plain) == sum(clips.values())
    owners = [cid for cid, _, _ in iter_clips(tmp_path / "faces.h5") for _ in range(clips[cid])]  # shard order
    for region in ("upper", "lower"):
        masked, features = runs[region]
        assert len(masked) == len(plain)
        for image, original, clip_id in zip(masked, plain, owners, strict=True):
            hidden = _expected_region(clip_id, region)
            assert (original[hidden] > 0).any()  # there was something to black out
            assert (image[hidden] == 0).all()
            np.testing.assert_array_equal(image[~hidden], original[~hidden])
        for clip_id, n in clips.items():
            assert features[clip_id].shape == (n, 512)
            assert not np.allclose(features[clip_id], runs[None][1][clip_id])


def test_a_faces_shard_without_crop_landmarks_is_refused_naming_it(resnet_ckpt, tmp_path):
    with ShardWriter(tmp_path / "old.h5", file_attrs={"stage": "faces"}) as writer:
        writer.add_clip("c", {"crops": [encode_jpeg(np.full((112, 112, 3), 99, np.uint8))], "valid": np.ones(1, bool),
                              "timestamps": np.zeros(1)}, {"qc_status": "ok"})
    with pytest.raises(ValueError, match="old.h5.*crop_landmarks"):
        build_feature_shard("resnet18_pool512", {"weights": str(resnet_ckpt)}, tmp_path / "old.h5",
                            tmp_path / "out.h5", num_workers=0, mask="upper")


def test_signature_differs_by_mask_and_the_script_gets_it(resnet_ckpt):
    entry = {"backbone": "resnet18_pool512", "weights": str(resnet_ckpt), "batch_size": 4}
    plain = feature_signature("r18", entry)
    upper = feature_signature("r18_upper", {**entry, "mask": "upper"})
    lower = feature_signature("r18_lower", {**entry, "mask": "lower"})
    assert "mask" not in plain  # signatures of unmasked entries keep their value
    assert upper["mask"] == "upper" and lower["mask"] == "lower"
    assert len({str(sorted(s.items())) for s in (plain, upper, lower)}) == 3
    assert {k: v for k, v in upper.items() if k != "mask"} == plain  # the rest is the same backbone
    # the mask reaches the stage through the signature (params), not the speed-only options
    assert runtime_options("r18_upper", {**entry, "mask": "upper"}) == {"batch_size": 4}


@pytest.mark.parametrize("entry, words", [
    ({"backbone": "mfcc128", "mask": "upper"}, ["features.m.mask", "'mfcc128'", "audio"]),
    ({"backbone": "wav2vec2_hidden", "mask": "lower"}, ["features.m.mask", "audio"]),
    ({"backbone": "openface_au34", "mask": "upper"}, ["features.m.mask", "openface_au34", "not face crops"]),
    ({"backbone": "resnet18_pool512", "mask": "middle"}, ["features.m.mask", "'middle'", "upper, lower"]),
])
def test_mask_on_a_backbone_without_face_crops_is_refused_at_config_check(entry, words):
    with pytest.raises(ValueError) as info:
        check_feature_entries({"ok": {"backbone": "resnet18_pool512", "mask": "upper"}, "m": entry})
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ValueError, match="features.m.mask"):
        feature_signature("m", entry)


# -- the config checks of a run's mask_augment ---------------------------------------------------

VIS = {"backbone": "image_local", "arch": "densenet121", "weights": "w.pt", "input_size": 112}
FEATURES = {"vis": VIS, "vis_upper": {**VIS, "mask": "upper"}, "vis_lower": {**VIS, "mask": "lower", "batch_size": 8},
            "vis_other": {**VIS, "input_size": 96, "mask": "upper"}, "aud": {"backbone": "mfcc128"}}


def _runs(mask_augment):
    return {"runs": {"r": {"backbone": "vis", "model": "gru", "task": "au", "mask_augment": mask_augment,
                           "model_params": {"per_frame": True}}}}


def test_check_runs_accepts_the_masked_copies_of_the_runs_backbone():
    both = _runs({"upper": "vis_upper", "lower": "vis_lower"})
    assert check_runs(both, FEATURES) is None  # accepted: no error
    assert check_runs(_runs({"lower": "vis_lower"}), FEATURES) is None
    # the accepted run trains with both copies, as configured
    assert settings_from_run(both["runs"]["r"]).mask_augment == {"upper": "vis_upper", "lower": "vis_lower"}
    # vis_lower differs from vis in batch_size, which is speed only: accepted above, while the same
    # entry differing in a parameter that changes the features is refused
    assert FEATURES["vis_lower"]["batch_size"] != FEATURES["vis"].get("batch_size") and "batch_size" in RUNTIME_KEYS
    changed = {**FEATURES, "vis_lower": {**FEATURES["vis_lower"], "input_size": 96}}
    with pytest.raises(ValueError, match="mask_augment.lower: features.vis_lower must be the run's backbone"):
        check_runs(both, changed)


@pytest.mark.parametrize("mask_augment, words", [
    ({"upper": "nowhere"}, ["train.runs.r.mask_augment.upper", "'nowhere'", "not configured"]),
    ({"upper": "vis"}, ["mask_augment.upper", "features.vis has mask None", "mask: upper"]),
    ({"upper": "vis_lower"}, ["mask_augment.upper", "features.vis_lower has mask 'lower'"]),
    ({"upper": "vis_other"}, ["mask_augment.upper", "must be the run's backbone features.vis"]),
    ({"middle": "vis_upper"}, ["train.runs.r", "mask_augment", "upper", "lower"]),
])
def test_check_runs_refuses_a_mask_augment_naming_an_unknown_or_unmasked_entry(mask_augment, words):
    with pytest.raises(ValueError) as info:
        check_runs(_runs(mask_augment), FEATURES)
    for word in words:
        assert word in str(info.value)


def test_schema_takes_the_new_keys_and_only_valid_values():
    config = yaml.safe_load((REPO / "config" / "recipes" / "au_deng2023.yaml").read_text())
    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    validate(copy.deepcopy(config), schema)
    bad_region = copy.deepcopy(config)
    bad_region["features"]["ires100_upper"]["mask"] = "top"
    bad_key = copy.deepcopy(config)
    next(iter(bad_key["train"]["runs"].values()))["mask_augment"]["middle"] = "ires100"
    for bad in (bad_region, bad_key):
        with pytest.raises(WorkflowError):
            validate(bad, schema)


# -- train_fold ------------------------------------------------------------------------------------

D = 4
FPS = 30.0


def _track_labels(rng, n_frames: int, targets: list[str]) -> np.ndarray:
    """0/1 labels where a random few AUs are active at all (so some tracks have no rare positive)."""
    active = rng.random(len(targets)) < 0.2
    return ((rng.random((n_frames, len(targets))) < 0.3) & active).astype(np.float32)


def _au_data(tmp_path, *, fused: bool = False, n_tracks: int = 20, n_test: int = 3):
    """Tracks with one feature step per video frame (timestamps (k-1)/fps), their face-masked
    copies (the features shifted) in the features stage's layout, and labels of which ~15% of
    frames are missing."""
    rng = np.random.default_rng(5)
    targets = list(AU_TARGETS)
    rows, labels, raw = [], [], {}
    vis, aud = {}, {}
    for n in range(n_tracks + n_test):
        track_id, is_test = 500 + n, n >= n_tracks
        n_frames = int(rng.integers(30, 60))
        times = np.arange(n_frames) / FPS
        x = rng.normal(0, 1, (n_frames, D)).astype(np.float32)
        vis[track_id] = (x, times)
        raw[track_id] = {"orig": x, **{r: x + SHIFT[r] for r in SHIFT}}
        audio_times = np.arange(0, n_frames / FPS, 0.02)
        aud[track_id] = (rng.normal(0, 1, (len(audio_times), 3)).astype(np.float32), audio_times)
        rows.append({"id": track_id, "split": "test" if is_test else ("train" if n % 4 else "val"),
                     "subject": f"video{n}", "media": f"/v/{n}.mp4", "name": f"video{n}",
                     "labels": "" if is_test else f"/a/{n}.txt", "fps": FPS, "frames": n_frames, "crops": "",
                     "fold": -1 if is_test else n % 2})
        if is_test:
            continue
        y = _track_labels(rng, n_frames, targets)
        keep = rng.random(n_frames) > 0.15
        labels.append(pd.DataFrame({"id": track_id, "frame": np.arange(1, n_frames + 1)[keep],
                                    **{c: y[keep, j] for j, c in enumerate(targets)}}))
    root = tmp_path / "features"

    def write(key, clips):
        path = root / key / "shard-0.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with ShardWriter(path, file_attrs={"stage": "features", "backbone": key}) as writer:
            for i, (f, t) in clips.items():
                writer.add_clip(i, {"features": f, "timestamps": t})
        return [str(path)]

    shards = {"vis": write("vis", vis)}
    for region in SHIFT:
        write(f"vis_{region}", {i: (f + SHIFT[region], t) for i, (f, t) in vis.items()})
    if fused:
        shards["aud"] = write("aud", aud)
    manifest = pd.DataFrame(rows)
    return manifest, pd.concat(labels, ignore_index=True), (shards if fused else shards["vis"]), raw, targets


QUICK = {"model": "gru@2", "task": "au", "loss": "bce", "epochs": 1, "lr": 0.01, "batch_size": 8, "seed": 0,
         "model_params": {"hidden": 8, "per_frame": True, "sigmoid": True}}


def _settings(**kw):
    return TrainSettings(**{**QUICK, **kw})


def _layouts(shards):
    """Each region's masked copy of the (single-backbone) shards, in the layout of ``_au_data``."""
    return {r: [p.replace("/vis/", f"/vis_{r}/") for p in shards] for r in SHIFT}


def _job(tmp_path, manifest, labels, feature_shards, out, **run):
    """train_fold_job (the training rule's call) on ``_au_data``'s tracks with a QUICK run on ``vis``."""
    write_manifest(manifest, tmp_path / "manifest.tsv")
    labels.to_csv(tmp_path / "frame_labels.csv", index=False)
    settings = {k: v for k, v in QUICK.items() if k != "seed"}
    return train_fold_job(tmp_path / "manifest.tsv", feature_shards, 0, tmp_path / out, task="au",
                          run={"backbone": "vis", **settings, **run}, seed=QUICK["seed"], k_folds=2,
                          frame_labels=tmp_path / "frame_labels.csv")


def _spy_fit(monkeypatch):
    import affectflow.training.fold as train_module

    captured = {}
    real_fit = train_module.fit

    def spy(settings, train, **kw):
        captured["train"], captured["val"] = list(train), list(kw.get("val") or [])
        return real_fit(settings, train, **kw)

    monkeypatch.setattr(train_module, "fit", spy)
    return captured


def _identify(example, raw, mean, std):
    """(track id, kind) of a training example: which raw feature array it was normalised from."""
    x = as_tensor(example.x).numpy() * std + mean
    found = [(i, kind) for i, kinds in raw.items() for kind, arr in kinds.items()
             if arr.shape == x.shape and np.allclose(arr, x, atol=1e-3)]
    assert len(found) == 1, found
    return found[0]


def _expected_copies(manifest, labels, targets, train_ids):
    """Which (track, region) copies the documented rule keeps, counted from the labels table."""
    expected = set()
    for i in train_ids:
        table = labels[labels["id"] == i]
        for region, hidden in HIDDEN.items():
            visible_rare = [t for t in targets if t in RARE and t not in hidden]
            if (table[visible_rare].to_numpy() == 1).any():
                expected.add((i, region))
    return expected


def test_train_fold_adds_masked_copies_by_the_documented_rule(tmp_path, monkeypatch):
    manifest, labels, shards, raw, targets = _au_data(tmp_path)
    captured = _spy_fit(monkeypatch)
    settings = _settings(mask_augment={"upper": "vis_upper", "lower": "vis_lower"})
    metrics = train_fold(manifest, shards, 0, tmp_path / "aug", targets=targets, k_folds=2, settings=settings,
                         frame_labels=labels, masked_shards=_layouts(shards))
    train_ids = manifest.loc[(manifest["split"] != "test") & (manifest["fold"] == 1), "id"].tolist()
    expected = _expected_copies(manifest, labels, targets, train_ids)
    assert 0 < len(expected) < 2 * len(train_ids)  # the data exercise both keeping and skipping
    assert metrics["train_examples"] == len(train_ids) + len(expected)
    assert metrics["mask_copies"] == {r: sum(1 for _, g in expected if g == r) for r in ("upper", "lower")}

    saved = checkpoints.load(tmp_path / "aug" / "model.pt")
    mean, std = saved["mean"].numpy(), saved["std"].numpy()
    seen = [(_identify(e, raw, mean, std), e) for e in captured["train"]]
    assert sorted(k for (k, kind), _ in seen if kind == "orig") == sorted(train_ids)
    assert {(i, kind) for (i, kind), _ in seen if kind != "orig"} == expected
    hidden_cols = {r: [j for j, t in enumerate(targets) if t in HIDDEN[r]] for r in HIDDEN}
    for (i, kind), example in seen:
        table = labels[labels["id"] == i].set_index("frame")
        truth = np.full((len(raw[i]["orig"]), len(targets)), np.nan, np.float32)
        truth[table.index.to_numpy() - 1] = table[targets].to_numpy()
        y = example.y.numpy()
        if kind == "orig":
            np.testing.assert_array_equal(y, truth)
            continue
        visible = [j for j in range(len(targets)) if j not in hidden_cols[kind]]
        np.testing.assert_array_equal(y[:, visible], truth[:, visible])  # unchanged, NaN included
        labelled = ~np.isnan(truth).any(1)
        assert (y[labelled][:, hidden_cols[kind]] == 0).all()
        assert np.isnan(y[~labelled]).all()  # an unlabelled frame stays unlabelled

    # without the augmentation: the same OOF and test rows, and only the original tracks
    plain = train_fold(manifest, shards, 0, tmp_path / "plain", targets=targets, k_folds=2,
                       settings=_settings(), frame_labels=labels)
    assert plain["train_examples"] == len(train_ids) and "mask_copies" not in plain
    test_rows = manifest[manifest["split"] == "test"]
    for run in ("aug", "plain"):  # the test prediction step: the original test tracks, never a masked copy
        predict_fold(tmp_path / run / "model.pt", tmp_path / run / "config.json", test_rows, shards,
                     tmp_path / run / "test.csv")
    for name in ("oof.csv", "test.csv"):
        with_aug = pd.read_csv(tmp_path / "aug" / name)
        without = pd.read_csv(tmp_path / "plain" / name)
        assert with_aug[["id", "frame"]].values.tolist() == without[["id", "frame"]].values.tolist()
        assert not set(with_aug["id"]) & set(train_ids)  # no training track, so no copy, is predicted


def test_masked_copies_hide_positives_they_cover(tmp_path, monkeypatch):
    """A copy's hidden AUs are 0 even on frames where the original was positive."""
    manifest, labels, shards, raw, targets = _au_data(tmp_path)
    captured = _spy_fit(monkeypatch)
    train_fold(manifest, shards, 1, tmp_path / "f1", targets=targets, k_folds=2, frame_labels=labels,
               settings=_settings(mask_augment={"upper": "vis_upper"}), masked_shards=_layouts(shards))
    saved = checkpoints.load(tmp_path / "f1" / "model.pt")
    mean, std = saved["mean"].numpy(), saved["std"].numpy()
    upper_cols = [j for j, t in enumerate(targets) if t in UPPER_FACE]
    covered = 0
    for example in captured["train"]:
        i, kind = _identify(example, raw, mean, std)
        assert kind in ("orig", "upper")
        if kind == "upper":
            table = labels[labels["id"] == i]
            covered += int((table[[targets[j] for j in upper_cols]].to_numpy() == 1).sum())
            assert np.nansum(example.y.numpy()[:, upper_cols]) == 0
    assert covered > 0  # some hidden positives existed, and were zeroed


def test_held_out_validation_tracks_get_no_copies(tmp_path, monkeypatch):
    manifest, labels, shards, raw, targets = _au_data(tmp_path)
    captured = _spy_fit(monkeypatch)
    metrics = train_fold(manifest, shards, 0, tmp_path / "v", targets=targets, k_folds=2, frame_labels=labels,
                         settings=_settings(val_fraction=0.3, mask_augment={"upper": "vis_upper",
                                                                            "lower": "vis_lower"}),
                         masked_shards=_layouts(shards))
    saved = checkpoints.load(tmp_path / "v" / "model.pt")
    mean, std = saved["mean"].numpy(), saved["std"].numpy()
    val = [_identify(e, raw, mean, std) for e in captured["val"]]
    train = [_identify(e, raw, mean, std) for e in captured["train"]]
    assert val and all(kind == "orig" for _, kind in val)
    val_ids = {i for i, _ in val}
    train_orig = sorted(i for i, kind in train if kind == "orig")
    assert not val_ids & {i for i, _ in train}
    assert {(i, k) for i, k in train if k != "orig"} == _expected_copies(manifest, labels, targets, train_orig)
    assert metrics["train_examples"] == len(train)


def test_fused_backbones_mask_only_the_visual_part(tmp_path, monkeypatch):
    manifest, labels, shards, raw, targets = _au_data(tmp_path, fused=True)
    captured = _spy_fit(monkeypatch)
    # through the training job: the rule's feature shards (the run's backbone, the fused one and the
    # masked copies, in any order) grouped by features key, the masked copies swapped in for vis only
    masked = _layouts(shards["vis"])
    every_shard = [*shards["aud"], *masked["lower"], *shards["vis"], *masked["upper"]]
    metrics = _job(tmp_path, manifest, labels, every_shard, "fused", fuse_with=["aud"],
                   mask_augment={"upper": "vis_upper", "lower": "vis_lower"})
    assert sum(metrics["mask_copies"].values()) > 0
    examples = captured["train"]
    saved = checkpoints.load(tmp_path / "fused" / "model.pt")
    mean, std = saved["mean"].numpy(), saved["std"].numpy()
    by_visual = {}
    for e in examples:
        assert e.x.shape[1] == D + 3
        x = as_tensor(e.x).numpy() * std + mean
        match = [(i, kind) for i, kinds in raw.items() for kind, arr in kinds.items()
                 if arr.shape == x[:, :D].shape and np.allclose(arr, x[:, :D], atol=1e-3)]
        assert len(match) == 1
        by_visual[match[0]] = e
    copies = [(i, kind) for i, kind in by_visual if kind != "orig"]
    assert len(copies) == sum(metrics["mask_copies"].values())
    for i, kind in copies:
        original = as_tensor(by_visual[(i, "orig")].x).numpy()
        copy_x = as_tensor(by_visual[(i, kind)].x).numpy()
        np.testing.assert_array_equal(copy_x[:, D:], original[:, D:])  # the audio part is the original's
        assert not np.allclose(copy_x[:, :D], original[:, :D])
    # test prediction reads the run's own backbones: masked copies, if given, are ignored
    write_manifest(manifest[manifest["split"] == "test"], tmp_path / "test_manifest.tsv")
    run = {"backbone": "vis", **{k: v for k, v in QUICK.items() if k != "seed"}, "fuse_with": ["aud"],
           "mask_augment": {"upper": "vis_upper", "lower": "vis_lower"}}
    fold_dir = tmp_path / "fused"
    from_job = predict_fold_job(fold_dir / "model.pt", fold_dir / "config.json", tmp_path / "test_manifest.tsv",
                                every_shard, tmp_path / "job_test.csv", task="au", run=run)
    direct = predict_fold(fold_dir / "model.pt", fold_dir / "config.json", manifest[manifest["split"] == "test"],
                          shards, tmp_path / "direct_test.csv")
    pd.testing.assert_frame_equal(from_job, direct)
    assert not direct[targets].isna().any().any()


def test_mask_augment_is_for_the_au_task_and_needs_its_shards(tmp_path):
    manifest, labels, shards, _, targets = _au_data(tmp_path, n_tracks=8, n_test=1)
    va = TrainSettings(model="gru@2", task="va", loss="ccc", epochs=1, mask_augment={"upper": "vis_upper"},
                       model_params={"per_frame": True})
    va_labels = labels[["id", "frame"]].assign(valence=0.1, arousal=0.2)
    with pytest.raises(ValueError, match="task au"):
        train_fold(manifest, shards, 0, tmp_path / "va", targets=["valence", "arousal"], k_folds=2, settings=va,
                   frame_labels=va_labels)
    with pytest.raises(ValueError, match="vis_missing"):  # the job finds no shards of the masked copy
        _job(tmp_path, manifest, labels, [*shards, *_layouts(shards)["upper"]], "x",
             mask_augment={"upper": "vis_missing"})
    with pytest.raises(ValueError, match=r"mask_augment \{'upper': 'vis_upper'\}: no masked_shards"):
        train_fold(manifest, shards, 0, tmp_path / "y", targets=targets, k_folds=2, frame_labels=labels,
                   settings=_settings(mask_augment={"upper": "vis_upper"}))


# -- the workflow: checked at start, masked shards built for the runs that use them ----------------

def _demo_config(tmp_path):
    from conftest import tiny_config

    return tiny_config(tmp_path)


def _write(tmp_path, config):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)




