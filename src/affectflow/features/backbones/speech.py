"""Self-supervised speech models from a local directory (transformers): Wav2Vec2 and HuBERT
hidden states from a chosen layer, and audEERING's Wav2Vec2 valence-arousal-dominance model
(hidden states plus the 3 VAD outputs per frame = 1027-d for the large model, paper 002).
"""

from __future__ import annotations

import functools

import numpy as np

from affectflow.features.backbones.hf import from_local, read_config, versions
from affectflow.features.base import AudioBackbone, check_positive, empty_features
from affectflow.features.registry import BACKBONES
from affectflow.features.weights import resolve_weights, weights_sha256
from affectflow.runtime.device import pick_device


def conv_geometry(config: dict) -> tuple[int, int]:
    """(receptive field, stride) in samples of the convolutional feature encoder."""
    kernels = config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])
    strides = config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field, jump


def n_conv_frames(n_samples: int, config: dict) -> int:
    """Frames the encoder gives for ``n_samples`` (0 when shorter than its receptive field)."""
    length = n_samples
    for kernel, stride in zip(config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]),
                              config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


@functools.cache
def emotion_model_class():
    """audEERING's ``EmotionModel`` (w2v2-large-robust-12-ft-emotion-msp-dim): Wav2Vec2 plus a
    regression head (dropout, dense, tanh, dropout, out_proj) giving arousal, dominance, valence.

    Defined here because the checkpoint names its class rather than shipping code; parameter
    names match the published checkpoint (``wav2vec2.*``, ``classifier.dense``, ``classifier.out_proj``).
    """
    import torch
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = torch.nn.Dropout(config.final_dropout)
            self.out_proj = torch.nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features):
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            return self.out_proj(self.dropout(x))

    class EmotionModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values):
            """Clip-level (pooled hidden state, VAD), as the model card defines it."""
            hidden = self.wav2vec2(input_values)[0]
            pooled = hidden.mean(1)
            return pooled, self.classifier(pooled)

    return EmotionModel


class _SpeechBackbone(AudioBackbone):
    """Shared: per-clip normalisation, chunked encoding, frame timestamps."""

    device = "auto"
    extra_dims = 0

    def __init__(self, *, weights: str, layer: int, chunk_s: float, normalize: bool) -> None:
        check_positive("chunk_s", chunk_s)
        self._dir = resolve_weights(weights)
        self._config = read_config(self._dir)
        n_layers = int(self._config["num_hidden_layers"])
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(f"layer {layer} out of range for a {n_layers}-layer model: use 0 (the CNN "
                             f"features) to {n_layers}, or -1 for the last")
        self.params = {"weights": weights, "layer": int(layer), "chunk_s": float(chunk_s), "normalize": bool(normalize)}
        self.dim = int(self._config["hidden_size"]) + self.extra_dims
        self._field, self._stride = conv_geometry(self._config)
        self._loaded = None

    def provenance(self) -> dict:
        """The model directory's sha256 and the torch/transformers versions."""
        return {"weights_sha256": weights_sha256(self._dir), "package_version": versions()}

    def load(self):
        """The model (eval mode) on its device."""
        raise NotImplementedError

    def _model(self):
        if self._loaded is None:
            device = pick_device(self.device)
            self._loaded = (self.load().eval().to(device), device)
        return self._loaded

    def encode(self, wave) -> np.ndarray:
        """(1, n) float tensor on the device -> (T, dim) float32."""
        raise NotImplementedError

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, dim) float32 per encoder frame (20 ms for 16 kHz Wav2Vec2) and each frame's centre time.

        Audio is encoded in chunks of ``chunk_s`` seconds (a multiple of the encoder stride), since
        attention memory grows with the square of the length; audio shorter than the receptive
        field (25 ms) gives T = 0.
        """
        if sample_rate != 16000:
            raise ValueError(f"{type(self).__name__} expects 16 kHz audio, not {sample_rate} Hz")
        if n_conv_frames(samples.size, self._config) == 0:
            return empty_features(self.dim)
        import torch

        y = samples.astype(np.float32) / 32768.0
        if self.params["normalize"]:  # as Wav2Vec2FeatureExtractor(do_normalize=True): per clip
            y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
        model, device = self._model()
        chunk = max(1, int(self.params["chunk_s"] * sample_rate) // self._stride) * self._stride
        rows = []
        for start in range(0, len(y), chunk):
            piece = y[start : start + chunk]
            if n_conv_frames(piece.size, self._config) == 0:
                break  # a tail shorter than the receptive field
            with torch.inference_mode():
                rows.append(self.encode(torch.from_numpy(np.ascontiguousarray(piece))[None].to(device)))
        features = np.concatenate(rows).astype(np.float32)
        # Frames of chunk k start at k * chunk samples; chunks are stride multiples, so this is i * stride.
        timestamps = (np.arange(len(features)) * self._stride + self._field / 2) / sample_rate
        return features, timestamps


@BACKBONES.register("wav2vec2_hidden")
class Wav2Vec2Hidden(_SpeechBackbone):
    """Hidden states of a Wav2Vec2 model (``Wav2Vec2Model``) from layer ``layer`` (-1 = last;
    0 = the projected CNN features), per 20 ms frame; 768-d base, 1024-d large."""

    def __init__(self, *, weights: str = "wav2vec2", layer: int = -1, chunk_s: float = 30.0,
                 normalize: bool = True) -> None:
        super().__init__(weights=weights, layer=layer, chunk_s=chunk_s, normalize=normalize)

    def load(self):
        from transformers import Wav2Vec2Model

        return from_local(Wav2Vec2Model, self._dir)

    def encode(self, wave) -> np.ndarray:
        out = self._model()[0](wave, output_hidden_states=True)
        return out.hidden_states[self.params["layer"]][0].float().cpu().numpy()


@BACKBONES.register("hubert_hidden")
class HubertHidden(Wav2Vec2Hidden):
    """Hidden states of a HuBERT model (``HubertModel``) from layer ``layer``, per 20 ms frame."""

    def __init__(self, *, weights: str = "hubert", layer: int = -1, chunk_s: float = 30.0,
                 normalize: bool = True) -> None:
        super().__init__(weights=weights, layer=layer, chunk_s=chunk_s, normalize=normalize)

    def load(self):
        from transformers import HubertModel

        return from_local(HubertModel, self._dir)


@BACKBONES.register("wav2vec2_vad1027")
class Wav2Vec2Vad(_SpeechBackbone):
    """audEERING's Wav2Vec2 valence-arousal-dominance model: per 20 ms frame the hidden state of
    layer ``layer`` (default last: 1024-d) plus the regression head applied to that frame's last
    hidden state (arousal, dominance, valence) = 1027-d (paper 002)."""

    extra_dims = 3

    def __init__(self, *, weights: str = "w2v2_vad_msp", layer: int = -1, chunk_s: float = 30.0,
                 normalize: bool = True) -> None:
        super().__init__(weights=weights, layer=layer, chunk_s=chunk_s, normalize=normalize)
        n_labels = len(self._config.get("id2label") or {}) or int(self._config.get("num_labels", 3))
        if n_labels != 3:
            raise ValueError(f"{self._dir}: the VAD model has 3 outputs, this config has {n_labels}")

    def load(self):
        return from_local(emotion_model_class(), self._dir)

    def encode(self, wave) -> np.ndarray:
        import torch

        model = self._model()[0]
        out = model.wav2vec2(wave, output_hidden_states=True)
        vad = model.classifier(out.last_hidden_state[0])
        hidden = out.hidden_states[self.params["layer"]][0]
        return torch.cat([hidden, vad], dim=1).float().cpu().numpy()
