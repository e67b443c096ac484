"""End-to-end fine-tuning: a trainable encoder (face crops or waveform) feeding a temporal model.

- :class:`ResNet18SpatialEncoder`: Yu et al. 2023 (001)'s per-frame visual branch (ResNet18 stem
  and layer1-3, spatial Transformer over the 256-channel map's tokens, attention pooling) -> (N, 256).
- :class:`Wav2Vec2VadEncoder`: audEERING's Wav2Vec2 valence-arousal-dominance model, per 20 ms
  frame the last hidden state and the regression head applied to it (Hallmen et al. 2024, 002).
- :class:`FinetuneModel`: encoder + any registered temporal model, trained together; registered
  as ``"finetune"`` (the encoder by name, see :data:`ENCODERS`).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from affectflow.features.backbones.hf import from_local, read_config
from affectflow.features.backbones.speech import emotion_model_class, n_conv_frames
from affectflow.features.backbones.torch_image import load_state_dict
from affectflow.models.blocks import AttentionPooling, TransformerEncoder
from affectflow.models.registry import MODELS, takes_modality_dims
from affectflow.models.spatial import SpatialAttentionResNet18, resnet18_trunk

log = logging.getLogger(__name__)

#: torchvision ResNet18 names of :func:`resnet18_trunk`'s stages, in its order (its Sequential's indices).
TRUNK_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
#: Checkpoint keys the trunk does not use: the classifier and the last stage.
IGNORED_PREFIXES = ("fc.", "layer4.")
#: Wav2Vec2FeatureExtractor's variance floor for its per-clip normalisation (do_normalize=True).
_NORM_EPS = 1e-7


def _to_checkpoint_name(trunk_key: str) -> str:
    """A trunk key ("4.0.conv1.weight") in the checkpoint's naming ("layer1.0.conv1.weight")."""
    index, _, rest = trunk_key.partition(".")
    return f"{TRUNK_STAGES[int(index)]}.{rest}"


def load_trunk_weights(trunk: nn.Sequential, path: str | os.PathLike) -> None:
    """Load a full ResNet18 state_dict (e.g. trained on AffectNet) into :func:`resnet18_trunk`'s trunk.

    The classifier and layer4 keys are ignored (logged with their count); any other checkpoint key
    the trunk lacks, any trunk key the checkpoint lacks, or a shape that differs is a ValueError
    naming the file and the keys.
    """
    state = load_state_dict(path)
    stage_index = {name: str(i) for i, name in enumerate(TRUNK_STAGES)}
    mapped, ignored, unexpected = {}, [], []
    for key, value in state.items():
        stage, _, rest = key.partition(".")
        if stage in stage_index:
            mapped[f"{stage_index[stage]}.{rest}"] = value
        elif key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
        else:
            unexpected.append(key)
    own = trunk.state_dict()
    # checked here, not left to load_state_dict, whose message names the trunk's indices ("0.weight")
    shapes = [f"{_to_checkpoint_name(k)} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
              for k, v in mapped.items() if k in own and v.shape != own[k].shape]
    if shapes:
        raise ValueError(f"{path}: not a torchvision ResNet18 state_dict: {len(shapes)} shape(s) differ: "
                         f"{', '.join(shapes[:5])}")
    result = trunk.load_state_dict(mapped, strict=False)
    missing = [_to_checkpoint_name(k) for k in result.missing_keys]
    unexpected += [_to_checkpoint_name(k) for k in result.unexpected_keys]
    if missing or unexpected:
        raise ValueError(f"{path}: not a torchvision ResNet18 state_dict: {len(missing)} trunk key(s) missing "
                         f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}")
    if ignored:
        log.info("%s: ignored %d key(s) the ResNet18 trunk does not use (%s)", path, len(ignored),
                 ", ".join(p.rstrip(".") for p in IGNORED_PREFIXES))


class ResNet18SpatialEncoder(nn.Module):
    """Frames (N, 3, H, W), normalised floats -> (N, 256): 001's spatial branch, trainable.

    ResNet18 stem + layer1-3 (256 channels, stride 16), the map's h*w tokens plus learnable
    positions through a Transformer (dim 256), attention pooling. Parameter names are those of
    :class:`~affectflow.models.spatial.SpatialAttentionResNet18`'s spatial part (``trunk``,
    ``spatial_positions``, ``spatial``, ``spatial_pool``). ``weights_path``: a local ResNet18
    state_dict (see :func:`load_trunk_weights`); None: random initialisation.
    """

    out_dim = 256
    weights_param = "weights_path"  # the parameter naming a run's starting weights

    def __init__(self, weights_path: str | os.PathLike | None = None, image_size: int = 112, spatial_layers: int = 4,
                 spatial_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if image_size < 1:
            raise ValueError(f"image_size must be positive, not {image_size}")
        self.image_size = image_size
        self.trunk = resnet18_trunk(None)
        if weights_path is not None:
            load_trunk_weights(self.trunk, weights_path)
        side = -(-image_size // 16)  # each stride-2 stage gives ceil(size / 2)
        self.spatial_positions = nn.Parameter(torch.zeros(1, side * side, self.out_dim))
        nn.init.normal_(self.spatial_positions, std=0.02)
        self.spatial = TransformerEncoder(self.out_dim, dim=self.out_dim, layers=spatial_layers, heads=spatial_heads,
                                          dropout=dropout, positions=False)
        self.spatial_pool = AttentionPooling(self.out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"ResNet18SpatialEncoder takes (N, 3, H, W) float frames, not {tuple(frames.shape)} "
                             f"{frames.dtype}")
        if tuple(frames.shape[-2:]) != (self.image_size, self.image_size):
            # its positions are learnt per token of an image_size map: another size has other tokens
            raise ValueError(f"ResNet18SpatialEncoder reads {self.image_size} px frames, not "
                             f"{tuple(frames.shape[-2:])}: set the run's finetune.size to the encoder's image_size")
        # The same computation as 001's model (same attribute names), so the two cannot drift apart.
        return SpatialAttentionResNet18.frame_features(self, frames)


class Wav2Vec2VadEncoder(nn.Module):
    """Waveform (B, S) + sample mask (B, S) -> ((B, T, hidden + 3) features, (B, T) frame mask).

    Per 20 ms frame: the last hidden state of audEERING's Wav2Vec2 VAD model and its regression
    head applied to that frame (arousal, dominance, valence), as the ``wav2vec2_vad1027`` backbone
    extracts them. Built from a local ``save_pretrained`` directory (``weights_dir``) or an
    ``EmotionModel`` instance (``model=``, e.g. a tiny random one in tests). With ``normalize``
    each clip is standardised over its valid samples first (as Wav2Vec2FeatureExtractor does; a
    no-op on input already standardised). In training mode the model's own SpecAugment masking
    and layer drop apply, as its config sets them. Padded frames are zeros.
    """

    weights_param = "weights_dir"  # the parameter naming a run's starting weights

    def __init__(self, weights_dir: str | os.PathLike | None = None, *, model: nn.Module | None = None,
                 normalize: bool = True) -> None:
        super().__init__()
        if (weights_dir is None) == (model is None):
            raise ValueError("Wav2Vec2VadEncoder needs either weights_dir (a local model directory) or model")
        where = "the given model"
        if model is None:
            read_config(weights_dir)  # a clear error when the directory has no config.json
            model = from_local(emotion_model_class(), weights_dir)
            where = str(weights_dir)
        if not hasattr(model, "wav2vec2") or not hasattr(model, "classifier"):
            raise ValueError(f"{where}: not an audEERING EmotionModel (wav2vec2 + classifier)")
        config = model.config
        if config.num_labels != 3:
            raise ValueError(f"{where}: the VAD model has 3 outputs, this config has {config.num_labels}")
        self.wav2vec2 = model.wav2vec2
        self.classifier = model.classifier
        self.normalize = normalize
        self.conv = {"conv_kernel": list(config.conv_kernel), "conv_stride": list(config.conv_stride)}
        self.out_dim = int(config.hidden_size) + 3

    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames per clip for (B,) sample counts (0 when shorter than the receptive field)."""
        return torch.tensor([n_conv_frames(int(n), self.conv) for n in lengths.tolist()], device=lengths.device)

    def forward(self, wave: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.ndim != 2 or mask.shape != wave.shape:
            raise ValueError(f"Wav2Vec2VadEncoder takes a (B, S) waveform and a (B, S) mask, not "
                             f"{tuple(wave.shape)} and {tuple(mask.shape)}")
        mask = mask.bool()
        wave = torch.where(mask, wave.float(), 0.0)
        if self.normalize:
            count = mask.sum(1, keepdim=True).clamp_min(1)
            mean = wave.sum(1, keepdim=True) / count
            var = (torch.where(mask, wave - mean, 0.0) ** 2).sum(1, keepdim=True) / count
            wave = torch.where(mask, (wave - mean) / torch.sqrt(var + _NORM_EPS), 0.0)
        # The attention mask keeps padded frames out of attention (and of the positional conv), so a
        # clip's valid frames do not depend on its padding (for layer-norm models such as the VAD one).
        hidden = self.wav2vec2(wave, attention_mask=mask.long()).last_hidden_state
        frames = self.frame_counts(mask.sum(1))
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device) < frames[:, None]
        features = torch.cat([hidden, self.classifier(hidden)], dim=-1)
        # where, not a product: a clip with no valid frame may carry non-finite values
        return torch.where(frame_mask[..., None], features, 0.0), frame_mask


#: Encoders by name: (class, kind), kind "frames" (B, T, 3, H, W) or "audio" (B, S).
ENCODERS: dict[str, tuple[type[nn.Module], str]] = {
    "resnet18_spatial": (ResNet18SpatialEncoder, "frames"),
    "wav2vec2_vad": (Wav2Vec2VadEncoder, "audio"),
}
KINDS = ("frames", "audio")


@contextlib.contextmanager
def _norm_statistics_kept(module: nn.Module):
    """Restore BatchNorm running statistics on exit: a checkpointed forward's recomputation must
    not update them a second time."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.training and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved, strict=True):
                for target, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), buffers, strict=True):
                    target.copy_(value)


class FinetuneModel(nn.Module):
    """An encoder and a temporal model trained together.

    ``kind="frames"``: ``forward(x, mask)`` with x (B, T, 3, H, W) floats and a (B, T) mask; the
    encoder sees the valid frames only (flattened to (N, 3, H, W)), padded steps get zeros.
    ``kind="audio"``: x (B, S) waveform and a (B, S) sample mask; the encoder gives the frames
    and their mask. Either way the temporal model maps (B, T, D) + mask to its output; keyword
    arguments (``state``, ``return_state``) are passed on to it. ``checkpointing`` recomputes the
    encoder's activations in the backward pass instead of keeping them (less memory, more time).
    """

    def __init__(self, encoder: nn.Module, temporal: nn.Module, *, kind: str, checkpointing: bool = False) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown encoder kind {kind!r}; known: {', '.join(KINDS)}")
        self.encoder = encoder
        self.temporal = temporal
        self.kind = kind
        self.checkpointing = checkpointing

    @property
    def per_frame(self) -> bool:
        """Whether the temporal model gives one output per step (frame tasks)."""
        return bool(getattr(self.temporal, "per_frame", False))

    @property
    def carries_state(self) -> bool:
        """Whether the temporal model can carry a hidden state across segments."""
        return bool(getattr(self.temporal, "carries_state", False))

    def _encode(self, *inputs):
        if not (self.checkpointing and torch.is_grad_enabled()):
            return self.encoder(*inputs)
        calls = []

        def run(*args):
            calls.append(None)
            if len(calls) == 1:
                return self.encoder(*args)
            with _norm_statistics_kept(self.encoder):  # the recomputation in the backward pass
                return self.encoder(*args)

        return checkpoint(run, *inputs, use_reentrant=False)

    def _frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[2] != 3 or mask.shape != x.shape[:2]:
            raise ValueError(f"frames take x (B, T, 3, H, W) and a (B, T) mask, not {tuple(x.shape)} and "
                             f"{tuple(mask.shape)}")
        batch, steps = mask.shape
        if not mask.any():
            return x.new_zeros(batch, steps, self.encoder.out_dim)
        features = self._encode(x[mask])  # (N, D), in row-major order of the mask
        out = features.new_zeros(batch, steps, features.shape[-1])
        return out.masked_scatter(mask[..., None], features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **temporal_kwargs):
        mask = mask.bool()
        if self.kind == "frames":
            h, steps = self._frames(x, mask), mask
        else:
            h, steps = self._encode(x, mask)
        return self.temporal(h, steps, **temporal_kwargs)


def temporal_state(state_dict: dict) -> dict:
    """The temporal model's part of a :class:`FinetuneModel`'s ``state_dict`` (``temporal.`` stripped);
    any other model's ``state_dict`` as it is. A fine-tuned model is told by its keys: all under
    ``encoder.`` or ``temporal.``, some under ``temporal.``."""
    keys = list(state_dict)
    if keys and all(k.startswith(("encoder.", "temporal.")) for k in keys) and any(k.startswith("temporal.")
                                                                                    for k in keys):
        return {k[len("temporal."):]: v for k, v in state_dict.items() if k.startswith("temporal.")}
    return state_dict


@MODELS.register("finetune")
def finetune(*, input_dim: int, output_dim: int, encoder: str, encoder_params: dict | None = None, temporal: str,
             temporal_params: dict | None = None, checkpointing: bool = False) -> FinetuneModel:
    """Encoder ``encoder`` (a name of :data:`ENCODERS`, built with ``encoder_params``) feeding the
    registered temporal model ``temporal`` (built with ``temporal_params``), trained end to end.

    ``input_dim`` is ignored: the encoder fixes the temporal model's input width (its ``out_dim``).
    """
    del input_dim  # the encoder's out_dim is the temporal model's input
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; known: {', '.join(sorted(ENCODERS))}")
    if temporal == "finetune" or takes_modality_dims(temporal):
        raise ValueError(f"temporal model {temporal!r} cannot follow an encoder: use a single-stream temporal model")
    cls, kind = ENCODERS[encoder]
    if kind == "audio" and (temporal_params or {}).get("per_frame"):
        # the inputs are samples, the labels would be frames: segments and masks would not line up
        raise ValueError(f"encoder {encoder!r} reads audio samples: a per-frame temporal model cannot follow it "
                         "(per-frame tasks fine-tune from crops)")
    module = cls(**(encoder_params or {}))
    # MODELS.get, not affectflow.models.create_model: that package imports this module.
    head = MODELS.get(temporal)(input_dim=module.out_dim, output_dim=output_dim, **(temporal_params or {}))
    return FinetuneModel(module, head, kind=kind, checkpointing=checkpointing)
