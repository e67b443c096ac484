"""Optimisers and learning-rate schedules by name (Adam/AdamW; plateau, cosine, step)."""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "plateau", "cosine", "step")


def create_optimizer(name: str, params, *, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam or AdamW."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


class Schedule:
    """One interface over the three schedules of the papers.

    - ``plateau`` (Yu et al. 2024, 000; Yu et al. 2023, 001): lr x ``factor`` (0.5) after
      ``patience`` (10) epochs without a better monitored value; ``epoch_end(value)``.
      ``monitor_mode`` says which way is better: ``min`` for a loss, ``max`` for a metric (see
      :attr:`affectflow.training.monitor.Monitor.mode`).
    - ``cosine`` (Hallmen et al. 2024, 002): linear warm-up over ``warmup_epochs`` (1), then
      cosine decay to 0 by the last epoch; stepped per batch.
    - ``step`` (Deng et al. 2023, 004): lr x ``gamma`` (0.1) every ``step_size`` (20) epochs.
    """

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                 monitor_mode: str = "min", **params) -> None:
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
        self.name = name
        self.inner = None
        if name == "plateau":
            self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=monitor_mode, factor=params.pop("factor", 0.5),
                patience=params.pop("patience", 10))
        elif name == "step":
            self.inner = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=params.pop("step_size", 20), gamma=params.pop("gamma", 0.1))
        elif name == "cosine":
            warmup = max(0, round(params.pop("warmup_epochs", 1) * steps_per_epoch))
            total = max(1, epochs * steps_per_epoch)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return 0.5 * (1.0 + math.cos(math.pi * progress))

            self.inner = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        if params:
            raise TypeError(f"scheduler {name!r}: unknown parameter(s) {sorted(params)}")

    def batch_end(self) -> None:
        """Called after each optimiser step."""
        if self.name == "cosine":
            self.inner.step()

    def epoch_end(self, monitored: float) -> None:
        """Called after each epoch with the monitored value (better as ``monitor_mode`` says)."""
        if self.name == "plateau":
            self.inner.step(monitored)
        elif self.name == "step":
            self.inner.step()

    def state_dict(self) -> dict:
        """The inner scheduler's state (empty for ``none``), for a resumable checkpoint."""
        return {} if self.inner is None else self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        if self.inner is not None:
            self.inner.load_state_dict(state)
