"""The features stage: batched extraction through DataLoader workers gives what per-clip
extraction gives, in clip order; shard attributes carry the provenance; config entries split
into the signature (re-run trigger) and runtime options (not a trigger)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from test_features_new_backbones import SR, ecapa, models, speech_like  # noqa: F401  (models: a fixture)

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


def test_ecapa_on_the_frame_timeline_covers_every_frame_of_a_clip(models, tmp_path):  # noqa: F811 (the fixture)
    media, faces = tmp_path / "media.h5", tmp_path / "faces.h5"
    lengths = {"1": 2.5, "2": 1.2}  # 2 s windows every second: centres 1.0 and 1.5 s; one window over 1.2 s
    with ShardWriter(media, file_attrs={"stage": "media", "sample_rate": SR}) as writer:
        for clip_id, seconds in lengths.items():
            writer.add_clip(clip_id, {"audio": speech_like(seconds)}, {"qc_status": "ok"})
    with ShardWriter(faces, file_attrs={"stage": "faces", "fps": 30}) as writer:
        for clip_id, seconds in lengths.items():
            n = int(seconds * 30)
            writer.add_clip(clip_id, {"crops": [b""] * n, "valid": np.zeros(n, bool), "timestamps": np.arange(n) / 30},
                            {"qc_status": "ok"})
    params = {"weights": str(models["ecapa"]), **tiny.TINY_ECAPA, "window_s": 2.0, "hop_s": 1.0}
    out = tmp_path / "ecapa.h5"
    build_feature_shard("ecapa_tdnn192", params, media, out, timeline="frames", frames_shard=faces, num_workers=0)
    clips = {cid: arrays for cid, arrays, _ in iter_clips(out)}
    for clip_id, seconds in lengths.items():
        assert clips[clip_id]["mask"].all() and len(clips[clip_id]["mask"]) == int(seconds * 30), clip_id
    # the first frames of the 2.5 s clip take the first window, the last ones the last window
    rows = clips["1"]["features"]
    raw, _ = ecapa(models, window_s=2.0, hop_s=1.0).extract(speech_like(2.5), SR)
    np.testing.assert_allclose(rows[0], raw[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[-1], raw[-1], rtol=1e-5, atol=1e-6)
