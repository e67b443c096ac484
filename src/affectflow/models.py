"""Temporal models by name: (B, T, D) sequences with a validity mask to one clip-level output."""

from __future__ import annotations

import torch
from torch import nn

from affectflow.registry import Registry

MODELS: Registry = Registry("temporal model")


def create_model(name: str, *, input_dim: int, output_dim: int, **params) -> nn.Module:
    """Build the model registered under ``name``."""
    return MODELS.get(name)(input_dim=input_dim, output_dim=output_dim, **params)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, H) counting only steps where ``mask`` (B, T) is true."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@MODELS.register("gru")
class GruRegressor(nn.Module):
    """Linear projection, one GRU layer, masked mean over time, linear head, sigmoid.

    The smallest sequence model that sees temporal order; the walking skeleton's default.
    """

    def __init__(self, *, input_dim: int, output_dim: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, output_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)
        h, _ = self.gru(projected)
        # Pool both the GRU states and the projected inputs: the mean keeps clip-level
        # statistics that a short recurrent memory would forget.
        pooled = torch.cat([masked_mean(h, mask), masked_mean(projected, mask)], dim=-1)
        return torch.sigmoid(self.head(pooled))
