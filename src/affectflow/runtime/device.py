"""Pick the torch device: CUDA when visible (and asked for), else CPU; how long a data worker may stall."""

from __future__ import annotations

#: Seconds a DataLoader worker may take for one item before the job fails (a hung decoder, a
#: dead file system) instead of waiting for ever; the features stage's and the training loop's.
WORKER_TIMEOUT_S = 300


def pick_device(requested: str = "auto") -> str:
    """``"auto"`` gives ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
