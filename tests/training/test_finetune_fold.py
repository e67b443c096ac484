"""A fine-tuning run trains its encoder in the fold job (issue 15): from face crops, a planted signal
the frozen encoder is blind to is learnt, and beats the same run with the encoder frozen; a killed
fine-tuning job resumes to identical weights; the test prediction reads the same crops.

The "AffectNet" checkpoint is a random torchvision ResNet18 whose first convolution ignores the blue
channel; the clips' label is their blue level. A frozen encoder therefore gives features that do
not depend on the label at all, while fine-tuning can learn weights for blue.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from scipy.stats import pearsonr

from affectflow.faces.crop import encode_jpeg
from affectflow.h5store import ShardWriter
from affectflow.tasks import EMI_TARGETS
from affectflow.training.clip_inputs import close_handles
from affectflow.training.fold import train_fold, train_fold_job
from affectflow.training.predict import predict_fold
from affectflow.training.settings import TrainSettings

TARGETS = ["y"]
SIDE = 32
FRAMES = 4
NO_FACE = 7  # a labelled clip without a valid frame: no prediction


def _crop(rng: np.random.Generator, blue: float) -> np.ndarray:
    """Red and green: random smooth patterns; blue: the clip's level (plus a little noise)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    red_green = [128 + 100 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y)
                                     + rng.uniform(0, 2 * np.pi)) for _ in range(2)]
    image = np.stack([*red_green, np.full((SIDE, SIDE), 255 * blue) + rng.normal(0, 3, (SIDE, SIDE))], -1)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crops_data(tmp_path_factory):
    """A faces shard of 48 labelled and 6 test clips (4 frames of 32 px each), a manifest whose
    label is each clip's blue level, and a ResNet18 checkpoint blind to blue."""
    root = tmp_path_factory.mktemp("finetune")
    rng = np.random.default_rng(0)
    rows = []
    path = root / "faces" / "shard-0.h5"
    path.parent.mkdir()
    with ShardWriter(path, file_attrs={"stage": "faces"}) as writer:
        for clip in range(1, 55):
            test = clip > 48
            blue = float(rng.uniform(0.1, 0.9))
            valid = np.full(FRAMES, clip != NO_FACE)
            crops = [encode_jpeg(_crop(rng, blue), quality=95) if ok else b"" for ok in valid]
            writer.add_clip(clip, {"crops": crops, "valid": valid, "timestamps": np.arange(FRAMES) / 25.0})
            rows.append({"id": clip, "split": "test" if test else ("train" if clip % 4 else "val"), "subject": "",
                         "media": f"/raw/{clip}.mp4", "fold": -1 if test else clip % 2,
                         "y": np.nan if test else blue})
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=7)
    with torch.no_grad():
        resnet.conv1.weight[:, 2] = 0  # the trunk never sees the blue channel
    weights = root / "resnet18_blind_to_blue.pt"
    torch.save(resnet.state_dict(), weights)
    yield pd.DataFrame(rows), [str(path)], weights
    close_handles()


def _settings(weights, **finetune) -> TrainSettings:
    return TrainSettings(
        model="finetune", task="clip", epochs=12, lr=2e-3, batch_size=8, seed=1, loss="mse", batching="random",
        finetune={"input": "crops", "frames": FRAMES, "size": SIDE, **finetune},
        model_params={"encoder": "resnet18_spatial",
                      "encoder_params": {"weights_path": str(weights), "image_size": SIDE, "spatial_layers": 1,
                                         "dropout": 0.0},
                      "temporal": "gru", "temporal_params": {"hidden": 16, "dropout": 0.0}})


def _oof_pearson(out_dir, manifest) -> float:
    oof = pd.read_csv(out_dir / "oof.csv").dropna()
    truth = manifest.set_index("id").loc[oof["id"], "y"]
    return float(pearsonr(oof["y"], truth)[0])


@pytest.fixture(scope="module")
def finetuned(crops_data, tmp_path_factory):
    manifest, shards, weights = crops_data
    out = tmp_path_factory.mktemp("fold0")
    metrics = train_fold(manifest, shards, 0, out, targets=TARGETS, k_folds=2, settings=_settings(weights))
    return out, metrics


def test_finetuning_learns_what_the_frozen_encoder_cannot_see(crops_data, finetuned, tmp_path):
    manifest, shards, weights = crops_data
    out, metrics = finetuned
    frozen_dir = tmp_path / "frozen"
    frozen = train_fold(manifest, shards, 0, frozen_dir, targets=TARGETS, k_folds=2,
                        settings=_settings(weights, freeze=["encoder"]))
    tuned_r, frozen_r = _oof_pearson(out, manifest), _oof_pearson(frozen_dir, manifest)
    print(f"OOF Pearson: fine-tuned {tuned_r:.3f}, frozen {frozen_r:.3f}")
    # the fold's own score is the same Pearson as scipy's on its OOF table
    assert metrics["oof_score"]["mean"] == pytest.approx(tuned_r, abs=1e-4)  # OOF values written to 6 decimals
    assert frozen["oof_score"]["mean"] == pytest.approx(frozen_r, abs=1e-4)
    # measured: 0.953 fine-tuned, 0.245 frozen (JPEG's colour conversion leaks a little blue into red and green)
    assert tuned_r > 0.8, tuned_r
    assert abs(frozen_r) < 0.5 and tuned_r > frozen_r + 0.4, (tuned_r, frozen_r)
    # out-of-fold rows: every fold-0 clip, the one without a face unpredicted
    oof = pd.read_csv(out / "oof.csv")
    fold0 = manifest[(manifest["fold"] == 0)]
    assert sorted(oof["id"]) == sorted(fold0["id"])
    assert oof.set_index("id")["y"].isna().to_dict() == {i: i == NO_FACE for i in fold0["id"]}
    # a fine-tuned fold has no feature statistics: input_dim 0, empty mean and std
    config = json.loads((out / "config.json").read_text())
    assert config["input_dim"] == 0 and config["finetune"]["input"] == "crops"
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["mean"].numel() == 0 and saved["std"].numel() == 0
    # the frozen run's encoder is the checkpoint's, untouched; the fine-tuned one moved
    reference = torch.load(weights, weights_only=True)
    frozen_state = torch.load(frozen_dir / "model.pt", weights_only=True)["state_dict"]
    assert torch.equal(frozen_state["encoder.trunk.0.weight"], reference["conv1.weight"])
    assert not torch.equal(saved["state_dict"]["encoder.trunk.0.weight"], reference["conv1.weight"])
    assert saved["state_dict"]["encoder.trunk.0.weight"][:, 2].abs().max() > 0  # it learnt to see blue


def test_test_prediction_reads_the_same_crops(crops_data, finetuned, tmp_path):
    manifest, shards, _ = crops_data
    out, _ = finetuned
    test = manifest[manifest["split"] == "test"]
    table = predict_fold(out / "model.pt", out / "config.json", test, shards, tmp_path / "test.csv")
    assert table["id"].tolist() == test["id"].tolist() and table["y"].notna().all()
    r = pearsonr(table["y"], [float(v) for v in _blue_levels(shards[0], test["id"])])[0]
    assert r > 0.8, r


def _blue_levels(shard, ids):
    """The test clips' blue level, read back from their crops (the manifest has no test labels)."""
    from affectflow.training.clip_inputs import crop_clips

    clips = crop_clips([shard], ids, frames=FRAMES, size=SIDE)
    return [float(np.mean([im[..., 2].mean() for im in clips[int(i)].images()])) / 255 for i in ids]


def test_a_killed_finetuning_job_resumes_to_identical_weights(crops_data, tmp_path):
    from affectflow.training.loop import Interrupted

    manifest, shards, weights = crops_data
    quick = TrainSettings(**{**_settings(weights, workers=1).__dict__, "epochs": 3, "scheduler": "cosine"})
    train_fold(manifest, shards, 1, tmp_path / "ref", targets=TARGETS, k_folds=2, settings=quick)

    def kill(epoch, history):
        if epoch == 1:
            raise Interrupted("SIGKILL stand-in")

    with pytest.raises(Interrupted):
        train_fold(manifest, shards, 1, tmp_path / "run", targets=TARGETS, k_folds=2, settings=quick, callback=kill)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "model.pt").exists()
    train_fold(manifest, shards, 1, tmp_path / "run", targets=TARGETS, k_folds=2, settings=quick)
    ref = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]
    run = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert ref.keys() == run.keys()
    for key in ref:
        assert torch.equal(ref[key], run[key]), key
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "oof.csv"), pd.read_csv(tmp_path / "ref" / "oof.csv"))


def test_the_job_starts_the_encoder_from_the_backbone_entry_weights(crops_data, tmp_path):
    manifest, shards, weights = crops_data
    manifest_tsv = tmp_path / "manifest.tsv"
    manifest.assign(**{t: manifest["y"] for t in EMI_TARGETS}).to_csv(manifest_tsv, sep="\t", index=False)
    run = {"backbone": "resnet18_pool512", "model": "finetune", "epochs": 1, "batch_size": 8,
           "finetune": {"input": "crops", "frames": FRAMES, "size": SIDE, "freeze": ["encoder.trunk"]},
           "model_params": {"encoder": "resnet18_spatial", "encoder_params": {"image_size": SIDE, "spatial_layers": 1},
                            "temporal": "gru", "temporal_params": {"hidden": 8}}}
    train_fold_job(manifest_tsv, shards, 0, tmp_path / "fold0", task="emi", run=run, seed=0,
                   k_folds=2, encoder_weights=str(weights))
    state = torch.load(tmp_path / "fold0" / "model.pt", weights_only=True)["state_dict"]
    # the trunk is frozen, so it still holds the checkpoint's weights: they were loaded
    assert torch.equal(state["encoder.trunk.0.weight"], torch.load(weights, weights_only=True)["conv1.weight"])
    config = json.loads((tmp_path / "fold0" / "config.json").read_text())
    assert config["model_params"]["encoder_params"]["weights_path"] == str(weights)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        train_fold_job(manifest_tsv, shards, 0, tmp_path / "fold0b", task="emi", run=run, seed=0,
                       k_folds=2, encoder_weights=str(tmp_path / "nowhere.pt"))
