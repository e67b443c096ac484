"""Temporal models by name: (B, T, D) sequences with a validity mask to clip- or frame-level outputs.

``create_model(name, input_dim=..., output_dim=..., **params)`` builds any registered model;
``MODELS.names()`` lists them. Modules: ``blocks`` (TCN, Transformer, LSTM/GRU encoders, pooling,
heads), ``temporal`` (single-stream models), ``fusion`` (multimodal), ``spatial`` (001's frame model).
"""

from __future__ import annotations

from torch import nn

from affectflow.models import finetune, fusion, spatial, temporal  # noqa: F401  (register the models)
from affectflow.models.blocks import masked_mean
from affectflow.models.registry import MODELS, takes_modality_dims
from affectflow.models.temporal import GruRegressor

__all__ = ["MODELS", "GruRegressor", "count_parameters", "create_model", "masked_mean", "takes_modality_dims"]


def create_model(name: str, *, input_dim: int, output_dim: int, **params) -> nn.Module:
    """Build the model registered under ``name``."""
    return MODELS.get(name)(input_dim=input_dim, output_dim=output_dim, **params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
