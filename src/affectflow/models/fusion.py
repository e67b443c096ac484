"""Audio-visual fusion (point 2): early, late by encoders, late by predictions, cross-attention.

Multimodal models read the modalities concatenated along the feature axis on a shared timeline,
(B, T, sum(modality_dims)), in the order of ``modality_dims`` (video first, then audio, for 001's
modality dropout), with one validity mask.

Branch initialisation (001: "unimodal branches trained first and frozen"): ``branch_checkpoints``
names, per modality, a unimodal model's ``model.pt`` (or None) whose weights are loaded into that
modality's branch. The key mapping is fixed by the fusion (:data:`BRANCH_KEY_MAP`):

- ``late_encoders``: the unimodal model's ``encoder.*`` (a :class:`SequenceModel`'s encoder stack)
  become ``encoders.<i>.*``; its pooling and head are not used.
- ``late_predictions``: the whole unimodal model becomes ``models.<i>.*``.

``freeze_branches=True`` then stops gradients into the loaded branches and keeps them in eval
mode (no dropout) while the rest of the model trains.
"""

from __future__ import annotations

import torch
from torch import nn

from affectflow.models.blocks import (
    AttentionPooling,
    CrossAttention,
    FFNHead,
    TransformerEncoder,
    masked_mean,
    modality_dropout,
)
from affectflow.models.finetune import temporal_state
from affectflow.models.registry import MODELS, multimodal
from affectflow.models.temporal import EncoderStack, SequenceModel, build_encoder_stack, head_options
from affectflow.training import checkpoints

FUSIONS = ("early", "late_encoders", "late_predictions")
# fusion -> (key prefix in the unimodal model's state dict, attribute holding the branches):
# branch i of the fusion model is ``<attribute>.<i>`` and takes the unimodal keys under the prefix.
BRANCH_KEY_MAP = {"late_encoders": ("encoder.", "encoders"), "late_predictions": ("", "models")}


def unimodal_branch_state(state_dict: dict, fusion: str) -> dict:
    """The part of a unimodal model's ``state_dict`` that a ``fusion`` branch takes, with the
    unimodal prefix stripped (see :data:`BRANCH_KEY_MAP`). A fine-tuned model's branch is its
    temporal model (:func:`~affectflow.models.finetune.temporal_state`): the fused run reads its
    encoder's outputs as features."""
    if fusion not in BRANCH_KEY_MAP:
        raise ValueError(f"fusion {fusion!r} has no per-modality branches; branches exist for "
                         f"{', '.join(BRANCH_KEY_MAP)}")
    prefix = BRANCH_KEY_MAP[fusion][0]
    state_dict = temporal_state(state_dict)
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _listed(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "") if keys else "none"


def branch_mismatch(branch: nn.Module, state: dict) -> str | None:
    """Why ``state`` (a branch state from :func:`unimodal_branch_state`) does not fit ``branch``:
    missing, unexpected and mis-shaped keys; None when it fits."""
    own = branch.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                    if tuple(state[k].shape) != tuple(own[k].shape))
    if not (missing or unexpected or shapes):
        return None
    return (f"missing keys: {_listed(missing)}; unexpected keys: {_listed(unexpected)}"
            + (f"; shape mismatches (checkpoint vs branch): {', '.join(shapes[:6])}" if shapes else ""))


def _check_dims(modality_dims, input_dim: int) -> list[int]:
    dims = [int(d) for d in modality_dims or []]
    if len(dims) < 2 or sum(dims) != input_dim:
        raise ValueError(f"modality_dims={modality_dims} must list >= 2 widths summing to input_dim={input_dim}")
    return dims


class FusionModel(nn.Module):
    """Fuse modalities early (concat -> FC -> encoder), late by encoders (an encoder per modality,
    concat + LayerNorm + Linear) or late by predictions (a model per modality, averaged, 000).

    Early fusion is that of Liu et al. 2023 (003), 3.2.3: "Given the visual features f^v and audio
    features f^a corresponding to a frame, they are first concatenated and then fed into a
    fully-connected layer to produce the multimodal representations f^m", "f^m = W_f[f^v; f^a] +
    b_f" (eq. 1), and "Afterward, the multi-modal representations are fed into a temporal encoder
    for context modeling." ``fuse`` is that layer: one ``Linear(sum(modality_dims), fusion_dim)``
    per frame, no activation (eq. 1 has none); the paper does not state its width, and for its
    Transformer "the affine dimension is 1024" (4.2), so ``fusion_dim`` equal to the Transformer's
    ``dim`` makes ``fuse`` the Transformer's input affine. An early-fusion model whose encoder ends
    in an LSTM/GRU ``carries_state`` across segments as its encoder does (Liu et al. 2023 (003), 3.3.1-3.3.2).

    ``modality_dropout={"p_m": .9, "p_v": .5}`` (001, late_encoders and early only) keeps both
    modalities with probability p_m, else video only with p_v, else audio only; it acts only in
    training mode, so evaluation always sees both.
    """

    def __init__(self, *, input_dim: int, output_dim: int, modality_dims, fusion: str = "late_encoders",
                 encoder: str = "tcn_transformer", fusion_dim: int = 128, modality_dropout: dict | None = None,
                 branch_checkpoints: list | None = None, freeze_branches: bool = False, **params) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; known: {', '.join(FUSIONS)}")
        self.dims = _check_dims(modality_dims, input_dim)
        self.fusion = fusion
        head = head_options(params)
        self.per_frame = bool(head.get("per_frame", False))
        if modality_dropout is not None:
            if fusion == "late_predictions" or len(self.dims) != 2:
                raise ValueError("modality_dropout needs fusion 'early' or 'late_encoders' and two modalities")
            unknown = set(modality_dropout) - {"p_m", "p_v"}
            if unknown:
                raise ValueError(f"modality_dropout: unknown key(s) {sorted(unknown)}; known: p_m, p_v")
        self.modality_dropout = dict(modality_dropout) if modality_dropout else None

        used: set[str] = set()

        def stack(dim):
            p = dict(params)
            built = build_encoder_stack(encoder, dim, p)
            used.update(set(params) - set(p))
            return built

        if fusion == "early":
            # eq. 1 of Liu et al. 2023 (003): a plain affine layer (keys fuse.weight / fuse.bias)
            self.fuse = nn.Linear(input_dim, fusion_dim)
            self.model = SequenceModel(stack(fusion_dim), output_dim=output_dim, **head)
        elif fusion == "late_encoders":
            self.encoders = nn.ModuleList(stack(d) for d in self.dims)
            width = sum(e.out_dim for e in self.encoders)
            self.fuse = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, fusion_dim))
            pooling = head.pop("pooling", "attention")
            head.pop("per_frame", None)
            self.sigmoid = head.pop("sigmoid", True)
            self.pool = AttentionPooling(fusion_dim) if pooling == "attention" else None
            self.head = FFNHead(fusion_dim, output_dim, hidden=tuple(head.pop("head_hidden", (128,))),
                                dropout=head.pop("head_dropout", 0.0),
                                activation=head.pop("head_activation", "relu"))
        else:
            self.models = nn.ModuleList(
                SequenceModel(stack(d), output_dim=output_dim, **head) for d in self.dims
            )
        leftover = set(params) - used - {"dropout"}
        if leftover:
            raise TypeError(f"fusion model: unknown parameter(s) {sorted(leftover)}")
        self.frozen: list[int] = []
        if branch_checkpoints is not None or freeze_branches:
            self.init_branches(branch_checkpoints or [], freeze=freeze_branches)

    @property
    def branches(self) -> nn.ModuleList:
        """One module per modality (late fusions only), in the order of ``modality_dims``."""
        if self.fusion not in BRANCH_KEY_MAP:
            raise ValueError(f"fusion {self.fusion!r} has no per-modality branches")
        return getattr(self, BRANCH_KEY_MAP[self.fusion][1])

    def init_branches(self, paths: list, *, freeze: bool = False) -> None:
        """Load unimodal models' weights (``model.pt`` files, None to skip a modality) into the
        branches; with ``freeze``, those branches stop learning and stay in eval mode.

        A checkpoint whose keys do not fit its branch (another model family or width) fails
        naming the file and the missing/unexpected keys.
        """
        branches = self.branches
        if len(paths) != len(branches):
            raise ValueError(f"branch_checkpoints: {len(paths)} entries for {len(branches)} modalities "
                             f"(modality_dims={self.dims}); use null for a branch trained from scratch")
        loaded = []
        for i, (path, branch) in enumerate(zip(paths, branches)):
            if path is None:
                continue
            payload = checkpoints.load(path)
            if not isinstance(payload, dict) or "state_dict" not in payload:
                raise ValueError(f"{path}: not a model.pt of a train fold (no 'state_dict')")
            state = unimodal_branch_state(payload["state_dict"], self.fusion)
            why = branch_mismatch(branch, state)
            if why:
                raise ValueError(f"{path}: does not fit branch {i} of the {self.fusion} fusion model "
                                 f"(a unimodal model of the same family and widths is needed): {why}")
            branch.load_state_dict(state)
            loaded.append(i)
        if freeze:
            if not loaded:
                raise ValueError("freeze_branches needs at least one branch checkpoint (branch_checkpoints)")
            for i in loaded:
                branches[i].requires_grad_(False)
            self.frozen = loaded
            self.train(self.training)

    def train(self, mode: bool = True):
        """Set training mode; frozen branches stay in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        for i in getattr(self, "frozen", []):
            self.branches[i].eval()
        return self

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-modality slices of (B, T, sum(dims))."""
        return list(torch.split(x, self.dims, dim=-1))

    def _dropout(self, parts):
        if self.modality_dropout is None or not self.training:
            return parts
        return modality_dropout(parts, **self.modality_dropout)

    @property
    def carries_state(self) -> bool:
        """Whether ``forward(..., state=...)`` can carry a hidden state across segments: early
        fusion into an encoder ending in an LSTM/GRU."""
        return self.fusion == "early" and self.model.carries_state

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, state=None, return_state: bool = False):
        """(B, T, sum(dims)) -> outputs; with ``return_state``, also the carried state (None unless
        :attr:`carries_state`)."""
        parts = self.split(x)
        if self.fusion == "early":
            fused = self.fuse(torch.cat(self._dropout(parts), dim=-1))
            return self.model(fused, mask, state=state, return_state=return_state)
        if state is not None:
            raise ValueError(f"only early fusion into an LSTM/GRU can carry a hidden state, not {self.fusion!r}")
        y = self._late(parts, mask)
        return (y, None) if return_state else y

    def _late(self, parts: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if self.fusion == "late_predictions":
            return torch.stack([m(p, mask) for m, p in zip(self.models, parts, strict=True)]).mean(0)
        encoded = self._dropout([enc(p, mask) for enc, p in zip(self.encoders, parts, strict=True)])
        h = self.fuse(torch.cat(encoded, dim=-1))
        if not self.per_frame:
            h = self.pool(h, mask) if self.pool is not None else masked_mean(h, mask)
        y = self.head(h)
        return torch.sigmoid(y) if self.sigmoid else y


@MODELS.register("fusion")
@multimodal
def create_fusion(*, input_dim: int, output_dim: int, **params) -> FusionModel:
    """A :class:`FusionModel` (``fusion``: early, late_encoders or late_predictions)."""
    return FusionModel(input_dim=input_dim, output_dim=output_dim, **params)


@MODELS.register("dual_transformer")
@multimodal
def create_dual_transformer(*, input_dim: int, output_dim: int, **params) -> FusionModel:
    """004's Dual Transformer: a Transformer encoder per modality, encodings concatenated."""
    return FusionModel(input_dim=input_dim, output_dim=output_dim, fusion="late_encoders", encoder="transformer",
                       **params)


@MODELS.register("cross_attention_transformer")
@multimodal
class CrossAttentionTransformer(nn.Module):
    """004's CrossAttention+Transformer: each modality attends to the other, then a joint Transformer."""

    def __init__(self, *, input_dim: int, output_dim: int, modality_dims, dim: int = 128, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1, **params) -> None:
        super().__init__()
        self.dims = _check_dims(modality_dims, input_dim)
        if len(self.dims) != 2:
            raise ValueError(f"cross attention needs exactly two modalities, got modality_dims={modality_dims}")
        head = head_options(params)
        self.per_frame = bool(head.get("per_frame", False))
        if params:
            raise TypeError(f"cross_attention_transformer: unknown parameter(s) {sorted(params)}")
        self.project = nn.ModuleList(nn.Linear(d, dim) for d in self.dims)
        self.cross = nn.ModuleList(CrossAttention(dim, heads=heads, dropout=dropout) for _ in range(2))
        self.model = SequenceModel(
            EncoderStack([TransformerEncoder(2 * dim, dim=dim, layers=layers, heads=heads, dropout=dropout)]),
            output_dim=output_dim, **head)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a, b = (p(part) for p, part in zip(self.project, torch.split(x, self.dims, dim=-1)))
        fused = torch.cat([self.cross[0](a, b, mask), self.cross[1](b, a, mask)], dim=-1)
        return self.model(fused, mask)

