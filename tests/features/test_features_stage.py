"""The features stage: batched extraction through DataLoader workers gives what per-clip
extraction gives, in clip order; shard attributes carry the provenance; config entries split
into the signature (re-run trigger) and runtime options (not a trigger)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from affectflow.faces.crop import encode_jpeg
from affectflow.features import create_backbone
from affectflow.features import testing as tiny
from affectflow.features.signature import cached_feature_signature, feature_signature, runtime_options
from affectflow.features.stage import build_feature_shard
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    return tiny.resnet18_checkpoint(tmp_path_factory.mktemp("ckpt") / "r18.pt")


def faces_shard(path, n_clips: int = 5, seed: int = 0):
    """Clips of 0..7 frames with random validity; clip 2 has no valid frame."""
    rng = np.random.default_rng(seed)
    clips = {}
    with ShardWriter(path, file_attrs={"stage": "faces"}) as writer:
        for c in range(n_clips):
            n = int(rng.integers(1, 8))
            valid = rng.random(n) > 0.3
            if c == 2:
                valid[:] = False
            crops = [encode_jpeg(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) if v else b"" for v in valid]
            times = np.arange(n) / 30
            writer.add_clip(f"c{c}", {"crops": crops, "valid": valid, "timestamps": times}, {"qc_status": "ok"})
            clips[f"c{c}"] = (crops, valid, times)
    return clips


def test_batched_workers_match_per_clip_extraction(resnet_ckpt, tmp_path):
    clips = faces_shard(tmp_path / "faces.h5")
    out = tmp_path / "r18.h5"
    params = {"weights": str(resnet_ckpt)}
    # batches of 3 frames cut across clip boundaries; one worker process decodes the crops
    assert build_feature_shard("resnet18_pool512", params, tmp_path / "faces.h5", out, batch_size=3,
                               num_workers=1) == len(clips)
    backbone = create_backbone("resnet18_pool512", **params)
    written = {cid: arrays for cid, arrays, _ in iter_clips(out)}
    assert list(written) == list(clips)  # file order kept
    for clip_id, (crops, valid, times) in clips.items():
        expected, expected_times = backbone.extract(crops, valid, times)
        assert written[clip_id]["features"].shape == (int(valid.sum()), 512)
        np.testing.assert_allclose(written[clip_id]["features"], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(written[clip_id]["timestamps"], expected_times)
        assert written[clip_id]["mask"].all()
    attrs = read_file_attrs(out)
    assert attrs["weights_sha256"] == hashlib.sha256(resnet_ckpt.read_bytes()).hexdigest()
    assert "torch" in attrs["package_version"] and "torchvision" in attrs["package_version"]
    assert json.loads(attrs["params"])["weights"] == str(resnet_ckpt)
    assert attrs["modality"] == "visual" and attrs["timeline"] == "native"


def test_feature_signature_splits_the_config_entry(resnet_ckpt, tmp_path):
    entry = {"backbone": "resnet18_pool512", "weights": str(resnet_ckpt), "batch_size": 128, "num_workers": 3,
             "device": "cpu"}
    signature = feature_signature("r18_affectnet", entry)
    assert signature["backbone"] == "resnet18_pool512" and signature["modality"] == "visual"
    # the same keys as before stage keys existed: results of an unchanged entry are not re-run
    assert set(signature) == {"backbone", "modality", "params", "weights_sha256", "package_version"}
    assert signature["weights_sha256"] == hashlib.sha256(resnet_ckpt.read_bytes()).hexdigest()
    assert "batch_size" not in json.dumps(signature)  # speed-only keys are no re-run trigger
    assert runtime_options("r18_affectnet", entry) == {"batch_size": 128, "num_workers": 3, "device": "cpu"}
    faster = {**entry, "batch_size": 8}
    assert feature_signature("r18_affectnet", faster) == signature
    assert feature_signature("r18_affectnet", {**entry, "input_size": 96}) != signature
    aligned = feature_signature("r18_affectnet", {**entry, "timeline": "frames"})
    assert aligned["timeline"] == "frames" and aligned != signature
    # a changed checkpoint changes the signature
    other = tiny.resnet18_checkpoint(tmp_path / "other.pt", seed=1)
    assert feature_signature("r18_affectnet", {**entry, "weights": str(other)})["weights_sha256"] != \
        signature["weights_sha256"]
    assert cached_feature_signature("r18_affectnet", entry) == signature
    with pytest.raises(ValueError, match="timeline"):
        feature_signature("x", {"backbone": "mfcc128", "timeline": "sometimes"})


def test_unknown_parameter_names_the_accepted_ones():
    with pytest.raises(ValueError) as info:
        create_backbone("mfcc128", n_mfc=40)
    assert "n_mfc" in str(info.value) and "n_mfcc" in str(info.value) and "hop_s" in str(info.value)


def test_max_frames_reads_the_chosen_frames_only(resnet_ckpt, tmp_path):
    clips = faces_shard(tmp_path / "faces.h5", n_clips=4, seed=3)
    params = {"weights": str(resnet_ckpt), "max_frames": 2}
    out = tmp_path / "r18.h5"
    build_feature_shard("resnet18_pool512", params, tmp_path / "faces.h5", out, batch_size=5, num_workers=0)
    backbone = create_backbone("resnet18_pool512", **params)
    written = {cid: arrays for cid, arrays, _ in iter_clips(out)}
    for clip_id, (crops, valid, times) in clips.items():
        expected, expected_times = backbone.extract(crops, valid, times)
        assert len(expected) == min(2, valid.sum())
        np.testing.assert_allclose(written[clip_id]["features"], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(written[clip_id]["timestamps"], expected_times)
