"""Tests of the feature backbones and of the features stage."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from affectflow.faces.crop import encode_jpeg, square_crop
from affectflow.features import BACKBONES, create_backbone, list_backbones
from affectflow.features.signature import backbone_signature, cached_signature
from affectflow.features.stage import build_feature_shard
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs
from affectflow.registry import UnknownNameError
from affectflow.runtime.ffmpeg import ffmpeg_exe

from conftest import REPO

DEMO = REPO / "resources" / "demo"
SR = 16000
# Faces picked by looking at the images (x1, y1, x2, y2): the astronaut in astronaut.png, and
# the talker of movie-hello.mp4 (inside the webcam inset x 116..364, y 85..271 of the frame).
ASTRONAUT_FACE = np.array([175, 75, 270, 180])
TALKER_FACE = np.array([116 + 66, 85 + 38, 116 + 138, 85 + 125])
# dlib's documented decision threshold: descriptors of the same person are closer than 0.6.
DLIB_SAME_PERSON = 0.6


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DEMO / "astronaut.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def talker_frame() -> np.ndarray:
    out = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-ss", "2", "-i", str(DEMO / "movie-hello.mp4"),
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        check=True, capture_output=True, timeout=60,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(720, 1280, 3)


@pytest.fixture(scope="module")
def dlib_backbone():
    return create_backbone("dlib_face128")


def astronaut_crops(astronaut) -> list[bytes]:
    """Two different crops of the same face: a shifted box, and a darker mirrored image."""
    shifted = square_crop(astronaut, ASTRONAUT_FACE + np.array([4, -6, 4, -6]), size=112)
    mirrored = np.clip(astronaut[:, ::-1].astype(np.float64) * 0.8, 0, 255).astype(np.uint8)
    box = np.array([512 - ASTRONAUT_FACE[2], ASTRONAUT_FACE[1], 512 - ASTRONAUT_FACE[0], ASTRONAUT_FACE[3]])
    return [encode_jpeg(shifted), encode_jpeg(square_crop(mirrored, box, size=150))]


# -- registry -------------------------------------------------------------------------------


def test_builtin_backbones_registered():
    assert {"dlib_face128", "mfcc128"} <= set(list_backbones())


# test_backbone_contract (parametrised over the registry) is in test_features_robust.py:
# it needs tiny models for the backbones that load weights.


def test_unknown_backbone_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        create_backbone("wav2vec9000")
    message = str(info.value)
    assert "wav2vec9000" in message
    for name in list_backbones():
        assert name in message


def test_dlib_provenance_matches_weight_files(dlib_backbone):
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    expected = [hashlib.sha256((models / f).read_bytes()).hexdigest()
                for f in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")]
    prov = dlib_backbone.provenance()
    assert prov["weights_sha256"].split(",") == expected
    assert dlib.__version__ in prov["package_version"]


def test_mfcc_provenance_names_librosa_version():
    import librosa

    prov = create_backbone("mfcc128").provenance()
    assert prov["weights_sha256"] == ""
    assert librosa.__version__ in prov["package_version"]


# -- dlib_face128 ---------------------------------------------------------------------------


def test_dlib_same_face_closer_than_other_face(dlib_backbone, astronaut, talker_frame):
    crops = [*astronaut_crops(astronaut), encode_jpeg(square_crop(talker_frame, TALKER_FACE, size=112))]
    timestamps = np.array([0.0, 0.5, 1.0])
    features, times = dlib_backbone.extract(crops, np.ones(3, bool), timestamps)
    assert features.shape == (3, 128)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    norms = np.linalg.norm(features, axis=1)
    assert (norms > 0.1).all()
    assert np.ptp(norms) < 0.5 * norms.mean()  # comparable scale for every face
    np.testing.assert_array_equal(times, timestamps)
    same = np.linalg.norm(features[0] - features[1])
    other = min(np.linalg.norm(features[0] - features[2]), np.linalg.norm(features[1] - features[2]))
    assert same < DLIB_SAME_PERSON < other


def test_dlib_skips_invalid_frames_and_max_frames(astronaut):
    crops = astronaut_crops(astronaut)
    n = 9
    valid = np.array([False, True, True, False, True, True, True, False, True])
    blobs = [crops[i % 2] if v else b"" for i, v in enumerate(valid)]  # invalid frames have no crop
    timestamps = np.arange(n) / 5.0

    backbone = create_backbone("dlib_face128", max_frames=3)
    features, times = backbone.extract(blobs, valid, timestamps)
    assert features.shape == (3, 128)
    assert np.isfinite(features).all()
    valid_times = timestamps[valid]
    assert set(times) <= set(valid_times)
    # spread over the clip: the first and last valid frames are among those described
    assert times[0] == valid_times[0] and times[-1] == valid_times[-1]
    assert (np.diff(times) > 0).all()


def test_dlib_no_valid_frame_gives_empty(dlib_backbone):
    features, times = dlib_backbone.extract([b"", b""], np.zeros(2, bool), np.array([0.0, 0.2]))
    assert features.shape == (0, 128) and features.dtype == np.float32
    assert times.shape == (0,)


def test_dlib_rejects_negative_max_frames():
    with pytest.raises(ValueError, match="max_frames"):
        create_backbone("dlib_face128", max_frames=-1)


# -- mfcc128 --------------------------------------------------------------------------------


def tone(seconds: float, freq: float = 440.0, amplitude: int = 10000) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_mfcc_one_second():
    backbone = create_backbone("mfcc128")
    features, times = backbone.extract(tone(1.0), SR)
    assert 98 <= len(features) <= 100
    assert features.shape[1] == 128 and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert len(times) == len(features)
    # 10 ms hop, timestamps inside the clip and increasing
    np.testing.assert_allclose(np.diff(times), 0.01, atol=1e-9)
    assert 0 <= times[0] < 0.05 and times[-1] <= 1.0


def test_mfcc_distinguishes_tones():
    backbone = create_backbone("mfcc128")
    low, _ = backbone.extract(tone(0.5, 300), SR)
    high, _ = backbone.extract(tone(0.5, 3000), SR)
    low2, _ = backbone.extract(tone(0.5, 300, amplitude=9000), SR)
    # MFCC beyond c0 do not depend on level; a different pitch changes them
    assert np.abs(low.mean(0)[1:] - low2.mean(0)[1:]).max() < 0.1 * np.abs(low.mean(0)[1:] - high.mean(0)[1:]).max()


@pytest.mark.parametrize("n", [0, 1, 399])
def test_mfcc_shorter_than_a_window_is_empty(n):
    features, times = create_backbone("mfcc128").extract(tone(1.0)[:n], SR)
    assert features.shape == (0, 128)
    assert len(times) == 0


def test_mfcc_silence_is_finite():
    features, _ = create_backbone("mfcc128").extract(np.zeros(SR // 2, np.int16), SR)
    assert len(features) > 0
    assert np.isfinite(features).all()


def test_mfcc_n_mfcc_sets_dim():
    backbone = create_backbone("mfcc128", n_mfcc=20)
    assert backbone.dim == 20
    features, _ = backbone.extract(tone(0.3), SR)
    assert features.shape[1] == 20


# -- signatures -----------------------------------------------------------------------------


def test_backbone_signature_tracks_parameters():
    base = backbone_signature("mfcc128", {"n_mfcc": 128})
    assert base == backbone_signature("mfcc128", {"n_mfcc": 128})
    assert base["backbone"] == "mfcc128" and base["modality"] == "audio"
    assert base != backbone_signature("mfcc128", {"n_mfcc": 64})
    assert base != backbone_signature("mfcc128", {"n_mfcc": 128, "hop_s": 0.02})
    assert backbone_signature("dlib_face128", {"num_jitters": 0}) != backbone_signature("dlib_face128",
                                                                                         {"num_jitters": 1})
    # defaults filled in: an explicit default is the same signature as leaving it out
    assert backbone_signature("mfcc128", {}) == backbone_signature("mfcc128", {"n_mfcc": 128})
    assert cached_signature("mfcc128", {"hop_s": 0.02}) == backbone_signature("mfcc128", {"hop_s": 0.02})
    # the cached copy cannot be mutated through the returned dict
    cached_signature("mfcc128", {})["params"]["n_mfcc"] = 1
    cached_signature("mfcc128", {})["backbone"] = "x"
    assert cached_signature("mfcc128", {}) == base


# -- the features stage ---------------------------------------------------------------------


def write_media_shard(path, clips):
    with ShardWriter(path, file_attrs={"stage": "media", "sample_rate": SR}) as writer:
        for clip_id, audio in clips.items():
            writer.add_clip(clip_id, {"audio": audio}, {"qc_status": "ok" if audio.size else "no_audio"})


def test_build_feature_shard_audio(tmp_path):
    media = tmp_path / "media_0.h5"
    write_media_shard(media, {3: tone(1.0), 4: np.zeros(0, np.int16), 5: tone(0.02)})
    out = tmp_path / "features" / "mfcc_0.h5"
    params = {"n_mfcc": 40}
    assert build_feature_shard("mfcc128", params, media, out) == 3
    attrs = read_file_attrs(out)
    assert attrs["backbone"] == "mfcc128"
    assert json.loads(attrs["params"]) == {"n_mfcc": 40, "hop_s": 0.01, "win_s": 0.025}
    assert attrs["weights_sha256"] == ""
    assert "librosa" in attrs["package_version"]
    assert attrs["dim"] == 40
    clips = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    assert set(clips) == {"3", "4", "5"}
    assert 98 <= clips["3"][0]["features"].shape[0] <= 100
    assert clips["3"][0]["features"].shape[1] == 40
    assert len(clips["3"][0]["timestamps"]) == clips["3"][1]["n_rows"] == len(clips["3"][0]["features"])
    for empty in ("4", "5"):
        assert clips[empty][0]["features"].shape == (0, 40)
        assert clips[empty][1]["n_rows"] == 0
    assert clips["4"][1]["qc_status"] == "no_audio"


def test_build_feature_shard_visual(tmp_path, astronaut):
    crops = astronaut_crops(astronaut)
    faces = tmp_path / "faces_0.h5"
    with ShardWriter(faces, file_attrs={"stage": "faces", "fps": 5}) as writer:
        writer.add_clip(1, {"crops": [crops[0], b"", crops[1]], "valid": np.array([True, False, True]),
                            "timestamps": np.array([0.0, 0.2, 0.4])}, {"qc_status": "ok"})
        writer.add_clip(2, {"crops": [b"", b""], "valid": np.zeros(2, bool), "timestamps": np.array([0.0, 0.2])},
                        {"qc_status": "no_face"})
    out = tmp_path / "dlib_0.h5"
    assert build_feature_shard("dlib_face128", {"max_frames": 24}, faces, out) == 2
    attrs = read_file_attrs(out)
    assert attrs["backbone"] == "dlib_face128"
    assert json.loads(attrs["params"])["max_frames"] == 24
    assert len(attrs["weights_sha256"].split(",")) == 2
    assert attrs["package_version"].startswith("dlib")
    assert attrs["weights_sha256"] == create_backbone("dlib_face128").provenance()["weights_sha256"]
    clips = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    np.testing.assert_array_equal(clips["1"][0]["timestamps"], [0.0, 0.4])
    assert clips["1"][0]["features"].shape == (2, 128)
    assert np.isfinite(clips["1"][0]["features"]).all()
    assert clips["2"][0]["features"].shape == (0, 128)
    assert clips["2"][1]["qc_status"] == "no_face"


class NanBackbone:
    modality = "audio"
    dim = 2

    def __init__(self):
        self.params = {}

    def provenance(self):
        return {"weights_sha256": "", "package_version": "test"}

    def extract(self, samples, sample_rate):
        return np.full((3, 2), np.nan, np.float32), np.arange(3.0)


def test_build_feature_shard_refuses_non_finite(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKBONES._entries, "nan_test", NanBackbone)
    media = tmp_path / "media.h5"
    write_media_shard(media, {1: tone(0.1)})
    out = tmp_path / "nan.h5"
    with pytest.raises(ValueError, match="non-finite"):
        build_feature_shard("nan_test", {}, media, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media.h5"]
