"""ECAPA-TDNN, VGGish and MAE backbones on tiny random models of the real classes, through the
real loading code: each output is compared with the library run directly (speechbrain's
modules, a functional VGGish forward, ``ViTMAEModel``), the VGGish front end with librosa, and
the loading rules (weights_only, key names, paths, no network) are checked."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from affectflow.features import create_backbone
from affectflow.features import testing as tiny
from affectflow.features.backbones import vggish as vg

from conftest import REPO

SR = 16000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (4000 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 500 * rng.normal(size=t.size)
            ).astype(np.int16)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("new_backbones")
    return {"ecapa": tiny.ecapa_dir(root / "ecapa"), "vggish": tiny.vggish_checkpoint(root / "vggish.pth"),
            "pca": tiny.vggish_pca_file(root / "pca.pth"), "mae": tiny.mae_dir(root / "mae")}


# -- ECAPA-TDNN ----------------------------------------------------------------------------


def speechbrain_ecapa(directory):
    """The recipe's modules, built and loaded here, run on one waveform at a time."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    model = ECAPA_TDNN(80, **tiny.TINY_ECAPA)
    model.load_state_dict(torch.load(directory / "embedding_model.ckpt", weights_only=True))
    fbank, norm = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    model.eval()

    def run(wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(wave.astype(np.float32) / 32768)[None]
        with torch.no_grad():
            return model(norm(fbank(x), torch.ones(1)), torch.ones(1))[0, 0].numpy()

    return run


def ecapa(models, **params):
    return create_backbone("ecapa_tdnn192", weights=str(models["ecapa"]), **{**tiny.TINY_ECAPA, **params})


def test_ecapa_windows_equal_speechbrain_run_directly(models):
    audio = speech_like(4.5)
    features, times = ecapa(models).extract(audio, SR)
    # 3 s windows every second, plus one ending at the clip's end: starts 0, 1 and 1.5 s
    assert features.shape == (3, 12) and features.dtype == np.float32
    np.testing.assert_allclose(times, [1.5, 2.5, 3.0])
    run = speechbrain_ecapa(models["ecapa"])
    expected = np.stack([run(audio[int(s * SR) : int(s * SR) + 3 * SR]) for s in (0, 1, 1.5)])
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(features[0] - features[1]).max() > 1e-3  # different audio, different rows
    again, _ = ecapa(models).extract(audio, SR)
    np.testing.assert_array_equal(features, again)
    # the recipe's embedding normalisation: minus the global mean of mean_var_norm_emb.ckpt
    normalised, _ = ecapa(models, normalize_embeddings=True).extract(audio, SR)
    mean = torch.load(models["ecapa"] / "mean_var_norm_emb.ckpt", weights_only=True)["glob_mean"].numpy()
    np.testing.assert_allclose(normalised, features - mean, rtol=1e-5, atol=1e-5)


def test_ecapa_short_clips(models):
    backbone = ecapa(models)
    audio = speech_like(2.0)
    features, times = backbone.extract(audio, SR)  # shorter than a window: one over the whole clip
    np.testing.assert_allclose(times, [1.0])
    np.testing.assert_allclose(features[0], speechbrain_ecapa(models["ecapa"])(audio), rtol=1e-4, atol=1e-4)
    # the widest reflect-padded convolution (kernel 3, dilation 4) needs 5 frames: 4 hops of 10 ms
    assert backbone.min_samples == 640
    assert backbone.extract(audio[:640], SR)[0].shape == (1, 12)
    assert backbone.extract(audio[:639], SR)[0].shape == (0, 12)
    assert backbone.extract(np.zeros(0, np.int16), SR)[0].shape == (0, 12)
    with pytest.raises(ValueError, match="16000 Hz"):
        backbone.extract(audio, 8000)


def test_ecapa_loading_errors_name_the_key_and_the_path(models, tmp_path):
    state = torch.load(models["ecapa"] / "embedding_model.ckpt", weights_only=True)
    state["fc.conv.weights"] = state.pop("fc.conv.weight")
    broken = tmp_path / "broken"
    broken.mkdir()
    torch.save(state, broken / "embedding_model.ckpt")
    with pytest.raises(ValueError, match=r"missing keys \['fc.conv.weight'\], unexpected keys \['fc.conv.weights'\]"):
        ecapa({"ecapa": broken}).extract(speech_like(1.0), SR)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ecapa({"ecapa": tmp_path / "nowhere"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "empty" / "embedding_model.ckpt"))):
        ecapa({"ecapa": tmp_path / "empty"})
    with pytest.raises(FileNotFoundError, match="mean_var_norm_emb.ckpt"):
        ecapa({"ecapa": broken}, normalize_embeddings=True)
    # the recipe file describes the architecture: other dilations are refused before loading
    with pytest.raises(ValueError, match=r"hyperparams.yaml describes another ECAPA-TDNN.*dilations"):
        ecapa(models, dilations=[1, 2, 2, 2, 1])
    # without it, the tensor shapes: the default (recipe) sizes do not fit the tiny checkpoint
    with pytest.raises(ValueError, match="does not fit ECAPA_TDNN with these parameters"):
        create_backbone("ecapa_tdnn192", weights=str(broken)).extract(speech_like(1.0), SR)
    with pytest.raises(ValueError, match="res2net_scale"):
        ecapa(models, channels=[12, 12, 12, 12, 36])


def test_ecapa_hyperparams_are_read_never_run(models, tmp_path):
    directory = tiny.ecapa_dir(tmp_path / "ecapa")
    marker = tmp_path / "ran"
    text = (directory / "hyperparams.yaml").read_text()
    (directory / "hyperparams.yaml").write_text(f"__run: !apply:pathlib.Path.touch [!new:pathlib.Path [{marker}]]\n"
                                                 + text)
    features, _ = ecapa({"ecapa": directory}).extract(speech_like(1.0), SR)
    assert features.shape == (1, 12) and not marker.exists()


def test_ecapa_defaults_are_the_recipes():
    from affectflow.features.backbones.ecapa import VOXCELEB_ARCH, EcapaTdnn

    assert VOXCELEB_ARCH["channels"] == (1024, 1024, 1024, 1024, 3072) and VOXCELEB_ARCH["lin_neurons"] == 192
    defaults = {k: p.default for k, p in inspect.signature(EcapaTdnn).parameters.items()}
    assert {k: defaults[k] for k in VOXCELEB_ARCH} == VOXCELEB_ARCH
    assert (defaults["window_s"], defaults["hop_s"], defaults["normalize_embeddings"]) == (3.0, 1.0, False)


# -- VGGish --------------------------------------------------------------------------------


def reference_log_mel(y: np.ndarray) -> np.ndarray:
    """librosa's STFT (the 400-sample window centred in 512 points, so the signal is shifted by
    56 samples to frame what VGGish frames) and a filterbank built from the spec by interpolation."""
    import librosa

    spectrum = np.abs(librosa.stft(np.pad(y, (56, 56)), n_fft=512, hop_length=160, win_length=400, window="hann",
                                   center=False)).T
    mel = lambda f: 1127 * np.log1p(np.asarray(f) / 700)  # noqa: E731
    points = np.linspace(mel(125), mel(7500), 66)
    bins = mel(np.fft.rfftfreq(512, 1 / SR))
    bank = np.stack([np.interp(bins, points[i : i + 3], [0, 1, 0], left=0, right=0) for i in range(64)], axis=1)
    return np.log(spectrum @ bank + 0.01)


def test_vggish_front_end_against_librosa():
    import librosa

    y = speech_like(1.0).astype(np.float64) / 32768
    ours = vg.log_mel(y)
    assert ours.shape == (98, 64)  # 1 + (16000 - 400) // 160
    np.testing.assert_allclose(ours, reference_log_mel(y), atol=1e-9)
    # librosa's own HTK mel filterbank (triangles linear in Hz, not in mel): the same within 0.02
    mel = librosa.feature.melspectrogram(y=np.pad(y, (56, 56)), sr=SR, n_fft=512, hop_length=160, win_length=400,
                                         center=False, power=1.0, n_mels=64, fmin=125, fmax=7500, htk=True, norm=None)
    np.testing.assert_allclose(ours, np.log(mel.T + 0.01), atol=0.02)
    # a 1 kHz tone peaks in the band whose centre is nearest to 1 kHz
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    centres = np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)[1:-1]
    assert int(np.argmax(vg.log_mel(tone).mean(0))) == int(np.argmin(np.abs(centres - 1127 * np.log1p(1000 / 700))))


def reference_vggish(state: dict, examples: np.ndarray) -> np.ndarray:
    """Google's VGGish forward (vggish_slim.py: ReLU after every conv and after fc1_1 and fc1_2, none after
    fc2) written with functional calls on the checkpoint's tensors, laid out as torchvggish's."""
    f = torch.nn.functional
    x = torch.from_numpy(examples.astype(np.float32))[:, None]
    for position, index in enumerate(vg.CONVS):
        x = f.relu(f.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        if position in (0, 1, 3, 5):
            x = f.max_pool2d(x, 2)
    x = torch.transpose(torch.transpose(x, 1, 3), 1, 2).reshape(len(x), -1)  # as torchvggish: (N, 6, 4, C)
    for n, index in enumerate(vg.LINEARS):
        x = f.linear(x, state[f"embeddings.{index}.weight"], state[f"embeddings.{index}.bias"])
        x = f.relu(x) if n < len(vg.LINEARS) - 1 else x  # the embedding itself has no activation
    return x.numpy()


def test_vggish_raw_embeddings_and_timestamps(models):
    audio = speech_like(3.0)
    backbone = create_backbone("vggish128", weights=str(models["vggish"]), postprocess=False)
    features, times = backbone.extract(audio, SR)
    # 298 frames: examples at frames 0, 96, 192; centred in the 0.975 s of audio each describes
    assert features.shape == (3, 128) and backbone.dim == 128
    np.testing.assert_allclose(times, [0.4875, 1.4475, 2.4075])
    mel = reference_log_mel(audio.astype(np.float64) / 32768)
    examples = np.stack([mel[s : s + 96] for s in (0, 96, 192)])
    state = torch.load(models["vggish"], weights_only=True)
    np.testing.assert_allclose(features, reference_vggish(state, examples), rtol=1e-4, atol=1e-5)
    assert (features < 0).any()  # no ReLU on the embedding: negative values reach the PCA
    assert features.std(0).max() > 1e-4
    np.testing.assert_array_equal(features, backbone.extract(audio, SR)[0])
    overlapping, times = create_backbone("vggish128", weights=str(models["vggish"]), postprocess=False,
                                         hop_s=0.48).extract(audio, SR)
    assert overlapping.shape == (5, 128)
    np.testing.assert_allclose(np.diff(times), 0.48)
    np.testing.assert_allclose(overlapping[2], features[1], rtol=1e-5, atol=1e-6)
    assert backbone.extract(audio[:15600], SR)[0].shape == (1, 128)  # 400 + 95 * 160 samples
    assert backbone.extract(audio[:15599], SR)[0].shape == (0, 128)


def test_vggish_postprocessing_is_torchvggish_pca_and_quantisation(models, tmp_path):
    audio = speech_like(3.0)
    raw, _ = create_backbone("vggish128", weights=str(models["vggish"]), postprocess=False).extract(audio, SR)
    backbone = create_backbone("vggish128", weights=str(models["vggish"]), pca=str(models["pca"]))
    features, _ = backbone.extract(audio, SR)
    params = torch.load(models["pca"], weights_only=False)  # the test's own file
    matrix = torch.as_tensor(params["pca_eigen_vectors"], dtype=torch.float)
    means = torch.as_tensor(params["pca_means"].reshape(-1, 1), dtype=torch.float)
    pca = torch.mm(matrix, torch.from_numpy(raw).T - means).T  # torchvggish's Postprocessor
    expected = torch.round((torch.clamp(pca, -2.0, 2.0) + 2.0) * (255.0 / 4.0)).numpy()
    assert np.abs(features - expected).max() <= 1 and (features == expected).mean() > 0.99
    assert ((features > 0) & (features < 255)).mean() > 0.5  # not all clipped
    assert features.dtype == np.float32 and (features == np.round(features)).all()
    # the same PCA from the checkpoint's pproc entries, and from the TensorFlow release's .npz
    with_pproc = tiny.vggish_checkpoint(tmp_path / "with_pproc.pth", pproc=True)
    from_ckpt, _ = create_backbone("vggish128", weights=str(with_pproc), pca="").extract(audio, SR)
    np.testing.assert_array_equal(from_ckpt, features)
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=params["pca_eigen_vectors"],
             pca_means=params["pca_means"])
    from_npz = create_backbone("vggish128", weights=str(models["vggish"]), pca=str(tmp_path / "vggish_pca_params.npz"))
    np.testing.assert_array_equal(from_npz.extract(audio, SR)[0], features)
    assert len(backbone.provenance()["weights_sha256"].split(",")) == 2


def test_vggish_pca_file_written_by_numpy_1_loads(models, tmp_path):
    # torchvggish's release pickled numpy 1 arrays: numpy.core.multiarray, not numpy._core
    old = tmp_path / "numpy1.pth"
    with zipfile.ZipFile(models["pca"]) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    for a, b in zip(vg.load_pca_file(old), vg.load_pca_file(models["pca"])):
        np.testing.assert_array_equal(a, b)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_vggish_loading_errors(models, tmp_path):
    state = torch.load(models["vggish"], weights_only=True)
    state["embeddings.2.weights"] = state.pop("embeddings.2.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"missing keys \['embeddings.2.weight'\], unexpected keys "
                                         r"\['embeddings.2.weights'\]"):
        create_backbone("vggish128", weights=str(tmp_path / "renamed.pth"), postprocess=False).extract(
            speech_like(1.0), SR)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("vggish128", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="no PCA parameters"):
        create_backbone("vggish128", weights=str(models["vggish"]), pca="").extract(speech_like(1.0), SR)
    torch.save({"pca_eigen_vectors": Evil(), "pca_means": np.zeros(128)}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL print was not an allowed global"):
        vg.load_pca_file(tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="hop_s must be > 0"):
        create_backbone("vggish128", weights=str(models["vggish"]), hop_s=0)
    # postprocess off: the PCA parameter is recorded empty, so it does not enter the signature
    assert create_backbone("vggish128", weights=str(models["vggish"]), postprocess=False).params["pca"] == ""


# -- MAE -----------------------------------------------------------------------------------


def normalised(images: np.ndarray) -> torch.Tensor:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return torch.from_numpy(((images / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def random_crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_mae_sees_every_patch_in_order_and_is_deterministic(models):
    from transformers import ViTMAEModel

    images = random_crops(3)
    backbone = create_backbone("mae_vit", weights=str(models["mae"]))
    features = backbone.embed(images)
    assert backbone.dim == 32 and features.shape == (3, 32)
    np.testing.assert_array_equal(features, backbone.embed(images))
    # the trap: as loaded by default, ViTMAEModel keeps a random quarter of the patches
    default = ViTMAEModel.from_pretrained(models["mae"]).eval()
    with torch.no_grad():
        a, b = (default(pixel_values=normalised(images)).last_hidden_state for _ in range(2))
    assert a.shape[1] == 1 + 49 // 4 and not torch.equal(a, b)
    # with mask_ratio 0 and random noise every patch is kept, shuffled: put back in raster order
    # with ids_restore, the tokens equal the backbone's, and the pooled features do too
    full = ViTMAEModel.from_pretrained(models["mae"], mask_ratio=0.0).eval()
    with torch.no_grad():
        out = full(pixel_values=normalised(images), noise=torch.rand(3, 49, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(out.ids_restore, torch.arange(49).expand(3, 49))
    hidden = out.last_hidden_state
    patches = torch.gather(hidden[:, 1:], 1, out.ids_restore[..., None].expand(-1, -1, 32))
    with torch.no_grad():
        ours = backbone._model()[0](normalised(images)).last_hidden_state
    np.testing.assert_allclose(ours[:, 1:].numpy(), patches.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features, patches.mean(1).numpy(), rtol=1e-4, atol=1e-4)
    cls = create_backbone("mae_vit", weights=str(models["mae"]), pool="cls").embed(images)
    np.testing.assert_allclose(cls, hidden[:, 0].numpy(), rtol=1e-4, atol=1e-4)


def test_mae_loads_the_hub_pretraining_layout(tmp_path):
    from transformers import ViTMAEForPreTraining

    directory = tiny.mae_dir(tmp_path / "pretraining", for_pretraining=True, seed=3)
    images = random_crops(2, seed=1)
    features = create_backbone("mae_vit", weights=str(directory)).embed(images)
    encoder = ViTMAEForPreTraining.from_pretrained(directory, mask_ratio=0.0).vit.eval()
    with torch.no_grad():
        hidden = encoder(pixel_values=normalised(images), noise=torch.arange(49.0).expand(2, 49)).last_hidden_state
    np.testing.assert_allclose(features, hidden[:, 1:].mean(1).numpy(), rtol=1e-4, atol=1e-4)


def test_mae_loading_errors(models, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((models["mae"] / "config.json").read_text())
    state = load_file(models["mae"] / "model.safetensors")
    state["layernorm.weights"] = state.pop("layernorm.weight")
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys \['layernorm.weight'\]"):
        create_backbone("mae_vit", weights=str(broken)).embed(random_crops(1))
    with pytest.raises(FileNotFoundError, match="no_mae"):
        create_backbone("mae_vit", weights=str(tmp_path / "no_mae"))
    vit = tiny.vit_dir(tmp_path / "vit")
    with pytest.raises(ValueError, match="model_type 'vit'"):
        create_backbone("mae_vit", weights=str(vit))
    with pytest.raises(ValueError, match="pool"):
        create_backbone("mae_vit", weights=str(models["mae"]), pool="max")


# -- all three -----------------------------------------------------------------------------


def test_registering_and_building_import_no_torch_and_running_needs_no_network(models):
    params = {"ecapa_tdnn192": {"weights": str(models["ecapa"]), **tiny.TINY_ECAPA},
              "vggish128": {"weights": str(models["vggish"]), "pca": str(models["pca"])},
              "mae_vit": {"weights": str(models["mae"])}}
    script = f"""
import json, socket, sys
import numpy as np
from affectflow.features import create_backbone
params = json.loads({json.dumps(json.dumps(params))})
built = {{name: create_backbone(name, **p) for name, p in params.items()}}
heavy = sorted(m for m in ("torch", "speechbrain", "transformers") if m in sys.modules)
assert not heavy, heavy
def refuse(*args, **kwargs):
    raise OSError("network use")
socket.socket.connect = socket.create_connection = refuse
import speechbrain.lobes.models.ECAPA_TDNN, speechbrain.lobes.features, speechbrain.processing.features
audio = (3000 * np.sin(np.arange(32000) / 8)).astype(np.int16)
print(built["ecapa_tdnn192"].extract(audio, 16000)[0].shape, built["vggish128"].extract(audio, 16000)[0].shape,
      built["mae_vit"].embed(np.zeros((1, 112, 112, 3), np.uint8)).shape)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(1, 12) (2, 128) (1, 32)"


def test_a_speechbrain_checkpoint_directory_has_a_checksum_the_manifest_can_check(models, tmp_path):
    import shutil

    from affectflow.runtime.hashing import dir_sha256

    copy = shutil.copytree(models["ecapa"], tmp_path / "ecapa")
    before = dir_sha256(copy)
    assert before == dir_sha256(models["ecapa"])
    with open(copy / "embedding_model.ckpt", "ab") as f:  # a changed checkpoint is another model
        f.write(b"\0")
    assert dir_sha256(copy) != before
    (copy / "embedding_model.ckpt").unlink()
    for extra in copy.glob("*.ckpt"):
        extra.unlink()
    with pytest.raises(FileNotFoundError, match="speechbrain embedding_model.ckpt"):
        dir_sha256(copy)

