"""ECAPA-TDNN speaker embeddings (speechbrain's implementation; papers 003 and 004) per sliding
window, from a local directory laid out as speechbrain's spkrec-ecapa-voxceleb:
``embedding_model.ckpt`` (required), ``mean_var_norm_emb.ckpt`` and ``hyperparams.yaml`` (optional).

The front end (``Fbank``), the input normalisation and ``ECAPA_TDNN`` are built in code from the
parameters (the recipe's values by default) and the state_dicts loaded with
``torch.load(weights_only=True)``. speechbrain's ``EncoderClassifier.from_hparams`` is not used:
it fetches files through the hub and instantiates whatever the hyperparams.yaml names. That file,
when present, is read as plain YAML only to check it describes the same architecture.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import yaml

from affectflow.features.base import AudioBackbone, check_positive, empty_features
from affectflow.features.registry import BACKBONES
from affectflow.features.weights import resolve_weights
from affectflow.runtime.device import pick_device
from affectflow.runtime.hashing import file_sha256

SAMPLE_RATE = 16000
FBANK_HOP = 160  # speechbrain's Fbank: 25 ms windows every 10 ms, centred (1 + n // 160 frames)
EMBEDDING_FILE = "embedding_model.ckpt"
EMBEDDING_NORM_FILE = "mean_var_norm_emb.ckpt"
HPARAMS_FILE = "hyperparams.yaml"
# speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml: Fbank(n_mels=80) and the embedding_model
# entry; res2net_scale and se_channels are ECAPA_TDNN's defaults, which the recipe keeps.
VOXCELEB_ARCH = {"n_mels": 80, "channels": (1024, 1024, 1024, 1024, 3072), "kernel_sizes": (5, 3, 3, 3, 1),
                 "dilations": (1, 2, 3, 4, 1), "attention_channels": 128, "res2net_scale": 8, "se_channels": 128,
                 "lin_neurons": 192}
_V = VOXCELEB_ARCH  # the signature's defaults


class _PlainTags(yaml.SafeLoader):
    """YAML with HyperPyYAML's tags (``!new:``, ``!ref``, ``!name:``) read as plain values, never run."""


def _untagged(loader, _suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_PlainTags.add_multi_constructor("!", _untagged)


def check_hyperparams(path: Path, arch: dict) -> None:
    """Fail when the recipe's hyperparams.yaml gives other sizes than ``arch`` (the dilations
    included, which the checkpoint's tensor shapes do not reveal). Values it does not spell out
    (a ``!ref`` to an expression) are not compared."""
    data = yaml.load(Path(path).read_text(), Loader=_PlainTags) or {}
    model = data.get("embedding_model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return

    def value(v):  # "!ref <n_mels>" reads as "<n_mels>": the top-level entry
        return data.get(v[1:-1], v) if isinstance(v, str) and v.startswith("<") and v.endswith(">") else v

    found = {key: value(model[key]) for key in arch if key in model}
    if "input_size" in model:
        found["n_mels"] = value(model["input_size"])
    wrong = {k: v for k, v in found.items() if not isinstance(v, str) and v != arch[k]}
    if wrong:
        raise ValueError(f"{path} describes another ECAPA-TDNN than the backbone's parameters: "
                         + ", ".join(f"{k} {v!r} (parameters: {arch[k]!r})" for k, v in wrong.items()))


def window_starts(n: int, window: int, hop: int) -> tuple[np.ndarray, int]:
    """Start samples and length of the windows covering ``n`` samples: every ``hop`` while a whole
    window fits, plus one ending at the clip's end if the last regular one stops short of it; a
    clip shorter than a window is one window over the whole clip."""
    if n <= window:
        return np.zeros(1, np.int64), n
    starts = np.arange(0, n - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n:
        starts = np.append(starts, n - window)
    return starts, window


@BACKBONES.register("ecapa_tdnn192")
class EcapaTdnn(AudioBackbone):
    """speechbrain ECAPA-TDNN speaker embeddings (``lin_neurons``: 192-d) per window of ``window_s``
    every ``hop_s`` seconds, timestamped at the window centres; 16 kHz audio as the recipe has it:
    80 log mel bands, each window's mean subtracted (sentence-level normalisation, as
    ``EncoderClassifier.encode_batch`` does). ``normalize_embeddings`` also subtracts the global
    embedding mean of ``mean_var_norm_emb.ckpt`` (``encode_batch(normalize=True)``; speechbrain's
    default, and verification, leave it off).

    ``window_s`` 3.0: the recipe trains on 3 s crops (train_ecapa_tdnn.yaml, ``sentence_len``), and
    speaker embeddings of shorter segments are markedly noisier; ``hop_s`` 1.0 gives one row a
    second, enough for a property that changes slowly, at three forwards per second of audio.
    On the frame timeline (:attr:`frame_gap_s`) a frame takes the window whose centre is nearest,
    if within half a window (or a hop, if larger): every frame of the clip is covered, since the
    first and last windows start and end with it. A clip shorter than a window gives one window
    over the whole clip; one too short for the network's widest dilated convolution gives (0, dim).
    The architecture parameters must describe the checkpoint (the recipe's by default).
    """

    device = "auto"
    batch_size = 32  # windows per forward

    def __init__(self, *, weights: str = "ecapa_voxceleb", window_s: float = 3.0, hop_s: float = 1.0,
                 normalize_embeddings: bool = False, n_mels: int = _V["n_mels"], channels=_V["channels"],
                 kernel_sizes=_V["kernel_sizes"], dilations=_V["dilations"],
                 attention_channels: int = _V["attention_channels"], res2net_scale: int = _V["res2net_scale"],
                 se_channels: int = _V["se_channels"], lin_neurons: int = _V["lin_neurons"]) -> None:
        check_positive("window_s", window_s)
        check_positive("hop_s", hop_s)
        for name, v in (("n_mels", n_mels), ("attention_channels", attention_channels),
                        ("res2net_scale", res2net_scale), ("se_channels", se_channels), ("lin_neurons", lin_neurons)):
            check_positive(name, v)
        channels, kernel_sizes, dilations = (list(map(int, v)) for v in (channels, kernel_sizes, dilations))
        if not len(channels) == len(kernel_sizes) == len(dilations) >= 3:
            raise ValueError(f"channels, kernel_sizes and dilations need one value per layer (at least 3), "
                             f"not {channels}, {kernel_sizes}, {dilations}")
        if min(channels + kernel_sizes + dilations) <= 0 or any(c % res2net_scale for c in channels[1:-1]):
            raise ValueError(f"channels {channels}, kernel_sizes and dilations must be > 0 and the SE-Res2Net "
                             f"channels divisible by res2net_scale {res2net_scale}")
        self.params = {"weights": weights, "window_s": float(window_s), "hop_s": float(hop_s),
                       "normalize_embeddings": bool(normalize_embeddings), "n_mels": int(n_mels),
                       "channels": channels, "kernel_sizes": kernel_sizes, "dilations": dilations,
                       "attention_channels": int(attention_channels), "res2net_scale": int(res2net_scale),
                       "se_channels": int(se_channels), "lin_neurons": int(lin_neurons)}
        self._arch = {k: self.params[k] for k in VOXCELEB_ARCH}
        self.dim = int(lin_neurons)
        self._dir = resolve_weights(weights)
        self._files = [self._dir / EMBEDDING_FILE] + ([self._dir / EMBEDDING_NORM_FILE] if normalize_embeddings else [])
        for path in self._files:
            if not path.is_file():
                raise FileNotFoundError(f"weights {weights!r}: {path} does not exist; expected a directory with "
                                        f"speechbrain's {EMBEDDING_FILE} (and {EMBEDDING_NORM_FILE} for "
                                        "normalize_embeddings), as spkrec-ecapa-voxceleb ships them")
        if (self._dir / HPARAMS_FILE).is_file():
            check_hyperparams(self._dir / HPARAMS_FILE, self._arch)
        # Every "same"-padded convolution reflects its input, which needs more frames than the
        # padding: the widest is dilation * (kernel - 1) // 2.
        min_frames = max(d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations)) + 1
        self.min_samples = (min_frames - 1) * FBANK_HOP
        self._loaded = None

    @property
    def frame_gap_s(self) -> float:
        """How far (s) from a row's timestamp a video frame may lie and still take that row: half a
        window, which the embedding describes (a hop if larger, so that no frame falls between rows)."""
        return max(self.params["window_s"] / 2, self.params["hop_s"])

    def provenance(self) -> dict:
        """The sha256 of the embedding model (and of the embedding statistics, when used); package versions."""
        versions = " ".join(f"{p} {importlib.metadata.version(p)}" for p in ("torch", "speechbrain"))
        return {"weights_sha256": ",".join(file_sha256(p) for p in self._files), "package_version": versions}

    def _modules(self):
        if self._loaded is None:
            from speechbrain.lobes.features import Fbank
            from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
            from speechbrain.processing.features import InputNormalization

            device = pick_device(self.device)
            arch = self._arch
            model = ECAPA_TDNN(arch["n_mels"], lin_neurons=arch["lin_neurons"], channels=arch["channels"],
                               kernel_sizes=arch["kernel_sizes"], dilations=arch["dilations"],
                               attention_channels=arch["attention_channels"], res2net_scale=arch["res2net_scale"],
                               se_channels=arch["se_channels"])
            load_ecapa_state(model, self._files[0])
            emb_mean = load_embedding_mean(self._files[1], self.dim).to(device) if len(self._files) > 1 else None
            # the recipe's compute_features and mean_var_norm (sentence level, means only)
            fbank = Fbank(n_mels=arch["n_mels"], sample_rate=SAMPLE_RATE)
            norm = InputNormalization(norm_type="sentence", std_norm=False)
            self._loaded = ([m.eval().to(device) for m in (fbank, norm, model)], emb_mean, device)
        return self._loaded

    def embed(self, wavs: np.ndarray) -> np.ndarray:
        """(B, n) float waveforms in [-1, 1] -> (B, dim) float32 embeddings."""
        import torch

        (fbank, norm, model), emb_mean, device = self._modules()
        x = torch.from_numpy(np.ascontiguousarray(wavs, np.float32)).to(device)
        lengths = torch.ones(len(x), device=device)
        with torch.inference_mode():
            emb = model(norm(fbank(x), lengths), lengths)[:, 0]
            if emb_mean is not None:
                emb = emb - emb_mean
        return emb.float().cpu().numpy()

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, dim) float32 embeddings of the windows and their centre times (seconds)."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"ecapa_tdnn192 expects {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
        if samples.size < max(self.min_samples, 1):
            return empty_features(self.dim)
        y = samples.astype(np.float32) / 32768.0  # speechbrain reads audio scaled to [-1, 1]
        window = int(round(self.params["window_s"] * sample_rate))
        hop = max(1, int(round(self.params["hop_s"] * sample_rate)))
        starts, length = window_starts(y.size, window, hop)
        rows = [self.embed(np.stack([y[s : s + length] for s in starts[i : i + self.batch_size]]))
                for i in range(0, len(starts), self.batch_size)]
        return np.concatenate(rows).astype(np.float32), (starts + length / 2) / sample_rate


def load_ecapa_state(model, path: Path) -> None:
    """Load an ``embedding_model.ckpt`` state_dict into ``model``; keys that do not fit are named."""
    import torch
    from speechbrain.utils.checkpoints import hook_on_loading_state_dict_checkpoint

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state_dict of tensors")
    # speechbrain's own renaming of keys of older checkpoints
    state = hook_on_loading_state_dict_checkpoint(dict(state))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensor shapes: the architecture parameters do not describe it
        raise ValueError(f"{path}: does not fit ECAPA_TDNN with these parameters: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: does not fit ECAPA_TDNN: missing keys {result.missing_keys}, "
                         f"unexpected keys {result.unexpected_keys}")


def load_embedding_mean(path: Path, dim: int):
    """The global embedding mean of speechbrain's ``mean_var_norm_emb.ckpt`` (InputNormalization
    statistics: count, glob_mean, glob_std); the recipe normalises means only (std_norm False)."""
    import torch

    stats = torch.load(path, map_location="cpu", weights_only=True)
    mean = stats.get("glob_mean") if isinstance(stats, dict) else None
    if not isinstance(mean, torch.Tensor) or mean.numel() != dim:
        raise ValueError(f"{path}: expected InputNormalization statistics with a {dim}-value glob_mean")
    return mean.reshape(dim).float()
