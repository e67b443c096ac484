"""A fine-tuned run downstream (issue 15): its best-ρ fold is chosen from the folds' scores, its
temporal model becomes a fused run's branch, its frozen encoder is dumped as a features backbone
(the same outputs as the model's encoder), and a fused run can leave such features unstandardised."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from affectflow.config.runs import branch_model_paths
from affectflow.features.registry import create_backbone
from affectflow.models import create_model
from affectflow.training import checkpoints
from affectflow.training.best_fold import best_fold
from affectflow.training.branch_init import with_branch_checkpoints
from affectflow.training.clip_inputs import crops_tensor
from affectflow.training.fold import _kept_raw
from affectflow.training.settings import TrainSettings, recorded_settings

ENCODER = {"encoder": "resnet18_spatial", "encoder_params": {"image_size": 32, "spatial_layers": 1},
           "temporal": "tcn_transformer", "temporal_params": {"hidden": 8, "tcn_layers": 2, "dim": 8, "layers": 1,
                                                              "heads": 2, "pooling": "attention"}}


def _fold(run_dir, k, score, seed):
    """A fine-tuned fold as train_fold writes it: model.pt (no statistics), config.json, metrics.json."""
    out = run_dir / f"fold{k}"
    out.mkdir(parents=True)
    torch.manual_seed(seed)
    model = create_model("finetune", input_dim=0, output_dim=2, **ENCODER)
    checkpoints.save(out / "model.pt", {"state_dict": model.state_dict(), "mean": torch.zeros(0),
                                        "std": torch.ones(0)})
    settings = TrainSettings(model="finetune", model_params=ENCODER, finetune={"input": "crops", "size": 32})
    (out / "config.json").write_text(json.dumps({**recorded_settings(settings), "targets": ["a", "b"],
                                                 "input_dim": 0, "backbones": None}))
    (out / "metrics.json").write_text(json.dumps({"oof_score": {"mean": score}}))
    return model


def test_best_fold_is_the_highest_oof_score(tmp_path):
    for k, score in enumerate([0.2, 0.5, 0.5, float("nan")]):
        (tmp_path / f"fold{k}").mkdir()
        (tmp_path / f"fold{k}" / "metrics.json").write_text(json.dumps({"oof_score": {"mean": score}}))
    assert best_fold(tmp_path) == 1  # a tie goes to the lower fold; NaN never wins
    assert best_fold(tmp_path, [0, 3]) == 0
    with pytest.raises(ValueError, match="no fold has an out-of-fold score"):
        best_fold(tmp_path, [3])


def test_every_fused_fold_loads_the_best_fold_temporal_model_as_its_branch(tmp_path):
    train = tmp_path / "train"
    models = [_fold(train / "visual", k, score, seed=k) for k, score in enumerate([0.1, 0.7, 0.3])]
    run = {"backbone": "visual_ft", "fuse_with": ["mfcc"], "init_branches": ["visual", None],
           "freeze_branches": True, "branch_fold": "best"}
    paths = branch_model_paths(run, str(train), 0, folds_of=lambda name: 3)
    files = ("model.pt", "metrics.json")
    assert sorted(paths) == sorted(f"{train}/visual/fold{k}/{f}" for k in range(3) for f in files)
    assert branch_model_paths(run, str(train), 2, folds_of=lambda name: 3) == paths  # the same for every fold
    resolved = with_branch_checkpoints(run, paths)
    assert resolved["model_params"]["branch_checkpoints"] == [f"{train}/visual/fold1/model.pt", None]
    fused = create_model("fusion", input_dim=256 + 4, output_dim=2, modality_dims=[256, 4], fusion="late_encoders",
                         encoder="tcn_transformer", hidden=8, tcn_layers=2, dim=8, layers=1, heads=2,
                         fusion_dim=8, **resolved["model_params"])
    # branch 0 holds the best fold's temporal encoder, not its CNN encoder, frozen
    for key, value in fused.branches[0].state_dict().items():
        assert torch.equal(value, models[1].temporal.state_dict()[f"encoder.{key}"]), key
    assert not any(p.requires_grad for p in fused.branches[0].parameters())
    # fold k's own branch (branch_fold same) stays the default
    same = with_branch_checkpoints({**run, "branch_fold": "same"},
                                   branch_model_paths({**run, "branch_fold": "same"}, str(train), 2))
    assert same["model_params"]["branch_checkpoints"] == [f"{train}/visual/fold2/model.pt", None]


def test_the_finetuned_backbone_dumps_the_best_fold_encoder(tmp_path):
    models = [_fold(tmp_path / "visual", k, score, seed=k) for k, score in enumerate([0.4, 0.1])]
    backbone = create_backbone("finetuned", run="visual", fold="best", models=str(tmp_path / "visual"))
    assert backbone.modality == "visual" and backbone.dim == 256
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 48, 48, 3), dtype=np.uint8)  # resized to the run's 32 px, as in training
    with torch.no_grad():
        expected = models[0].encoder.eval()(crops_tensor(list(images), size=32)).numpy()
    np.testing.assert_allclose(backbone.embed(images), expected, rtol=1e-5, atol=1e-5)
    other = create_backbone("finetuned", run="visual", fold=1, models=str(tmp_path / "visual"))
    assert not np.allclose(other.embed(images), expected, atol=1e-3)
    with pytest.raises(ValueError, match="fold must be 'best' or a fold number"):
        create_backbone("finetuned", run="visual", fold="last", models=str(tmp_path / "visual"))


def test_normalise_per_modality_keeps_the_raw_columns():
    mean, std = np.array([1.0, 2.0, 3.0], np.float32), np.array([2.0, 2.0, 2.0], np.float32)
    m, s = _kept_raw(mean, std, [False, True], [2, 1])
    assert m.tolist() == [0, 0, 3] and s.tolist() == [1, 1, 2]
    m, s = _kept_raw(mean, std, False, None)
    assert m.tolist() == [0, 0, 0] and s.tolist() == [1, 1, 1]
    assert _kept_raw(mean, std, True, [2, 1])[0] is mean
    with pytest.raises(ValueError, match="2 entries for 3 modalities"):
        _kept_raw(mean, std, [True, False], [1, 1, 1])
    with pytest.raises(ValueError, match="normalise must be"):
        TrainSettings(model="gru", normalise=[])


def _eri_config():
    import yaml

    from conftest import REPO

    return yaml.safe_load((REPO / "config" / "recipes" / "eri_yu2023.yaml").read_text())


def test_a_finetuned_branch_needs_its_best_fold_features_and_raw_inputs():
    from affectflow.config.runs import check_branch_inits

    config = _eri_config()
    train, features, k = config["train"], config["features"], config["train"]["k_folds"]
    fused = train["runs"]["av_modality_dropout"]
    check_branch_inits(train, k_folds=k, features=features)  # as the recipe has it

    def refused(run_edit, features_edit=None, match=""):
        runs = {**train["runs"], "av_modality_dropout": {**fused, **run_edit}}
        with pytest.raises(ValueError, match=match):
            check_branch_inits({**train, "runs": runs}, k_folds=k, features={**features, **(features_edit or {})})

    # the branch and its features must come from the same (best) fold
    refused({"branch_fold": "same"}, match="must come from the same fold")
    refused({}, {"visual_finetuned": {**features["visual_finetuned"], "fold": 2}}, match="must come from the same fold")
    # a frozen fine-tuned branch reads its encoder's outputs unstandardised
    refused({"normalise": True}, match="set normalise false for modality 0")
    # its temporal model must fit the fused branch, checked at start
    visual = train["runs"]["visual_branch"]
    gru = {"temporal": "gru", "temporal_params": {"hidden": 8}}
    runs = {**train["runs"], "visual_branch": {**visual, "model_params": gru}}
    with pytest.raises(ValueError, match="does not fit branch 0"):
        check_branch_inits({**train, "runs": runs}, k_folds=k, features=features)


def test_finetuned_feature_entries_are_filled_and_checked():
    from affectflow.config.runs import check_finetune, with_finetuned_models

    config = _eri_config()
    runs, features = config["train"]["runs"], config["features"]
    filled = with_finetuned_models(features, runs, "results/x/train", 5)
    assert filled["visual_finetuned"] == {"backbone": "finetuned", "run": "visual_branch", "fold": "best",
                                          "models": "results/x/train/visual_branch", "input": "crops", "folds": 5}
    assert filled["mfcc128_stack8"] == features["mfcc128_stack8"]
    with pytest.raises(ValueError, match=r"features.visual_finetuned.run: 'nope' is not a run"):
        with_finetuned_models({"visual_finetuned": {"backbone": "finetuned", "run": "nope"}}, runs, "t", 5)
    with pytest.raises(ValueError, match="run 'audio_branch' trains on cached features"):
        with_finetuned_models({"visual_finetuned": {"backbone": "finetuned", "run": "audio_branch"}}, runs, "t", 5)
    # a fine-tuning run on crops names a visual backbone entry
    with pytest.raises(ValueError, match="finetune.input crops needs a backbone of modality visual"):
        check_finetune("v", {**runs["visual_branch"], "backbone": "mfcc128_stack8"}, features)
