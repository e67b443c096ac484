"""Bundles: which runs and backbones go in, what is recorded, and what is refused."""

from __future__ import annotations

import json

import pytest
import yaml

from affectflow.features.signature import feature_signature
from affectflow.predict.bundle import (
    BundleError,
    bundle_backbones,
    bundle_runs,
    check_bundle,
    export_bundle,
    read_bundle,
)
from affectflow.runtime.hashing import file_sha256

RUNS = {
    "visual_ft": {"backbone": "r18", "model": "finetune", "finetune": {"input": "crops"}},
    "fused": {"backbone": "ft_feats", "fuse_with": ["mfcc"], "model": "gru"},
    "audio": {"backbone": "mfcc", "model": "gru"},
    "unused": {"backbone": "other", "model": "gru"},
}
FEATURES = {"r18": {"backbone": "resnet18_pool512"}, "mfcc": {"backbone": "mfcc128"}, "other": {},
            "ft_feats": {"backbone": "finetuned", "run": "visual_ft"}}


def test_bundle_holds_members_and_the_fine_tuning_runs_their_features_come_from():
    assert bundle_runs(["fused", "audio"], RUNS, FEATURES) == ["fused", "audio", "visual_ft"]
    # a fine-tuning run reads crops and carries its encoder: it needs no features entry
    assert bundle_backbones(["fused", "audio"], RUNS, FEATURES) == ["ft_feats", "mfcc"]
    assert bundle_runs(["visual_ft"], RUNS, FEATURES) == ["visual_ft"]
    assert bundle_backbones(["visual_ft"], RUNS, FEATURES) == []


def _bundle(tmp_path):
    """A bundle of one member run ("audio", two folds) whose backbone reads a weights file."""
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"the weights it was trained with")
    features = {"r18": {"backbone": "resnet18_pool512", "weights": str(weights)}}
    config = {"dataset": {"name": "mine", "task": "emi", "root": "data"}, "features": features,
              "train": {"runs": {"audio": {"backbone": "r18", "model": "gru"}}},
              "ensemble": {"name": "late_mean", "members": ["audio"]}, "predict": {"videos": "elsewhere"}}
    train = tmp_path / "train"
    for k in range(2):
        fold = train / "audio" / f"fold{k}"
        fold.mkdir(parents=True)
        (fold / "model.pt").write_bytes(f"model {k}".encode())
        (fold / "config.json").write_text("{}")
        (fold / "metrics.json").write_text(json.dumps({"oof": {"mean": 0.1 * k}}))
    (tmp_path / "members.json").write_text(json.dumps({"members": ["audio"], "weights": {}, "thresholds": None,
                                                       "task": "emi"}))
    (tmp_path / "score.json").write_text(json.dumps({"method": "mean", "oof": {"mean": 0.3}, "members": {}}))
    (tmp_path / "manifest.tsv").write_text("id\tsplit\n1\ttrain\n2\tval\n")
    (train / "audio" / "fold2").mkdir()  # left over from an earlier k_folds: not the run's, not bundled
    record = export_bundle(tmp_path / "bundle", config=config, train_dir=train, runs={"audio": 2},
                           members_json=tmp_path / "members.json", score_json=tmp_path / "score.json",
                           manifest=tmp_path / "manifest.tsv",
                           backbones={"r18": feature_signature("r18", features["r18"])})
    return tmp_path / "bundle", config, weights, record


def test_export_records_provenance_and_files(tmp_path):
    bundle, config, weights, record = _bundle(tmp_path)
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()) == [
        "bundle.json", "config.yaml", "ensemble/members.json", "ensemble/score.json",
        *(f"train/audio/fold{k}/{n}" for k in range(2) for n in ("config.json", "metrics.json", "model.pt"))]
    assert record["backbones"]["r18"]["weights_sha256"] == file_sha256(weights)
    assert record["training_manifest"] == {"sha256": file_sha256(tmp_path / "manifest.tsv"), "clips": 2}
    assert record["oof"]["ensemble"] == {"mean": 0.3}
    assert record["oof"]["folds"]["audio"] == {"fold0": {"mean": 0.0}, "fold1": {"mean": 0.1}}
    assert record["package_version"] and record["task"] == "emi"
    saved = yaml.safe_load((bundle / "config.yaml").read_text())
    assert "predict" not in saved and saved["features"] == config["features"]
    assert json.loads((bundle / "bundle.json").read_text()) == record
    assert check_bundle(bundle, config) == record


def test_other_weights_are_refused_naming_the_key_and_both_checksums(tmp_path):
    bundle, config, weights, record = _bundle(tmp_path)
    trained = record["backbones"]["r18"]["weights_sha256"]
    weights.write_bytes(b"other weights of the same name")
    with pytest.raises(BundleError) as err:
        check_bundle(bundle, config)
    assert "features.r18" in str(err.value)
    assert trained in str(err.value) and file_sha256(weights) in str(err.value)


def test_altered_missing_or_foreign_bundles_are_refused(tmp_path):
    bundle, config, _, _ = _bundle(tmp_path)
    with pytest.raises(BundleError, match="members"):
        check_bundle(bundle, {**config, "ensemble": {"members": ["other"]}})
    with pytest.raises(BundleError, match="task 'emi'"):
        check_bundle(bundle, {**config, "dataset": {**config["dataset"], "task": "eri"}})
    other_model = {**config, "train": {"runs": {"audio": {"backbone": "r18", "model": "lstm"}}}}
    with pytest.raises(BundleError, match=r"train\.runs\.audio\.model \('lstm', trained with 'gru'\)"):
        check_bundle(bundle, other_model)
    # where to predict and cluster sizes are the user's: not compared, not recorded
    check_bundle(bundle, {**config, "predict": {"videos": "x"}, "resources": {"faces": {"cpus": 4}}})
    model = bundle / "train" / "audio" / "fold1" / "model.pt"
    model.write_bytes(b"tampered")
    with pytest.raises(BundleError, match="train/audio/fold1/model.pt was changed"):
        read_bundle(bundle)
    model.unlink()
    with pytest.raises(BundleError, match="train/audio/fold1/model.pt is missing"):
        read_bundle(bundle)
    with pytest.raises(BundleError, match="not a bundle"):
        read_bundle(tmp_path / "train")


def test_bundle_command_never_deletes_a_folder_of_other_things(tmp_path):
    from affectflow.predict.cli import _refuse_to_overwrite

    keep = tmp_path / "results"
    (keep / "demo").mkdir(parents=True)
    (keep / "demo" / "manifest.tsv").write_text("precious")
    with pytest.raises(SystemExit, match="holds other things than a bundle"):
        _refuse_to_overwrite(keep)
    assert (keep / "demo" / "manifest.tsv").read_text() == "precious"
    old = tmp_path / "old_bundle"
    old.mkdir()
    (old / "bundle.json").write_text("{}")
    _refuse_to_overwrite(old)  # an older bundle: replaced
    _refuse_to_overwrite(tmp_path / "new")  # a new folder
