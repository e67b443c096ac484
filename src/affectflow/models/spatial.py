"""001's visual model on face crops: ResNet18 feature maps -> spatial Transformer -> attention
pooling per frame, then a TCN + Transformer temporal encoder, attention pooling and sigmoid.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from affectflow.models.blocks import TCN, AttentionPooling, FFNHead, TransformerEncoder
from affectflow.models.registry import MODELS


def resnet18_trunk(weights_path: str | os.PathLike | None = None) -> nn.Sequential:
    """The first four conv stages of a torchvision ResNet18 (stem, layer1-3: 256 channels, stride 16).

    ``weights_path`` is a local state_dict of a full ResNet18 (e.g. trained on AffectNet), loaded
    with ``weights_only=True``; the FC and layer4 weights are ignored. None: random initialisation.
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=False)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)


@MODELS.register("spatial_attention_resnet18")
class SpatialAttentionResNet18(nn.Module):
    """Frames (B, T, 3, H, W) and a (B, T) mask -> (B, output_dim) clip intensities.

    Spatial encoder: 256-channel map of hw tokens + learnable positions, Transformer (dim 256,
    4 blocks, 4 heads), attention pooling. Temporal: TCN (k=3, 5 layers) + temporal positions +
    Transformer (dim 128), attention pooling, linear head, sigmoid.
    """

    def __init__(self, *, input_dim: int = 3, output_dim: int, image_size: int = 112, spatial_layers: int = 4,
                 spatial_heads: int = 4, dim: int = 128, layers: int = 2, heads: int = 4, tcn_layers: int = 5,
                 dropout: float = 0.1, weights_path: str | None = None, sigmoid: bool = True) -> None:
        super().__init__()
        if input_dim != 3:
            raise ValueError(f"spatial_attention_resnet18 reads RGB frames: input_dim must be 3, not {input_dim}")
        self.trunk = resnet18_trunk(weights_path)
        side = -(-image_size // 16)
        self.spatial_positions = nn.Parameter(torch.zeros(1, side * side, 256))
        nn.init.normal_(self.spatial_positions, std=0.02)
        self.spatial = TransformerEncoder(256, dim=256, layers=spatial_layers, heads=spatial_heads, dropout=dropout,
                                          positions=False)
        self.spatial_pool = AttentionPooling(256)
        self.tcn = TCN(256, hidden=dim, layers=tcn_layers, kernel=3, dropout=dropout)
        self.temporal = TransformerEncoder(dim, dim=dim, layers=layers, heads=heads, dropout=dropout)
        self.pool = AttentionPooling(dim)
        self.head = FFNHead(dim, output_dim, hidden=())
        self.sigmoid = sigmoid

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 256) spatially attention-pooled features."""
        maps = self.trunk(frames)  # (N, 256, h, w)
        tokens = maps.flatten(2).transpose(1, 2)
        if tokens.shape[1] != self.spatial_positions.shape[1]:
            raise ValueError(f"frames of {tuple(frames.shape[-2:])} give {tokens.shape[1]} tokens; the model was "
                             f"built for {self.spatial_positions.shape[1]} (image_size)")
        tokens = tokens + self.spatial_positions
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self.spatial_pool(self.spatial(tokens, valid), valid)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps = frames.shape[:2]
        per_frame = self.frame_features(frames.flatten(0, 1)).view(batch, steps, -1)
        h = self.temporal(self.tcn(per_frame, mask), mask)
        y = self.head(self.pool(h, mask))
        return torch.sigmoid(y) if self.sigmoid else y
