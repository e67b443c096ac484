"""Checkpoints as plain state dicts (tensors, numbers, strings), loadable with ``weights_only=True``.

Never a pickled module: a checkpoint is the model's ``state_dict`` plus the config needed to
rebuild the model from the registry, so loading runs no code from the file.
"""

from __future__ import annotations

import os

import torch

from affectflow.runtime.atomic import atomic_path


def save(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` atomically (a kill mid-write leaves the previous checkpoint intact)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` (refuses pickled objects)."""
    return torch.load(path, map_location=map_location, weights_only=True)

