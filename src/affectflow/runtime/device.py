"""Pick the torch device: CUDA when visible (and asked for), else CPU."""

from __future__ import annotations


def pick_device(requested: str = "auto") -> str:
    """``"auto"`` gives ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
