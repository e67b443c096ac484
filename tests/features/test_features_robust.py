"""Every registered backbone, on tiny random models: dimensions, and the inputs that break
feature extractors (silence, 0.2 s of audio, no audio, a clip without a valid face) give
empty arrays or finite values plus a mask, never NaN. Parametrised over the registry, so a new
backbone is tested as soon as affectflow.features.testing gives it tiny parameters."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from affectflow.faces.crop import encode_jpeg, square_crop
from affectflow.features import create_backbone, list_backbones
from affectflow.features.stage import build_feature_shard
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs

from conftest import REPO

SR = 16000
ASTRONAUT_FACE = np.array([175, 75, 270, 180])  # x1, y1, x2, y2, picked by looking at the image


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory) -> dict[str, dict]:
    from affectflow.features.testing import tiny_backbone_params

    return tiny_backbone_params(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def face_crops() -> list[bytes]:
    image = cv2.cvtColor(cv2.imread(str(REPO / "resources" / "demo" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    return [encode_jpeg(square_crop(image, ASTRONAUT_FACE + shift, size=112))
            for shift in (np.array([0, 0, 0, 0]), np.array([6, -4, 6, -4]), np.array([-5, 3, -5, 3]))]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, face_crops):
    """A media shard (speech-like noise, silence, 0.2 s, no audio) and a faces shard (a clip with
    faces in frames 0, 2, 3 and a clip without a valid face), with the same clip ids."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    t = np.arange(SR * 1.5) / SR
    voiced = (3000 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
              + 300 * rng.normal(size=t.size)).astype(np.int16)
    audio = {"1": voiced, "2": np.zeros(SR, np.int16), "3": voiced[: SR // 5], "4": np.zeros(0, np.int16)}
    media = root / "media.h5"
    with ShardWriter(media, file_attrs={"stage": "media", "sample_rate": SR}) as writer:
        for clip_id, samples in audio.items():
            writer.add_clip(clip_id, {"audio": samples}, {"qc_status": "ok" if samples.size else "no_audio"})
    faces = root / "faces.h5"
    frames = 6
    times = np.arange(frames) / 30.0
    with ShardWriter(faces, file_attrs={"stage": "faces", "fps": 30}) as writer:
        valid = np.array([True, False, True, True, False, False])
        crops = [face_crops[i % 3] if v else b"" for i, v in enumerate(valid)]
        writer.add_clip("1", {"crops": crops, "valid": valid, "timestamps": times}, {"qc_status": "ok"})
        for clip_id in ("2", "3", "4"):
            writer.add_clip(clip_id, {"crops": [b""] * frames, "valid": np.zeros(frames, bool), "timestamps": times},
                            {"qc_status": "no_face"})
    return media, faces


def test_every_backbone_has_tiny_parameters(tiny_params):
    # a backbone registered without an entry in affectflow.features.testing would go untested
    assert set(tiny_params) == set(list_backbones())


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name, tiny_params):
    backbone = create_backbone(name, **tiny_params[name])
    assert isinstance(backbone.dim, int) and backbone.dim > 0
    assert backbone.modality in {"visual", "audio"}
    assert backbone.reads in {"crops", "audio", "clip"}
    assert backbone.reads != "crops" or backbone.modality == "visual"
    assert backbone.reads != "audio" or backbone.modality == "audio"
    assert (backbone.__doc__ or "").strip(), f"{name} has no docstring"
    assert isinstance(backbone.params, dict)
    json.dumps(backbone.params)  # goes into HDF5 attributes and rule params as JSON
    prov = backbone.provenance()
    assert {"weights_sha256", "package_version"} <= set(prov)
    assert isinstance(prov["weights_sha256"], str)
    assert isinstance(prov["package_version"], str) and prov["package_version"]
    assert prov == backbone.provenance()  # stable
    for digest in filter(None, prov["weights_sha256"].split(",")):
        assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")


DIMS = {  # dimensions the papers and the libraries define (tiny models: their config sizes)
    "iresnet100_512": 512,
    "dlib_face128": 128, "dlib_landmarks68": 136, "fer2013_probs7": 7, "resnet18_pool512": 512,
    "resnet18_maps": 7 * 7 * 256, "openface_au34": 34, "vidmimic_vit384": 384, "mfcc128": 128,
    "mfcc128_stack8": 1024, "kaldi_fbank": 80, "egemaps_v02_lld": 25, "egemaps_v02_func": 88,
    "compare_2016_lld": 65, "compare_2016_func": 6373, "vidmimic_wav2vec2_768": 768,
    "dino_vits16": 48, "wav2vec2_hidden": 32, "hubert_hidden": 32, "wav2vec2_vad1027": 32 + 3,
    "image_local": 64,  # timm's test_vit: embed_dim 64
    "ecapa_tdnn192": 12, "vggish128": 128, "mae_vit": 32,  # tiny ECAPA lin_neurons 12; VGGish's 128 after PCA
    "finetuned": 256,  # the fine-tuned resnet18_spatial encoder's frame vector
}


@pytest.mark.parametrize("name", list_backbones())
def test_feature_shard_dims_and_robustness(name, tiny_params, shards, tmp_path):
    media, faces = shards
    backbone = create_backbone(name, **tiny_params[name])
    source = faces if backbone.modality == "visual" else media
    out = tmp_path / f"{name}.h5"
    assert build_feature_shard(name, tiny_params[name], source, out, num_workers=0, batch_size=2) == 4
    dim = DIMS[name]
    attrs = read_file_attrs(out)
    assert attrs["backbone"] == name and attrs["dim"] == dim
    assert json.loads(attrs["params"]) == json.loads(json.dumps(backbone.params))
    assert attrs["weights_sha256"] == backbone.provenance()["weights_sha256"]
    assert attrs["package_version"] == backbone.provenance()["package_version"]
    clips = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    assert set(clips) == {"1", "2", "3", "4"}
    for clip_id, (arrays, clip_attrs) in clips.items():
        features, times, mask = arrays["features"], arrays["timestamps"], arrays["mask"]
        assert features.dtype == np.float32 and features.ndim == 2 and features.shape[1] == dim
        assert np.isfinite(features).all(), clip_id
        assert len(times) == len(mask) == len(features) == clip_attrs["n_rows"]
        assert mask.dtype == bool and clip_attrs["n_valid"] == mask.sum()
        assert (np.diff(times) >= 0).all()
        if not len(features):
            assert clip_attrs["empty_reason"], clip_id
    if backbone.reads == "crops":
        assert len(clips["1"][0]["features"]) == 3  # the three valid frames
        np.testing.assert_allclose(clips["1"][0]["timestamps"], np.array([0, 2, 3]) / 30.0)
        for clip_id in ("2", "3", "4"):  # no valid face: empty
            assert clips[clip_id][0]["features"].shape == (0, dim)
            assert "no valid face" in clips[clip_id][1]["empty_reason"]
    elif backbone.reads == "audio":
        assert len(clips["1"][0]["features"]) >= 1
        assert clips["4"][0]["features"].shape == (0, dim)  # no audio at all
        assert "no audio" in clips["4"][1]["empty_reason"]
        # silence and 0.2 s: finite (checked above); the short clip has fewer rows than 1.5 s
        assert len(clips["3"][0]["features"]) <= len(clips["1"][0]["features"])
        assert clips["3"][0]["timestamps"].max(initial=0) <= 0.2 + 1e-9
    else:  # files per clip: only clip 1 has one
        assert len(clips["1"][0]["features"]) > 0
        for clip_id in ("2", "3", "4"):
            assert clips[clip_id][0]["features"].shape == (0, dim)
            assert f"no {clip_id}." in clips[clip_id][1]["empty_reason"]


@pytest.mark.parametrize("name", [n for n in list_backbones() if n in ("mfcc128_stack8", "wav2vec2_hidden",
                                                                            "egemaps_v02_lld", "resnet18_pool512")])
def test_frame_timeline_gives_one_row_per_frame_and_a_mask(name, tiny_params, shards, tmp_path):
    media, faces = shards
    backbone = create_backbone(name, **tiny_params[name])
    source = faces if backbone.modality == "visual" else media
    out = tmp_path / "aligned.h5"
    build_feature_shard(name, tiny_params[name], source, out, timeline="frames", frames_shard=faces, num_workers=0)
    assert read_file_attrs(out)["timeline"] == "frames"
    clips = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    frame_times = np.arange(6) / 30.0
    for arrays, _attrs in clips.values():
        assert arrays["features"].shape == (6, DIMS[name])
        np.testing.assert_allclose(arrays["timestamps"], frame_times)
        assert np.isfinite(arrays["features"]).all()
        # masked rows hold zeros
        assert not arrays["features"][~arrays["mask"]].any()
    assert not clips["4"][0]["mask"].any()  # no audio / no face: nothing valid
    if backbone.modality == "visual":
        np.testing.assert_array_equal(clips["1"][0]["mask"], [True, True, True, True, True, False])
        assert not clips["2"][0]["mask"].any()
    else:
        assert clips["1"][0]["mask"].all()  # 1.5 s of audio covers the 0.2 s of frames


def test_every_backbone_is_rebuilt_from_the_params_it_records(tiny_params):
    # the features rule passes a backbone's recorded params (its signature) to the job, which builds it
    # again from them: every backbone must take back exactly what it records
    assert sorted(tiny_params) == sorted(list_backbones())
    for name, params in tiny_params.items():
        recorded = create_backbone(name, **params).params
        assert create_backbone(name, **recorded).params == recorded, name
