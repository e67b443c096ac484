"""The training loop of one model: :class:`Trainer` (batches, one optimiser step, checkpoint state)
and :func:`fit` (epochs, schedules, early stopping, resume); predictions are
:func:`affectflow.training.inference.predict`'s.

``fit`` is generic: clip- or frame-level targets, masks, segments, hidden-state carry, Adam/AdamW,
plateau/cosine/step schedules, early stopping, a monitored validation metric or loss
(:mod:`affectflow.training.monitor`), gradient clipping, AMP on GPU, fine-tuning (frozen layers,
the encoder's own learning rate, gradient accumulation, inputs read ahead by workers), seeded,
resumable from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from affectflow.models import create_model
from affectflow.training import checkpoints
from affectflow.training.batching import length_batches, pad, padding_fraction, random_batches, segments
from affectflow.training.freeze import freeze, keep_frozen_norms_in_eval, param_groups
from affectflow.training.inference import predict
from affectflow.training.losses import create_loss
from affectflow.training.monitor import Monitor, check_scoreable, is_better, validation_score
from affectflow.training.read_ahead import batches_read
from affectflow.training.schedules import Schedule, create_optimizer
from affectflow.training.sequences import Example
from affectflow.training.settings import FRAME_TASKS, TrainSettings, recorded_settings
from affectflow.training.track_store import as_tensor

log = logging.getLogger(__name__)


class Interrupted(RuntimeError):
    """Raised by a callback to stop training (as a kill would); the last checkpoint remains."""


def _segment_examples(examples: list[Example], length: int, stride: int) -> list[Example]:
    """Each example cut into windows of ``length`` steps every ``stride`` steps."""
    out = []
    for ex in examples:
        for start, end in segments(len(ex.x), length, stride):
            out.append(Example(ex.x[start:end], ex.y[start:end], ex.valid[start:end]))
    return out


def _window(batch: list[Example], start: int, end: int) -> list[Example]:
    """Steps ``start:end`` of each example (views; empty for an example that has ended)."""
    return [Example(e.x[start:end], e.y[start:end], e.valid[start:end]) for e in batch]


def collate(batch: list[Example], device: str, per_frame: bool):
    """One batch on ``device``: padded features, their step mask, targets and the valid-target mask
    (per frame: also False on padded steps)."""
    x, mask = pad([as_tensor(e.x) for e in batch])
    if per_frame:
        y, _ = pad([e.y for e in batch])
        valid, _ = pad([e.valid for e in batch], value=False)
        valid = valid & mask.unsqueeze(-1)
    else:
        y, valid = torch.stack([e.y for e in batch]), torch.stack([e.valid for e in batch])
    return x.to(device), mask.to(device), y.to(device), valid.to(device)


class Trainer:
    """The training loop of one model; see :func:`fit`."""

    def __init__(self, settings: TrainSettings, *, input_dim: int, output_dim: int, device: str = "cpu") -> None:
        self.settings = settings
        self.device = device
        torch.manual_seed(settings.seed)
        self.model = create_model(settings.model, input_dim=input_dim, output_dim=output_dim,
                                  **settings.model_params).to(device)
        self.per_frame = bool(getattr(self.model, "per_frame", False))
        if self.per_frame != (settings.task in FRAME_TASKS):
            raise ValueError(f"task {settings.task!r} needs a model with per_frame="
                             f"{settings.task in FRAME_TASKS} (model_params.per_frame)")
        self.loss_fn = create_loss(settings.loss, **settings.loss_params)
        self.finetune = settings.finetune_spec()
        self.optimizer = create_optimizer(settings.optimizer, self._parameters(), lr=settings.lr,
                                          weight_decay=settings.weight_decay)
        self.accumulated = 0  # batches whose gradients wait for the next optimiser step (grad_accum)
        if self.finetune is not None and self.finetune.grad_accum > 1 and settings.carry_state:
            # the carried state takes one step per window: accumulating would mix windows of two batches
            raise ValueError("finetune.grad_accum > 1 cannot go with carry_state (one optimiser step per window)")
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.amp = settings.amp and device.startswith("cuda")
        self.carry = settings.carry_state and self.per_frame and settings.segment_length > 0
        if self.carry and not getattr(self.model, "carries_state", False):
            raise ValueError(f"carry_state needs a model ending in an LSTM/GRU, not {settings.model!r}")

    def _parameters(self):
        """What the optimiser updates: every parameter, or for a fine-tuning run the unfrozen ones in
        two groups (the encoder at ``lr_backbone``, the rest at ``lr``)."""
        if self.finetune is None:
            return self.model.parameters()
        frozen = freeze(self.model, names=self.finetune.freeze, depth=self.finetune.freeze_depth)
        log.info("fine-tuning: %d parameter tensors frozen", len(frozen))
        return param_groups(self.model, lr=self.settings.lr, lr_backbone=self.finetune.lr_backbone,
                            weight_decay=self.settings.weight_decay)

    def train_mode(self) -> None:
        """The model in training mode (frozen BatchNorm layers stay in eval mode: their statistics too)."""
        self.model.train()
        if self.finetune is not None:
            keep_frozen_norms_in_eval(self.model)

    # -- batches ---------------------------------------------------------------------------------

    def units(self, examples: list[Example]) -> list[Example]:
        """What a batch is made of: whole sequences, or segments of them (frame tasks)."""
        s = self.settings
        if self.per_frame and s.segment_length and not self.carry:
            return _segment_examples(examples, s.segment_length, s.segment_stride or s.segment_length)
        return examples

    def batches(self, units: list[Example]) -> list[list[int]]:
        """One epoch's batches of unit indices: length-bucketed or plain shuffled, from the seeded generator."""
        lengths = [len(u.x) for u in units]
        if self.settings.batching == "bucket":
            return length_batches(lengths, self.settings.batch_size, generator=self.generator)
        return random_batches(len(units), self.settings.batch_size, generator=self.generator)

    # -- one step --------------------------------------------------------------------------------

    def _forward(self, x, mask, state=None):
        # bf16 autocast on the model's own device type: on by default on CUDA only (self.amp); the
        # same path runs on CPU when a test switches it on there
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.amp):
            if state is not None or self.carry:
                return self.model(x, mask, state=state, return_state=True)
            return self.model(x, mask), None

    def _step(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at {where}; no step taken")
        accum = self.finetune.grad_accum if self.finetune is not None else 1
        if accum == 1:
            self.optimizer.zero_grad()
            loss.backward()
            self._update()
            return
        # gradient accumulation: the mean gradient of ``accum`` batches makes one step
        (loss / accum).backward()
        self.accumulated += 1
        if self.accumulated == accum:
            self.flush()

    def flush(self) -> None:
        """Take the optimiser step that accumulated gradients wait for (at the end of an epoch too,
        where fewer than ``grad_accum`` batches may wait: their gradients are rescaled to their mean)."""
        if self.accumulated:
            accum = self.finetune.grad_accum
            if self.accumulated < accum:
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.mul_(accum / self.accumulated)
            self._update()
            self.optimizer.zero_grad()
            self.accumulated = 0

    def _update(self) -> None:
        if self.settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()

    def train_batch(self, batch: list[Example], where: str) -> tuple[float, int]:
        """One optimiser step (or one per segment window when carrying state); (loss sum, count)."""
        if not self.carry:
            x, mask, y, valid = collate(batch, self.device, self.per_frame)
            pred, _ = self._forward(x, mask)
            loss = self.loss_fn(pred.float(), y, valid)
            self._step(loss, where)
            return loss.item() * len(batch), len(batch)
        # Truncated back-propagation through consecutive segments: the state crosses segment
        # borders (detached), so the model sees the whole video's past. Each window is collated on
        # its own, so a batch never pads whole tracks (a few-thousand-frame track at thousands of
        # fused dimensions is a GiB a batch); a track that has ended pads its rows with mask False,
        # as it did in the whole-track batch, so the steps are the same.
        length = self.settings.segment_length
        state, total, count = None, 0.0, 0
        for start in range(0, max(len(e.x) for e in batch), length):
            x, m, y, valid = collate(_window(batch, start, start + length), self.device, self.per_frame)
            pred, state = self._forward(x, m, state)
            loss = self.loss_fn(pred.float(), y, valid)
            self._step(loss, where)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            total, count = total + loss.item(), count + 1
        return total, count

    @torch.no_grad()
    def evaluate_loss(self, units: list[Example]) -> float:
        """Mean loss over ``units`` in eval mode."""
        self.model.eval()
        preds = predict(self.model, [u.x for u in units], settings=self.settings, device=self.device)
        y = [u.y for u in units]
        valid = [u.valid for u in units]
        if self.per_frame:
            p = torch.cat([torch.as_tensor(a) for a in preds])
            return float(self.loss_fn(p, torch.cat(y), torch.cat(valid)))
        return float(self.loss_fn(torch.as_tensor(np.stack(preds)), torch.stack(y), torch.stack(valid)))

    @torch.no_grad()
    def evaluate_score(self, examples: list[Example], metric: str) -> float:
        """The validation score (``metric``) of whole ``examples`` predicted as at prediction time
        (:func:`predict`, eval mode): clip labels, or every labelled step of per-frame tracks; see
        :func:`affectflow.training.monitor.validation_score`."""
        preds = predict(self.model, [e.x for e in examples], settings=self.settings, device=self.device)
        join = np.concatenate if self.per_frame else np.stack
        return validation_score(metric, self.validation_truth(examples), join(preds))

    def validation_truth(self, examples: list[Example]) -> np.ndarray:
        """The labels :meth:`evaluate_score` scores against, (N, K) with NaN where a label is invalid:
        one row per clip, or per step of per-frame tracks."""
        truth = [torch.where(e.valid, e.y, torch.nan).numpy() for e in examples]
        return np.concatenate(truth) if self.per_frame else np.stack(truth)

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self, **extra) -> dict:
        """Everything a resumed run needs (model, optimiser, both random generators), plus ``extra``."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), **extra}

    def restore(self, state: dict) -> None:
        """Load what :meth:`state` saved."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def fit(settings: TrainSettings, train: list[Example], *, input_dim: int, output_dim: int,
        val: list[Example] | None = None, device: str = "cpu", checkpoint: str | os.PathLike | None = None,
        fingerprint: str = "", callback: Callable[[int, dict], None] | None = None):
    """Train a model on ``train``; return ``(model, history)``.

    The monitored value drives the plateau schedule, early stopping and the kept weights. With the
    run's ``monitor`` (:mod:`affectflow.training.monitor`) it is that metric (or the loss) on ``val``,
    required then, and the best epoch's weights are always kept; without, the validation loss when
    ``val`` is given, else the training loss, and the best epoch's weights are kept with early
    stopping only. ``history["monitored"]`` holds the value per epoch in its own units.
    With ``checkpoint``, the state after every ``checkpoint_every`` epochs is saved there and a
    matching checkpoint (same ``fingerprint``) found at start is resumed from: a run killed in
    epoch e and started again ends with exactly the predictions of an uninterrupted run.
    ``callback(epoch, history)`` runs after each epoch's checkpoint (raise to stop).
    """
    s = settings
    monitor = s.monitor_spec()
    if monitor is not None and not val:
        raise ValueError(f"monitor {monitor.describe()} needs validation examples (fit's val)")
    trainer = Trainer(s, input_dim=input_dim, output_dim=output_dim, device=device)
    units = trainer.units(train)
    val_units = trainer.units(val) if val else None
    if not units:
        raise ValueError("no training sequences")
    if monitor is not None and monitor.metric != "loss":
        check_scoreable(monitor.metric, trainer.validation_truth(val))
    mode = monitor.mode if monitor is not None else "min"
    keep_best = bool(s.early_stopping) or monitor is not None
    schedule = Schedule(s.scheduler, trainer.optimizer, epochs=s.epochs, monitor_mode=mode,
                        steps_per_epoch=math.ceil(len(units) / s.batch_size), **dict(s.scheduler_params))
    key = json.dumps({"settings": recorded_settings(s), "fingerprint": fingerprint}, sort_keys=True, default=str)
    progress = _resumed(checkpoint, key, trainer, schedule) or {
        "history": {"train_loss": [], "monitored": [], "lr": [], "padding_fraction": []},
        "best": math.inf if mode == "min" else -math.inf, "best_epoch": -1, "best_state": None, "epoch": 0}
    history = progress["history"]
    for epoch in range(progress["epoch"], s.epochs):
        best_epoch = progress["best_epoch"]
        if s.early_stopping and epoch - best_epoch > s.early_stopping and best_epoch >= 0:
            log.info("early stop after epoch %d (best %d)", epoch, best_epoch)
            break
        train_loss = _train_epoch(trainer, units, schedule, epoch, history)
        monitored = _monitored(trainer, monitor, val, val_units, train_loss)
        history["train_loss"].append(train_loss)
        history["monitored"].append(monitored)
        history["lr"].append(trainer.optimizer.param_groups[-1]["lr"])  # fine-tuning: the head's, not lr_backbone
        schedule.epoch_end(monitored)
        if is_better(monitored, progress["best"], mode):
            progress.update(best=monitored, best_epoch=epoch)
            if keep_best:
                progress["best_state"] = copy.deepcopy(trainer.model.state_dict())
        progress["epoch"] = epoch + 1
        # progress in the job log: a long fine-tuning job shows where it is
        log.info("epoch %d/%d: train loss %.4f, monitored %.4f, lr %.2e", epoch + 1, s.epochs, train_loss,
                 monitored, history["lr"][-1])
        if checkpoint is not None and ((epoch + 1) % max(1, s.checkpoint_every) == 0 or epoch + 1 == s.epochs):
            checkpoints.save(checkpoint, trainer.state(key=key, schedule=schedule.state_dict(), **progress))
        if callback is not None:
            callback(epoch, history)
    return _finished(trainer, progress, monitor, keep_best)


def _resumed(checkpoint: str | os.PathLike | None, key: str, trainer: Trainer, schedule: Schedule) -> dict | None:
    """The progress (history, best value, epoch and state, epochs done) of a checkpoint written for the
    same ``key``, with ``trainer`` and ``schedule`` restored from it; None when there is none."""
    if checkpoint is None or not Path(checkpoint).exists():
        return None
    saved = checkpoints.load(checkpoint)
    if saved.get("key") != key:
        log.info("ignoring %s: written for other settings or data", checkpoint)
        return None
    trainer.restore(saved)
    schedule.load_state_dict(saved["schedule"])
    log.info("resumed from %s after epoch %d", checkpoint, saved["epoch"])
    return {"history": saved["history"], "best": saved["best"], "best_epoch": saved["best_epoch"],
            "best_state": saved.get("best_state"), "epoch": saved["epoch"]}


def _train_epoch(trainer: Trainer, units: list[Example], schedule: Schedule, epoch: int, history: dict) -> float:
    """One epoch of optimiser steps over ``units``; its mean training loss. Records the padding."""
    trainer.train_mode()
    batches = trainer.batches(units)
    history["padding_fraction"].append(padding_fraction(batches, [len(u.x) for u in units]))
    total, count = 0.0, 0
    workers = trainer.finetune.workers if trainer.finetune is not None else 0
    for b, batch in enumerate(batches_read(units, batches, workers)):  # read ahead by workers, if any
        loss_sum, n = trainer.train_batch(batch, f"epoch {epoch} batch {b}")
        total, count = total + loss_sum, count + n
        schedule.batch_end()
    trainer.flush()  # an epoch ends with no gradient left waiting (a checkpoint follows)
    return total / max(count, 1)


def _monitored(trainer: Trainer, monitor: Monitor | None, val: list[Example] | None,
               val_units: list[Example] | None, train_loss: float) -> float:
    """This epoch's monitored value: the monitor's metric or loss on ``val``; without a monitor the
    validation loss, else ``train_loss``."""
    if monitor is not None and monitor.metric != "loss":
        return trainer.evaluate_score(val, monitor.metric)
    return trainer.evaluate_loss(val_units) if val_units else train_loss


def _finished(trainer: Trainer, progress: dict, monitor: Monitor | None, keep_best: bool):
    """The trained model (the best epoch's weights where kept) in eval mode, and its history."""
    history, best_epoch = progress["history"], progress["best_epoch"]
    if keep_best and progress["best_state"] is not None:
        trainer.model.load_state_dict(progress["best_state"])
    elif monitor is not None:
        log.warning("monitor %s: no epoch had a score; the last epoch's weights are kept", monitor.describe())
    history["best_epoch"] = best_epoch
    history["epochs_run"] = len(history["train_loss"])
    if monitor is not None:
        history["monitor"] = monitor.describe()
        history["best_score"] = history["monitored"][best_epoch] if best_epoch >= 0 else math.nan
    trainer.model.eval()
    return trainer.model, history
