"""The model backbones against the libraries they wrap: each output is compared with the same
model run directly (built in the test from the tiny checkpoint), and the loading rules
(weights_only, head removal, local directories, the weights manifest) are checked."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from affectflow.features import create_backbone
from affectflow.features import testing as tiny
from affectflow.features.align import align_to_frames
from affectflow.features.backbones.landmarks import normalise_landmarks
from affectflow.features.backbones.openface import OPENFACE_AUS
from affectflow.features.files import load_array_pickle
from affectflow.features.weights import resolve_weights

SR = 16000
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def random_crops(n: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def normalised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(((images / 255.0 - MEAN) / STD).astype(np.float32))
    return x.permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    return tiny.resnet18_checkpoint(tmp_path_factory.mktemp("resnet") / "affectnet.pt")


def reference_resnet(path) -> torchvision.models.ResNet:
    model = torchvision.models.resnet18(weights=None, num_classes=8)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


# -- visual --------------------------------------------------------------------------------


def test_resnet18_pool512_is_the_pooled_layer_before_fc(resnet_ckpt):
    images = random_crops(3)
    features = create_backbone("resnet18_pool512", weights=str(resnet_ckpt)).embed(images)
    model = reference_resnet(resnet_ckpt)
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = model(normalised(images)).numpy()
    assert features.shape == (3, 512) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_resnet18_normalisation_comes_from_the_params(resnet_ckpt):
    images = random_crops(2)
    default = create_backbone("resnet18_pool512", weights=str(resnet_ckpt)).embed(images)
    other = create_backbone("resnet18_pool512", weights=str(resnet_ckpt), mean=[0.5] * 3, std=[0.5] * 3).embed(images)
    assert np.abs(default - other).max() > 1e-3
    model = reference_resnet(resnet_ckpt)
    model.fc = torch.nn.Identity()
    x = torch.from_numpy(((images / 255.0 - 0.5) / 0.5).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        np.testing.assert_allclose(other, model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_resnet18_loads_wrapped_dataparallel_checkpoints(resnet_ckpt, tmp_path):
    wrapped = tiny.resnet18_checkpoint(tmp_path / "wrapped.pt", wrap=True)  # same seed, same weights
    images = random_crops(2)
    a = create_backbone("resnet18_pool512", weights=str(resnet_ckpt)).embed(images)
    b = create_backbone("resnet18_pool512", weights=str(wrapped)).embed(images)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pickled_modules_and_wrong_architectures_are_refused(tmp_path):
    pickled = tmp_path / "module.pt"
    torch.save(torchvision.models.resnet18(weights=None), pickled)  # a whole module, not a state_dict
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        create_backbone("resnet18_pool512", weights=str(pickled)).embed(random_crops(1))
    other = tiny.image_checkpoint(tmp_path / "mobilenet.pt", "mobilenet_v3_small")
    with pytest.raises(ValueError, match="does not fit"):
        create_backbone("resnet18_pool512", weights=str(other)).embed(random_crops(1))


def test_resnet18_maps_are_layer3_tokens(resnet_ckpt):
    images = random_crops(2)
    backbone = create_backbone("resnet18_maps", weights=str(resnet_ckpt))
    assert backbone.map_shape == (7, 7, 256) and backbone.dim == 7 * 7 * 256
    features = backbone.embed(images)
    m = reference_resnet(resnet_ckpt)
    with torch.no_grad():
        x = m.maxpool(m.relu(m.bn1(m.conv1(normalised(images)))))
        maps = m.layer3(m.layer2(m.layer1(x)))  # (N, 256, 7, 7)
    tokens = features.reshape(2, 7 * 7, 256)
    np.testing.assert_allclose(tokens, maps.permute(0, 2, 3, 1).reshape(2, 49, 256).numpy(), rtol=1e-4, atol=1e-4)
    # stage 4 at 112 px: 4 x 4 x 512
    assert create_backbone("resnet18_maps", weights=str(resnet_ckpt), stage=4).dim == 4 * 4 * 512


@pytest.mark.parametrize("arch,dim", [("mobilenet_v3_small", 576), ("timm/test_convnext", None)])
def test_image_local_loads_torchvision_and_timm_checkpoints(arch, dim, tmp_path):
    import timm

    path = tiny.image_checkpoint(tmp_path / "model.pt", arch)
    backbone = create_backbone("image_local", arch=arch, weights=str(path), input_size=64)
    images = random_crops(2, size=64)
    features = backbone.embed(images)
    if arch.startswith("timm/"):
        model = timm.create_model(arch[5:], pretrained=False, num_classes=0)
        dim = model.num_features
    else:
        model = torchvision.models.get_model(arch, weights=None, num_classes=5)
        model.classifier = torch.nn.Identity()
    result = model.load_state_dict(torch.load(path, weights_only=True), strict=False)
    assert not result.missing_keys
    with torch.no_grad():
        expected = model.eval()(normalised(images)).numpy()
    assert backbone.dim == dim and features.shape == (2, dim)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_image_local_rejects_unknown_arch():
    with pytest.raises(ValueError, match="densenet121"):
        create_backbone("image_local", arch="densenet999", weights="x")


def test_dino_vit_cls_token(tmp_path):
    from transformers import ViTModel

    directory = tiny.vit_dir(tmp_path / "dino", image_size=112)
    backbone = create_backbone("dino_vits16", weights=str(directory))
    images = random_crops(2)
    features = backbone.embed(images)
    model = ViTModel.from_pretrained(directory, add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(pixel_values=normalised(images)).last_hidden_state
    assert backbone.dim == 48 and features.shape == (2, 48)
    np.testing.assert_allclose(features, hidden[:, 0].numpy(), rtol=1e-3, atol=1e-3)
    mean = create_backbone("dino_vits16", weights=str(directory), pool="mean").embed(images)
    np.testing.assert_allclose(mean, hidden[:, 1:].mean(1).numpy(), rtol=1e-3, atol=1e-3)


def test_landmark_normalisation_is_translation_and_scale_invariant():
    rng = np.random.default_rng(0)
    points = rng.uniform(20, 90, (68, 2))
    base = normalise_landmarks(points)
    moved = normalise_landmarks(points * 1.7 + np.array([13.0, -4.0]))
    np.testing.assert_allclose(base, moved, atol=1e-5)
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    np.testing.assert_allclose(base.reshape(68, 2), (points - points.mean(0)) / np.linalg.norm(left - right), rtol=1e-5)
    assert not normalise_landmarks(np.zeros((68, 2))).any()  # degenerate: zeros, not NaN


def test_fer_gives_probabilities():
    backbone = create_backbone("fer2013_probs7")
    probs = backbone.embed(random_crops(3))
    assert probs.shape == (3, 7)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    assert np.abs(probs[0] - probs[1]).max() > 1e-4  # different faces, different answers


def test_openface_import_orders_presence_then_intensity(tmp_path):
    import pandas as pd

    path = tiny.openface_csv(tmp_path / "7.csv", 10, failed=(2, 5))
    features, times = create_backbone("openface_au34", dir=str(tmp_path)).extract_clip("7", np.zeros(0))
    frame = pd.read_csv(path, sep=", ", engine="python")
    ok = frame["success"] == 1
    expected = np.concatenate([frame.loc[ok, [f"{a}_c" for a in OPENFACE_AUS]].to_numpy(),
                               frame.loc[ok, [f"{a}_r" for a in OPENFACE_AUS]].to_numpy()], axis=1)
    assert features.shape == (8, 34)
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    np.testing.assert_allclose(times, frame.loc[ok, "timestamp"].to_numpy())


def test_organiser_pickles_load_and_code_pickles_are_refused(tmp_path):
    array = np.random.default_rng(0).normal(size=(5, 384)).astype(np.float32)
    tiny.organiser_pickle(tmp_path / "vit" / "00042.pkl", array)
    features, times = create_backbone("vidmimic_vit384", root=str(tmp_path)).extract_clip("42", np.zeros(0))
    np.testing.assert_array_equal(features, array)
    np.testing.assert_allclose(times, (np.arange(5) + 0.5) / 30)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        load_array_pickle(tmp_path / "evil.pkl")


# -- audio ---------------------------------------------------------------------------------


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (4000 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 500 * rng.normal(size=t.size)
            ).astype(np.int16)


def test_mfcc_stack8_stacks_eight_librosa_frames():
    import librosa

    audio = speech_like(1.0)
    features, times = create_backbone("mfcc128_stack8").extract(audio, SR)
    mfcc = librosa.feature.mfcc(y=audio.astype(np.float32) / 32768, sr=SR, n_mfcc=128, n_fft=400, hop_length=160,
                                n_mels=128, center=False).T
    n = len(mfcc) // 8
    assert features.shape == (n, 1024)
    np.testing.assert_allclose(features, mfcc[: n * 8].reshape(n, 1024), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.diff(times), 0.08, atol=1e-9)


def test_kaldi_fbank_peaks_at_the_tone():
    t = np.arange(SR) / SR
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    features, times = create_backbone("kaldi_fbank", num_mel_bins=40).extract(tone, SR)
    assert features.shape == (98, 40)  # Kaldi: 1 + (16000 - 400) // 160 frames
    np.testing.assert_allclose(np.diff(times), 0.01)
    # Kaldi's mel scale, 40 triangular bins between 20 Hz and 8 kHz: 1 kHz lies in bin ~12
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    edges = np.linspace(mel(20), mel(8000), 42)
    expected_bin = int(np.argmin(np.abs(edges[1:-1] - mel(1000))))
    assert abs(int(np.argmax(features.mean(0))) - expected_bin) <= 1


@pytest.mark.parametrize("name,feature_set,level", [("egemaps_v02_lld", "eGeMAPSv02", "LowLevelDescriptors"),
                                                     ("egemaps_v02_func", "eGeMAPSv02", "Functionals")])
def test_opensmile_matches_the_library(name, feature_set, level):
    import opensmile

    audio = speech_like(1.0)
    features, times = create_backbone(name).extract(audio, SR)
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=getattr(opensmile.FeatureLevel, level))
    expected = np.nan_to_num(smile.process_signal(audio.astype(np.float32) / 32768, SR).to_numpy(np.float32))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    assert len(times) == len(features) and (times <= 1.0).all()


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_speech_hidden_states_from_a_chosen_layer(kind, tmp_path):
    from transformers import HubertModel, Wav2Vec2Model

    directory = (tiny.wav2vec2_dir if kind == "wav2vec2" else tiny.hubert_dir)(tmp_path / kind)
    cls = Wav2Vec2Model if kind == "wav2vec2" else HubertModel
    audio = speech_like(1.0)
    model = cls.from_pretrained(directory).eval()
    y = audio.astype(np.float32) / 32768
    y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
    with torch.no_grad():
        hidden = model(torch.from_numpy(y)[None], output_hidden_states=True).hidden_states
    for layer in (1, -1):
        features, times = create_backbone(f"{kind}_hidden", weights=str(directory), layer=layer).extract(audio, SR)
        assert features.shape == (49, 32)  # 1 s at 20 ms, less the 25 ms receptive field
        np.testing.assert_allclose(features, hidden[layer][0].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.diff(times), 0.02)
    assert times[0] == pytest.approx(0.0125)
    with pytest.raises(ValueError, match="layer 5 out of range"):
        create_backbone(f"{kind}_hidden", weights=str(directory), layer=5)


def test_speech_chunks_cover_the_whole_clip(tmp_path):
    directory = tiny.wav2vec2_dir(tmp_path / "w2v")
    audio = speech_like(2.5)
    whole, _ = create_backbone("wav2vec2_hidden", weights=str(directory)).extract(audio, SR)
    chunked, times = create_backbone("wav2vec2_hidden", weights=str(directory), chunk_s=1.0).extract(audio, SR)
    assert abs(len(chunked) - len(whole)) <= 2 and np.isfinite(chunked).all()
    assert (np.diff(times) > 0).all() and times[-1] <= 2.5


def test_vad_model_gives_hidden_states_plus_three_outputs(tmp_path):
    from affectflow.features.backbones.speech import emotion_model_class

    directory = tiny.vad_dir(tmp_path / "vad")
    audio = speech_like(1.0)
    features, _ = create_backbone("wav2vec2_vad1027", weights=str(directory)).extract(audio, SR)
    assert features.shape == (49, 32 + 3)
    model = emotion_model_class().from_pretrained(directory).eval()
    y = audio.astype(np.float32) / 32768
    y = torch.from_numpy((y - y.mean()) / np.sqrt(y.var() + 1e-7))[None]
    with torch.no_grad():
        last = model.wav2vec2(y).last_hidden_state[0]
        vad = model.classifier(last)
        pooled, clip_vad = model(y)
    np.testing.assert_allclose(features[:, :32], last.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(features[:, 32:], vad.numpy(), rtol=1e-3, atol=1e-3)
    assert clip_vad.shape == (1, 3)  # the model card's clip-level interface works too


# -- alignment and weights -----------------------------------------------------------------


def test_align_to_frames_against_a_loop():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 2, 57))
    features = rng.normal(size=(57, 3)).astype(np.float32)
    frames = np.arange(0, 2.6, 1 / 30)
    aligned, mask = align_to_frames(features, times, frames, max_gap_s=0.05)
    for f, t in enumerate(frames):
        inside = np.abs(times - t) < 1 / 60 - 1e-12
        inside |= np.isclose(times - t, -1 / 60)  # the window is [t - p/2, t + p/2)
        nearest = np.argmin(np.abs(times - t))
        if inside.any():
            np.testing.assert_allclose(aligned[f], features[inside].mean(0), rtol=1e-5)
            assert mask[f]
        elif abs(times[nearest] - t) <= 0.05:
            np.testing.assert_allclose(aligned[f], features[nearest])
            assert mask[f]
        else:
            assert not mask[f] and not aligned[f].any()
    assert not mask[-1]  # 2.6 s is far past the last row
    empty, none = align_to_frames(np.zeros((0, 3), np.float32), np.zeros(0), frames)
    assert empty.shape == (len(frames), 3) and not none.any()


def test_weights_manifest_resolution(tmp_path):
    weights = tmp_path / "repo" / "resources" / "weights" / "r18.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not really a checkpoint")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest = tmp_path / "repo" / "resources" / "weights.yaml"
    manifest.write_text(
        "weights:\n"
        f"  r18: {{path: resources/weights/r18.pt, sha256: '{digest}', source: somewhere, licence: research}}\n"
        "  bad: {path: resources/weights/r18.pt, sha256: '" + "0" * 64 + "', source: x, licence: y}\n"
        "  absent: {path: resources/weights/none.pt, sha256: '', source: 'the authors', licence: y}\n"
    )
    assert resolve_weights("r18", manifest=manifest) == weights
    with pytest.raises(ValueError, match="manifest expects 0000"):
        resolve_weights("bad", manifest=manifest)
    with pytest.raises(FileNotFoundError, match="the authors"):
        resolve_weights("absent", manifest=manifest)
    with pytest.raises(FileNotFoundError, match="absent, bad, r18"):
        resolve_weights("nothing", manifest=manifest)
    assert resolve_weights(str(weights), manifest=manifest) == weights
