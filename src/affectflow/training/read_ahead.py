"""Reading a batch's inputs ahead of the training loop, in DataLoader worker processes.

Lazy inputs (:mod:`affectflow.training.clip_inputs`: JPEG crops, audio; any object with
``read()``) are read and decoded by forked workers while the main process trains on the batch
before; torch only, so the training loop imports it at no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from affectflow.runtime.device import WORKER_TIMEOUT_S

__all__ = ["batches_read", "prefetched"]


def _read_item(x) -> torch.Tensor:
    return x.read()


def _as_is(batch):
    # batch_size=None: each item is already one batch (a list of tensors), kept as it is
    return batch


class _ReadBatches:
    """Map-style dataset: batch ``i`` -> its inputs read (a list of tensors)."""

    def __init__(self, batches: Sequence[Sequence], read: Callable) -> None:
        self.batches, self.read = batches, read

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return [self.read(x) for x in self.batches[i]]


def prefetched(batches: Sequence[Sequence], read: Callable | None = None, workers: int = 0, *,
               pin_memory: bool = False) -> Iterator[list[torch.Tensor]]:
    """Each batch of ``batches`` (lists of inputs) read, ``[read(x) for x in batch]`` (default
    ``x.read()``), in order, by ``workers`` DataLoader worker processes (0: in this process).

    Workers read ahead while the caller trains on the batch before. They are forked (``read`` and the
    inputs need not pickle); one that stops answering fails after ``WORKER_TIMEOUT_S`` seconds."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    dataset = _ReadBatches(list(batches), read or _read_item)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is, pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        # as the features stage's crop loader: a forked worker never reconfigures OpenCV's pool
        multiprocessing_context="fork" if workers else None,
        timeout=WORKER_TIMEOUT_S if workers else 0,
        # the workers' base seed from a generator of its own: the global one, which dropout draws
        # from, stays where reading inline leaves it (the same model either way)
        generator=torch.Generator(),
    )
    return iter(loader)


def batches_read(units: Sequence, batches: Sequence[Sequence[int]], workers: int) -> Iterator[list]:
    """The units (:class:`~affectflow.training.sequences.Example`) of each batch of indices, in
    order; with ``workers``, each batch's inputs read ahead in DataLoader worker processes
    (:func:`prefetched`) and handed over as tensors, so decoding overlaps training."""
    from affectflow.training.sequences import Example

    if not workers:
        for batch in batches:
            yield [units[i] for i in batch]
        return
    reads = prefetched([[units[i].x for i in batch] for batch in batches], workers=workers)
    for batch, xs in zip(batches, reads, strict=True):
        yield [Example(x, units[i].y, units[i].valid) for i, x in zip(batch, xs, strict=True)]
