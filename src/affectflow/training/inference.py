"""Predictions of a trained sequence model: whole sequences, or windows of them (per-frame models
with segments: the hidden state carried across consecutive windows, or overlapping windows
averaged), each window read and collated on its own so a batch never holds its whole tracks.
"""

from __future__ import annotations

import numpy as np
import torch

from affectflow.training.batching import length_batches, pad, segments
from affectflow.training.settings import TrainSettings
from affectflow.training.track_store import as_tensor

__all__ = ["predict"]


@torch.no_grad()
def predict(model: torch.nn.Module, xs: list, *, settings: TrainSettings, device: str = "cpu") -> list[np.ndarray]:
    """Predictions for each (T, D) sequence (a tensor, an array or a track view): (K,) for clip
    models, (T, K) for per-frame models.

    Per-frame models with ``segment_length`` predict window by window: carrying the hidden state
    across consecutive windows (``carry_state``) or averaging overlapping windows. Each window is
    read and collated on its own: a batch never holds its whole tracks at once.
    """
    model.eval()
    per_frame = bool(getattr(model, "per_frame", False))
    out: list[np.ndarray | None] = [None] * len(xs)
    order = length_batches([len(x) for x in xs], settings.batch_size, shuffle=False)
    length = settings.segment_length if per_frame else 0
    for batch in order:
        seqs = [xs[i] for i in batch]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=settings.amp and str(device).startswith("cuda")):
            if length and settings.carry_state:
                y = _carried(model, seqs, length, device)
            elif length:
                y = _windowed(model, seqs, length, settings.segment_stride or length, device)
            else:
                x, mask = pad([as_tensor(s) for s in seqs])
                y = model(x.to(device), mask.to(device)).float()
        for row, i in enumerate(batch):
            out[i] = y[row, : len(xs[i])].cpu().numpy() if per_frame else y[row].cpu().numpy()
    return out


def _carried(model, seqs: list, length: int, device: str) -> torch.Tensor:
    """(B, T_max, K) predictions of a state-carrying model, window by window with the state carried;
    each window collated on its own (never the whole tracks padded at once)."""
    pieces, state = [], None
    for start in range(0, max(len(s) for s in seqs), length):
        x, mask = pad([as_tensor(s[start : start + length]) for s in seqs])
        piece, state = model(x.to(device), mask.to(device), state=state, return_state=True)
        pieces.append(piece.float())
    return torch.cat(pieces, dim=1)


def _windowed(model, seqs: list, length: int, stride: int, device: str) -> torch.Tensor:
    """(B, T_max, K) per-frame predictions from overlapping windows, each frame the mean of the
    windows covering it; each window collated on its own (the same values as windows of the padded
    batch: a track that has ended pads its rows with mask False)."""
    steps = max(len(s) for s in seqs)
    total, counts = None, torch.zeros(len(seqs), steps, device=device)
    for start, end in segments(steps, length, stride):
        x, mask = pad([as_tensor(s[start:end]) for s in seqs])
        piece = model(x.to(device), mask.to(device)).float()
        if total is None:
            total = torch.zeros(len(seqs), steps, piece.shape[-1], device=device)
        total[:, start:end] += piece
        counts[:, start:end] += 1
    return total / counts.clamp_min(1).unsqueeze(-1)
