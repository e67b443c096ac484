"""Tiny randomly initialised models of every model class the backbones load, written to a
directory through the same save paths as real checkpoints, and fake per-clip feature files.

Used by the tests and the benchmark: nothing here is downloaded, and every model goes through
the backbone's real loading code (state_dict with weights_only, or from_pretrained of a local
directory).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from affectflow.features.backbones.openface import OPENFACE_AUS

# Small enough to build and run in well under a second; conv layers as the real models have
# them, so the frame rate (20 ms) and the receptive field (25 ms) are the real ones.
_SPEECH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
               conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
               vocab_size=8)


def resnet18_checkpoint(path: Path, *, n_classes: int = 8, seed: int = 0, wrap: bool = False) -> Path:
    """A randomly initialised torchvision ResNet18 state_dict with an ``n_classes`` head (AffectNet
    has 8), saved with torch.save; ``wrap`` stores it as {"state_dict": {"module." + key: ...}}."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    # random BatchNorm statistics, so that eval-mode normalisation is not the identity
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = model.state_dict()
    if wrap:
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def iresnet_checkpoint(path: Path, *, depth: int = 18, seed: int = 0, wrap: bool = False) -> Path:
    """A randomly initialised IResNet (arcface_torch layout) state_dict of ``depth``, saved with
    torch.save; ``wrap`` stores it as {"state_dict": {"module." + key: ...}}. Depth 18 is the
    smallest real configuration (the 512 * 7 * 7 fc layer makes it ~96 MB)."""
    import torch

    from affectflow.features.backbones.iresnet import build_iresnet

    torch.manual_seed(seed)
    model = build_iresnet(depth)
    # random BatchNorm statistics and affine parameters (the frozen embedding scale included),
    # so that eval-mode normalisation is not the identity
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    state = model.state_dict()
    if wrap:
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def image_checkpoint(path: Path, arch: str, *, seed: int = 0) -> Path:
    """A randomly initialised torchvision (``arch``) or timm (``timm/<name>``) state_dict."""
    import torch

    torch.manual_seed(seed)
    if arch.startswith("timm/"):
        import timm

        model = timm.create_model(arch.removeprefix("timm/"), pretrained=False, num_classes=5)
    else:
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, num_classes=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def vit_dir(path: Path, *, image_size: int = 112, hidden_size: int = 48, seed: int = 0) -> Path:
    """A tiny ``ViTModel`` (the DINO ViT class) saved with save_pretrained."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=image_size, patch_size=16, add_pooling_layer=False)
    ViTModel(config, add_pooling_layer=False).save_pretrained(path)
    return path


def wav2vec2_dir(path: Path, *, seed: int = 0) -> Path:
    """A tiny ``Wav2Vec2Model`` saved with save_pretrained."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**_SPEECH)).save_pretrained(path)
    return path


def hubert_dir(path: Path, *, seed: int = 0) -> Path:
    """A tiny ``HubertModel`` saved with save_pretrained."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    HubertModel(HubertConfig(**_SPEECH)).save_pretrained(path)
    return path


def vad_dir(path: Path, *, seed: int = 0) -> Path:
    """A tiny audEERING ``EmotionModel`` (3 outputs) saved with save_pretrained."""
    import torch
    from transformers import Wav2Vec2Config

    from affectflow.features.backbones.speech import emotion_model_class

    torch.manual_seed(seed)
    config = Wav2Vec2Config(**_SPEECH, num_labels=3, final_dropout=0.1)
    emotion_model_class()(config).save_pretrained(path)
    return path


# A tiny ECAPA-TDNN: the recipe's kernel sizes and dilations (so the shortest clip it takes is the
# real one), narrow layers; res2net_scale 8 needs channels divisible by 8.
TINY_ECAPA = {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "se_channels": 8, "lin_neurons": 12}


def _randomise_batchnorm(model) -> None:
    """Random BatchNorm statistics and affine parameters, so that eval-mode normalisation is not the identity."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.1, 0.1)


def ecapa_dir(path: Path, *, seed: int = 0, arch: dict | None = None) -> Path:
    """A tiny speechbrain ``ECAPA_TDNN`` (``TINY_ECAPA`` sizes, or ``arch``) laid out as
    spkrec-ecapa-voxceleb: ``embedding_model.ckpt`` (state_dict), ``mean_var_norm_emb.ckpt``
    (InputNormalization statistics) and a recipe-style ``hyperparams.yaml`` with the same sizes."""
    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from affectflow.features.backbones.ecapa import VOXCELEB_ARCH

    # every size, as the recipe's file lists them
    arch = {**{k: v for k, v in VOXCELEB_ARCH.items() if k != "n_mels"}, **TINY_ECAPA, **(arch or {})}
    arch = {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()}
    torch.manual_seed(seed)
    model = ECAPA_TDNN(80, **arch)
    _randomise_batchnorm(model)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "embedding_model.ckpt")
    dim = arch["lin_neurons"]
    torch.save({"count": 100, "glob_mean": torch.randn(dim), "glob_std": torch.ones(dim)},
               path / "mean_var_norm_emb.ckpt")
    (path / "hyperparams.yaml").write_text(
        "n_mels: 80\n"
        "compute_features: !new:speechbrain.lobes.features.Fbank\n    n_mels: !ref <n_mels>\n"
        "mean_var_norm: !new:speechbrain.processing.features.InputNormalization\n"
        "    norm_type: sentence\n    std_norm: False\n"
        "embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n    input_size: !ref <n_mels>\n"
        + "".join(f"    {k}: {v}\n" for k, v in arch.items())
    )
    return path


def vggish_checkpoint(path: Path, *, widths=(4, 8, 8, 8, 8, 8), hidden: int = 16, seed: int = 0,
                      pproc: bool = False) -> Path:
    """A tiny torchvggish-layout VGGish state_dict (narrow layers, the real 96 x 64 input and 128-d
    output) saved with torch.save; ``pproc`` also stores PCA parameters under ``pproc.``."""
    import torch

    from affectflow.features.backbones.vggish import vggish_class

    torch.manual_seed(seed)
    model = vggish_class()(widths, hidden=hidden)
    with torch.no_grad():  # positive biases keep the narrow ReLU layers from dying
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.uniform_(0.0, 0.2)
    state = model.state_dict()
    if pproc:
        matrix, means = _pca(seed)
        state |= {"pproc.pca_matrix": torch.from_numpy(matrix), "pproc.pca_means": torch.from_numpy(means[:, None])}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _pca(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = np.linalg.qr(rng.normal(size=(128, 128)))[0] * 3.0  # a rotation and a whitening scale
    return matrix.astype(np.float32), rng.uniform(0.0, 0.3, 128).astype(np.float32)


def vggish_pca_file(path: Path, *, seed: int = 0) -> Path:
    """PCA parameters as torchvggish releases them (vggish_pca_params-*.pth): a torch.save'd dict of
    numpy arrays ``pca_eigen_vectors`` (128 x 128) and ``pca_means`` (128,)."""
    import torch

    matrix, means = _pca(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"pca_eigen_vectors": matrix.astype(np.float64), "pca_means": means.astype(np.float64)}, path)
    return path


def mae_dir(path: Path, *, image_size: int = 112, hidden_size: int = 32, seed: int = 0,
            for_pretraining: bool = False) -> Path:
    """A tiny ``ViTMAEModel`` saved with save_pretrained; ``for_pretraining`` saves the hub's
    layout instead (``ViTMAEForPreTraining``: the encoder under ``vit.`` plus a decoder)."""
    import torch
    from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

    torch.manual_seed(seed)
    config = ViTMAEConfig(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                          image_size=image_size, patch_size=16, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                          decoder_num_attention_heads=2, decoder_intermediate_size=32)
    (ViTMAEForPreTraining if for_pretraining else ViTMAEModel)(config).save_pretrained(path)
    return path


def openface_csv(path: Path, n_frames: int, *, fps: float = 30.0, failed: tuple[int, ...] = (), seed: int = 0) -> Path:
    """An OpenFace 2.0 FeatureExtraction-style CSV (", "-separated header, as the tool writes it)."""
    rng = np.random.default_rng(seed)
    columns = ["frame", "face_id", "timestamp", "confidence", "success"]
    columns += [f"AU{a[2:]}_r" for a in OPENFACE_AUS] + [f"{a}_c" for a in (*OPENFACE_AUS[:-1], "AU28", "AU45")]
    rows = []
    for i in range(n_frames):
        ok = i not in failed
        values = {"frame": i + 1, "face_id": 0, "timestamp": round(i / fps, 3), "confidence": 0.98 if ok else 0.0,
                  "success": int(ok)}
        for column in columns[5:]:
            values[column] = round(float(rng.uniform(0, 5)), 2) if column.endswith("_r") else int(rng.integers(0, 2))
        rows.append(", ".join(str(values[c]) for c in columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(", ".join(columns) + "\n" + "\n".join(rows) + "\n")
    return path


def organiser_pickle(path: Path, array: np.ndarray) -> Path:
    """A Hume-Vidmimic2-style feature file: a pickled numpy array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(np.asarray(array)))
    return path


def finetuned_run_dir(path: Path, *, seed: int = 0) -> Path:
    """A fine-tuning run's directory with one fold (``fold0``: ``model.pt`` without feature
    statistics, ``config.json``, ``metrics.json``) of a randomly initialised ``resnet18_spatial``
    encoder for 32 px crops, as :func:`affectflow.training.fold.train_fold` writes one."""
    import json

    import torch

    from affectflow.models import create_model
    from affectflow.training import checkpoints
    from affectflow.training.settings import TrainSettings, recorded_settings

    params = {"encoder": "resnet18_spatial", "encoder_params": {"image_size": 32, "spatial_layers": 1},
              "temporal": "gru", "temporal_params": {"hidden": 8}}
    fold = Path(path) / "fold0"
    fold.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_model("finetune", input_dim=0, output_dim=1, **params)
    checkpoints.save(fold / "model.pt", {"state_dict": model.state_dict(), "mean": torch.zeros(0),
                                         "std": torch.ones(0)})
    settings = TrainSettings(model="finetune", model_params=params, finetune={"input": "crops", "size": 32})
    (fold / "config.json").write_text(json.dumps({**recorded_settings(settings), "targets": ["y"], "input_dim": 0,
                                                  "backbones": None}))
    (fold / "metrics.json").write_text(json.dumps({"oof_score": {"mean": 0.5}}))
    return Path(path)


def tiny_backbone_params(root: Path) -> dict[str, dict]:
    """Parameters that make every built-in backbone run on tiny models and files under ``root``.

    The features tests are parametrised over the registry with these; a new backbone needs an
    entry here to be tested (a test fails until it has one).
    """
    root = Path(root)
    resnet = resnet18_checkpoint(root / "resnet18.pt")
    iresnet = iresnet_checkpoint(root / "iresnet18.pt", depth=18)  # the smallest real IResNet
    openface = root / "openface"
    openface_csv(openface / "1.csv", 12)
    vidmimic = root / "vidmimic"
    organiser_pickle(vidmimic / "vit" / "00001.pkl", np.random.default_rng(0).normal(size=(9, 384)))
    organiser_pickle(vidmimic / "wav2vec2" / "00001.pkl", np.random.default_rng(1).normal(size=(20, 768)))
    return {
        "dlib_face128": {},
        "dlib_landmarks68": {},
        "fer2013_probs7": {},
        "resnet18_pool512": {"weights": str(resnet)},
        "resnet18_maps": {"weights": str(resnet)},
        "iresnet100_512": {"weights": str(iresnet), "depth": 18},
        "image_local": {"arch": "timm/test_vit",
                        "weights": str(image_checkpoint(root / "test_vit.pt", "timm/test_vit")),
                        "input_size": 160},
        "dino_vits16": {"weights": str(vit_dir(root / "vit"))},
        "openface_au34": {"dir": str(openface)},
        "vidmimic_vit384": {"root": str(vidmimic)},
        "mfcc128": {},
        "mfcc128_stack8": {},
        "kaldi_fbank": {},
        "egemaps_v02_lld": {},
        "egemaps_v02_func": {},
        "compare_2016_lld": {},
        "compare_2016_func": {},
        "wav2vec2_hidden": {"weights": str(wav2vec2_dir(root / "wav2vec2"))},
        "hubert_hidden": {"weights": str(hubert_dir(root / "hubert"))},
        "wav2vec2_vad1027": {"weights": str(vad_dir(root / "vad"))},
        "vidmimic_wav2vec2_768": {"root": str(vidmimic)},
        "ecapa_tdnn192": {"weights": str(ecapa_dir(root / "ecapa")), **TINY_ECAPA},
        "vggish128": {"weights": str(vggish_checkpoint(root / "vggish.pth")),
                      "pca": str(vggish_pca_file(root / "vggish_pca.pth"))},
        "mae_vit": {"weights": str(mae_dir(root / "mae"))},
        "finetuned": {"run": "tiny", "fold": "best", "models": str(finetuned_run_dir(root / "finetuned")),
                      "input": "crops"},
    }
