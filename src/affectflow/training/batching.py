"""Batches of similar lengths, padding with masks, and fixed-length segments of long videos.

Padding every clip to the longest cost Hallmen et al. 2024 (002) 34% of its compute; sorting
clips by length and cutting the sorted list into batches keeps the padding to a few percent while
the order of the batches (and which clips share one) is still shuffled from a seeded generator.
"""

from __future__ import annotations

import numpy as np
import torch


def length_batches(lengths, batch_size: int, *, generator: torch.Generator | None = None,
                   shuffle: bool = True) -> list[list[int]]:
    """Index batches of clips of similar length.

    With ``shuffle``, ties are broken at random, each run of ``batch_size`` neighbours in length
    order becomes a batch and the batches come in random order; without, in length order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
    if shuffle:
        jitter = torch.randperm(len(lengths), generator=generator)
        order = jitter[torch.argsort(lengths[jitter], stable=True)]
    else:
        order = torch.argsort(lengths, stable=True)
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def random_batches(n: int, batch_size: int, *, generator: torch.Generator | None = None) -> list[list[int]]:
    """Plain shuffled batches (for comparison: padding to each batch's longest clip)."""
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def padding_fraction(batches: list[list[int]], lengths) -> float:
    """Share of padded steps when each batch is padded to its own longest member."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches if b)
    return 1.0 - float(lengths[[i for b in batches for i in b]].sum()) / max(padded, 1)


def pad(seqs: list[torch.Tensor], *, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, ...) tensors into (B, T_max, ...) with a (B, T_max) validity mask."""
    steps = max(len(s) for s in seqs)
    out = seqs[0].new_full((len(seqs), steps, *seqs[0].shape[1:]), value)
    mask = torch.zeros(len(seqs), steps, dtype=torch.bool, device=seqs[0].device)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return out, mask


def subsample_rows(n: int, steps: int) -> slice | np.ndarray:
    """The rows of an ``n``-step clip a model reads: at most ``steps`` spread uniformly over it
    (a shorter clip whole: ``slice(None)``)."""
    if n <= steps:
        return slice(None)
    return np.linspace(0, n - 1, steps).round().astype(int)


def subsample(seq: np.ndarray, steps: int) -> np.ndarray:
    """At most ``steps`` rows spread uniformly over the clip (shorter clips are kept whole)."""
    return seq[subsample_rows(len(seq), steps)]


def segments(n: int, length: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(start, end) windows of ``length`` frames every ``stride`` frames covering all ``n`` frames.

    The last window may be shorter; with stride < length windows overlap (average them when
    predicting). ``stride`` defaults to ``length`` (003: consecutive, non-overlapping segments).
    """
    stride = stride or length
    if length < 1 or stride < 1:
        raise ValueError(f"segment length and stride must be >= 1, got length={length}, stride={stride}")
    if stride > length:
        raise ValueError(f"stride={stride} > length={length} would skip frames")
    if n <= 0:
        return []
    starts = list(range(0, max(n - length, 0) + 1, stride))
    if starts[-1] + length < n:
        starts.append(starts[-1] + stride)
    return [(s, min(s + length, n)) for s in starts]

