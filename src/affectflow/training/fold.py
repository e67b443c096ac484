"""Train one temporal model on one fold of cached features; write OOF and test predictions.

``fit`` is the generic loop (clip- or frame-level targets, masks, segments, hidden-state carry,
Adam/AdamW, plateau/cosine/step schedules, early stopping, gradient clipping, AMP on GPU,
seeded, resumable from its last checkpoint). ``train_fold`` wires it to a manifest, a backbone's
feature shards and a fold.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectflow.training import checkpoints
from affectflow.runtime.atomic import atomic_path, write_text_atomic
from affectflow.training.batching import length_batches, pad, padding_fraction, random_batches, segments, subsample
from affectflow.runtime.device import pick_device
from affectflow.data.folds import TRAIN_ONLY, make_folds
from affectflow.h5store import iter_clips
from affectflow.training.losses import create_loss
from affectflow.metrics import score_task
from affectflow.models import create_model
from affectflow.training.recipes import resolve_run
from affectflow.training.schedules import Schedule, create_optimizer

log = logging.getLogger(__name__)

CLIP_TASKS = ("clip", "emi", "eri")
FRAME_TASKS = ("va", "au")


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one run (one model on one feature set); every key but ``model`` is optional."""

    model: str
    model_params: dict = field(default_factory=dict)
    epochs: int = 80
    lr: float = 0.002
    batch_size: int = 16
    max_steps: int = 64  # clip tasks: longer clips are subsampled uniformly to this many steps
    seed: int = 0
    task: str = "clip"  # clip (EMI, ERI) or per frame: va, au
    loss: str = "mse"
    loss_params: dict = field(default_factory=dict)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "none"
    scheduler_params: dict = field(default_factory=dict)
    early_stopping: int = 0  # patience in epochs; 0: off
    val_fraction: float = 0.0  # share of training clips held out to monitor (else the train loss)
    grad_clip: float = 0.0  # max gradient norm; 0: off
    amp: bool = True  # bfloat16 autocast, on CUDA only
    batching: str = "bucket"  # bucket (similar lengths) or random
    device: str = "auto"
    segment_length: int = 0  # frame tasks: train and predict on windows of this many frames
    segment_stride: int = 0
    carry_state: bool = False  # LSTM/GRU: carry the hidden state across consecutive segments (003)
    fold_scheme: str = "manifest"  # manifest, official, grouped, trainval5, train5_val, train5_val2, mix
    checkpoint_every: int = 1  # epochs between resumable checkpoints
    # task au (004): {region: features key of the run's backbone with that face half masked};
    # training tracks get masked copies, see :func:`mask_copy_labels`
    mask_augment: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in CLIP_TASKS + FRAME_TASKS:
            raise ValueError(f"task {self.task!r}; known: {', '.join(CLIP_TASKS + FRAME_TASKS)}")
        _check_mask_augment(self.mask_augment)
        if self.batching not in ("bucket", "random"):
            raise ValueError(f"batching {self.batching!r}; known: bucket, random")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")


def _check_mask_augment(mask_augment) -> None:
    from affectflow.faces.masking import REGIONS

    if not isinstance(mask_augment, dict) or set(mask_augment) - set(REGIONS) \
            or not all(isinstance(v, str) and v for v in mask_augment.values()):
        raise ValueError(f"mask_augment {mask_augment!r}: expected {{upper: <features key>, lower: <features key>}} "
                         "(either or both), each the run's backbone with that mask")


def settings_from_run(run: dict, *, seed: int = 0) -> TrainSettings:
    """TrainSettings from a config run (its recipe underneath); ``backbone`` is not a setting."""
    resolved = resolve_run(run)
    for key in ("backbone", "fuse_with", "init_branches", "freeze_branches"):  # what the run reads, not how it trains
        resolved.pop(key, None)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(resolved) - known)
    if unknown:
        raise ValueError(f"unknown run setting(s) {unknown}; known: {', '.join(sorted(known))}")
    return TrainSettings(**{**resolved, "seed": resolved.get("seed", seed)})


def run_folds(run: dict, k_folds: int) -> int:
    """How many fold jobs a config run makes: its fold scheme's count, else ``k_folds``."""
    from affectflow.data.folds import n_folds

    scheme = resolve_run(run).get("fold_scheme", "manifest")
    return k_folds if scheme == "manifest" else n_folds(scheme, k_folds)


def shards_by_backbone(paths: list[str | os.PathLike], backbones: list[str]) -> dict[str, list[str]]:
    """Group ``.../features/<backbone>/shard-*.h5`` paths by backbone, in the order of ``backbones``."""
    grouped = {b: [str(p) for p in paths if Path(p).parent.name == b] for b in backbones}
    missing = [b for b, found in grouped.items() if not found]
    if missing:
        raise ValueError(f"no feature shards for backbone(s) {missing} among {len(paths)} paths")
    return grouped


def check_runs(train_config: dict, features: dict | None = None) -> None:
    """Fail at workflow start for a run with an unknown setting, recipe, model, fold scheme or
    fused backbone (``fuse_with`` names missing from ``features``)."""
    from affectflow.data.folds import n_folds
    from affectflow.models import MODELS

    for name, run in train_config["runs"].items():
        try:
            s = settings_from_run(run)
            if s.fold_scheme != "manifest":
                n_folds(s.fold_scheme, 2)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"train.runs.{name}: {err}") from None
        if s.model not in MODELS:
            raise ValueError(f"train.runs.{name}.model: unknown {s.model!r}; known: {', '.join(MODELS.names())}")
        for other in run.get("fuse_with", []):
            if features is not None and other not in features:
                raise ValueError(f"train.runs.{name}.fuse_with: {other!r} is not configured under features "
                                 f"(configured: {', '.join(features) or 'none'})")
        if features is not None:
            check_mask_augment(name, run["backbone"], s.mask_augment, features)


def check_mask_augment(run_name: str, backbone: str, mask_augment: dict, features: dict) -> None:
    """Each ``mask_augment`` entry must name a ``features`` key that is the run's ``backbone``
    (same backbone and parameters) with ``mask`` set to that region; else fail naming the key."""
    from affectflow.features.stage import RUNTIME_KEYS

    def core(key):  # what makes the features: backbone name and parameters, not mask or speed
        entry = dict(features[key] or {})
        entry.setdefault("backbone", key)
        return {k: v for k, v in entry.items() if k not in ("mask", *RUNTIME_KEYS)}

    for region, key in mask_augment.items():
        where = f"train.runs.{run_name}.mask_augment.{region}"
        if key not in features:
            raise ValueError(f"{where}: {key!r} is not configured under features "
                             f"(configured: {', '.join(features) or 'none'})")
        mask = (features[key] or {}).get("mask")
        if mask != region:
            raise ValueError(f"{where}: features.{key} has mask {mask!r}; the {region}-masked copy needs "
                             f"features.{key}.mask: {region}")
        if backbone in features and core(key) != core(backbone):
            raise ValueError(f"{where}: features.{key} must be the run's backbone features.{backbone} with mask "
                             f"{region} (same backbone and parameters): {core(key)} != {core(backbone)}")


def load_features(shard_paths: list[str | os.PathLike], *, with_times: bool = False) -> dict:
    """Every clip's (T, D) feature array, by integer clip id, from a backbone's shard files
    (with ``with_times``: ``(features, timestamps)`` pairs)."""
    sequences = {}
    for path in shard_paths:
        for clip_id, arrays, _ in iter_clips(path):
            features = arrays["features"].astype(np.float32)
            if with_times:
                times = np.asarray(arrays.get("timestamps", np.arange(len(features))), np.float64)
                sequences[int(clip_id)] = (features, times)
            else:
                sequences[int(clip_id)] = features
    return sequences


def align_modalities(parts: list[tuple[np.ndarray, np.ndarray]], dims: list[int]) -> np.ndarray:
    """Concatenate per-modality (features, timestamps) on one timeline: the first non-empty
    modality's timestamps, each other modality taking its nearest step in time. A modality with
    no steps (no face, no audio) is zeros, which modality-dropout training prepares a model for.
    """
    timeline = next((t for f, t in parts if len(f)), None)
    if timeline is None:
        return np.zeros((0, sum(dims)), np.float32)
    columns = []
    for (features, times), dim in zip(parts, dims):
        if len(features) == 0:
            columns.append(np.zeros((len(timeline), dim), np.float32))
            continue
        right = np.clip(np.searchsorted(times, timeline), 1, max(len(times) - 1, 1))
        left = right - 1
        nearest = np.where(np.abs(times[np.minimum(right, len(times) - 1)] - timeline)
                           < np.abs(times[left] - timeline), np.minimum(right, len(times) - 1), left)
        columns.append(features[nearest])
    return np.concatenate(columns, axis=1).astype(np.float32)


def _fuse_loaded(names: list[str], loaded: list[dict]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list[int]]:
    """Align already loaded per-backbone ``{id: (features, times)}`` (consumed: each clip's
    originals are dropped once aligned, so the peak stays near one copy of the features)."""
    dims = []
    for name, clips in zip(names, loaded):
        widths = {f.shape[1] for f, _ in clips.values() if f.ndim == 2}
        if len(widths) != 1:
            raise ValueError(f"backbone {name!r}: feature widths {sorted(widths)} (need exactly one)")
        dims.append(widths.pop())
    empty = (np.zeros((0, 1), np.float32), np.zeros(0))
    sequences, times = {}, {}
    for i in sorted(set().union(*loaded)):
        parts = [clips.pop(i, empty) for clips in loaded]
        timeline = next((t for f, t in parts if len(f)), None)
        sequences[i] = align_modalities(parts, dims)
        times[i] = np.zeros(0) if timeline is None else timeline
    return sequences, times, dims


def load_modalities(shards: dict[str, list[str | os.PathLike]]) -> tuple[dict[int, np.ndarray], list[int]]:
    """Clips' features of several backbones (in the dict's order) aligned by :func:`align_modalities`;
    returns the sequences and each backbone's width."""
    sequences, _, dims = _fuse_loaded(list(shards), [load_features(paths, with_times=True) for paths in shards.values()])
    return sequences, dims


@dataclass
class Example:
    """One training sequence: features (T, D), targets (K,) or (T, K), and which targets are valid."""

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def make(cls, x, y, *, task: str = "clip") -> Example:
        """From arrays; invalid labels (NaN, -5 VA, -1 AU) are masked out."""
        from affectflow.training.losses import label_mask

        x = torch.as_tensor(np.asarray(x, np.float32))
        y = torch.as_tensor(np.asarray(y, np.float32))
        return cls(x, y, label_mask(y, task))


class Interrupted(RuntimeError):
    """Raised by a callback to stop training (as a kill would); the last checkpoint remains."""


def _segment_examples(examples: list[Example], length: int, stride: int) -> list[Example]:
    out = []
    for ex in examples:
        for start, end in segments(len(ex.x), length, stride):
            out.append(Example(ex.x[start:end], ex.y[start:end], ex.valid[start:end]))
    return out


def _collate(batch: list[Example], device: str, per_frame: bool):
    x, mask = pad([e.x for e in batch])
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
        self.optimizer = create_optimizer(settings.optimizer, self.model.parameters(), lr=settings.lr,
                                          weight_decay=settings.weight_decay)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.amp = settings.amp and device.startswith("cuda")
        self.carry = settings.carry_state and self.per_frame and settings.segment_length > 0
        if self.carry and not getattr(self.model, "carries_state", False):
            raise ValueError(f"carry_state needs a model ending in an LSTM/GRU, not {settings.model!r}")

    # -- batches ---------------------------------------------------------------------------------

    def units(self, examples: list[Example]) -> list[Example]:
        """What a batch is made of: whole sequences, or segments of them (frame tasks)."""
        s = self.settings
        if self.per_frame and s.segment_length and not self.carry:
            return _segment_examples(examples, s.segment_length, s.segment_stride or s.segment_length)
        return examples

    def batches(self, units: list[Example]) -> list[list[int]]:
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
        self.optimizer.zero_grad()
        loss.backward()
        if self.settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()

    def train_batch(self, batch: list[Example], where: str) -> tuple[float, int]:
        """One optimiser step (or one per segment window when carrying state); (loss sum, count)."""
        x, mask, y, valid = _collate(batch, self.device, self.per_frame)
        if not self.carry:
            pred, _ = self._forward(x, mask)
            loss = self.loss_fn(pred.float(), y, valid)
            self._step(loss, where)
            return loss.item() * len(batch), len(batch)
        # Truncated back-propagation through consecutive segments: the state crosses segment
        # borders (detached), so the model sees the whole video's past.
        length = self.settings.segment_length
        state, total, count = None, 0.0, 0
        for start in range(0, x.shape[1], length):
            m = mask[:, start : start + length]
            alive = m.any(1)
            if not alive.any():
                break
            pred, state = self._forward(x[:, start : start + length], m, state)
            loss = self.loss_fn(pred.float(), y[:, start : start + length], valid[:, start : start + length])
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

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self, **extra) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), **extra}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def fit(settings: TrainSettings, train: list[Example], *, input_dim: int, output_dim: int,
        val: list[Example] | None = None, device: str = "cpu", checkpoint: str | os.PathLike | None = None,
        fingerprint: str = "", callback: Callable[[int, dict], None] | None = None):
    """Train a model on ``train``; return ``(model, history)``.

    The monitored value (validation loss when ``val`` is given, else the training loss) drives the
    plateau schedule and early stopping; with early stopping the best epoch's weights are kept.
    With ``checkpoint``, the state after every ``checkpoint_every`` epochs is saved there and a
    matching checkpoint (same ``fingerprint``) found at start is resumed from: a run killed in
    epoch e and started again ends with exactly the predictions of an uninterrupted run.
    ``callback(epoch, history)`` runs after each epoch's checkpoint (raise to stop).
    """
    s = settings
    trainer = Trainer(s, input_dim=input_dim, output_dim=output_dim, device=device)
    units = trainer.units(train)
    val_units = trainer.units(val) if val else None
    if not units:
        raise ValueError("no training sequences")
    schedule = Schedule(s.scheduler, trainer.optimizer, epochs=s.epochs,
                        steps_per_epoch=math.ceil(len(units) / s.batch_size), **dict(s.scheduler_params))
    history = {"train_loss": [], "monitored": [], "lr": [], "padding_fraction": []}
    best, best_epoch, best_state, start = math.inf, -1, None, 0
    key = json.dumps({"settings": asdict(s), "fingerprint": fingerprint}, sort_keys=True, default=str)
    if checkpoint is not None and Path(checkpoint).exists():
        saved = checkpoints.load(checkpoint)
        if saved.get("key") == key:
            trainer.restore(saved)
            schedule.load_state_dict(saved["schedule"])
            history, best, best_epoch, start = saved["history"], saved["best"], saved["best_epoch"], saved["epoch"]
            best_state = saved.get("best_state")
            log.info("resumed from %s after epoch %d", checkpoint, start)
        else:
            log.info("ignoring %s: written for other settings or data", checkpoint)

    for epoch in range(start, s.epochs):
        if s.early_stopping and epoch - best_epoch > s.early_stopping and best_epoch >= 0:
            log.info("early stop after epoch %d (best %d)", epoch, best_epoch)
            break
        trainer.model.train()
        batches = trainer.batches(units)
        history["padding_fraction"].append(padding_fraction(batches, [len(u.x) for u in units]))
        total, count = 0.0, 0
        for b, batch in enumerate(batches):
            loss_sum, n = trainer.train_batch([units[i] for i in batch], f"epoch {epoch} batch {b}")
            total, count = total + loss_sum, count + n
            schedule.batch_end()
        train_loss = total / max(count, 1)
        monitored = trainer.evaluate_loss(val_units) if val_units else train_loss
        history["train_loss"].append(train_loss)
        history["monitored"].append(monitored)
        history["lr"].append(trainer.optimizer.param_groups[0]["lr"])
        schedule.epoch_end(monitored)
        if monitored < best:
            best, best_epoch = monitored, epoch
            if s.early_stopping:
                best_state = copy.deepcopy(trainer.model.state_dict())
        if checkpoint is not None and ((epoch + 1) % max(1, s.checkpoint_every) == 0 or epoch + 1 == s.epochs):
            checkpoints.save(checkpoint, trainer.state(
                key=key, schedule=schedule.state_dict(), history=history, best=best, best_epoch=best_epoch,
                epoch=epoch + 1, best_state=best_state))
        if callback is not None:
            callback(epoch, history)
    if s.early_stopping and best_state is not None:
        trainer.model.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    history["epochs_run"] = len(history["train_loss"])
    trainer.model.eval()
    return trainer.model, history


@torch.no_grad()
def predict(model: torch.nn.Module, xs: list[torch.Tensor], *, settings: TrainSettings,
            device: str = "cpu") -> list[np.ndarray]:
    """Predictions for each (T, D) sequence: (K,) for clip models, (T, K) for per-frame models.

    Per-frame models with ``segment_length`` predict window by window: carrying the hidden state
    across consecutive windows (``carry_state``) or averaging overlapping windows.
    """
    model.eval()
    per_frame = bool(getattr(model, "per_frame", False))
    out: list[np.ndarray | None] = [None] * len(xs)
    order = length_batches([len(x) for x in xs], settings.batch_size, shuffle=False)
    length = settings.segment_length if per_frame else 0
    for batch in order:
        x, mask = pad([torch.as_tensor(xs[i]) for i in batch])
        x, mask = x.to(device), mask.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=settings.amp and str(device).startswith("cuda")):
            if not length:
                y = model(x, mask).float()
            elif settings.carry_state:
                pieces, state = [], None
                for start in range(0, x.shape[1], length):
                    piece, state = model(x[:, start : start + length], mask[:, start : start + length],
                                         state=state, return_state=True)
                    pieces.append(piece.float())
                y = torch.cat(pieces, dim=1)
            else:
                y = _windowed(model, x, mask, length, settings.segment_stride or length)
        for row, i in enumerate(batch):
            out[i] = y[row, : len(xs[i])].cpu().numpy() if per_frame else y[row].cpu().numpy()
    return out


def _windowed(model, x, mask, length, stride):
    total = None
    counts = torch.zeros(x.shape[:2], device=x.device)
    for start, end in segments(x.shape[1], length, stride):
        piece = model(x[:, start:end], mask[:, start:end]).float()
        if total is None:
            total = torch.zeros(*x.shape[:2], piece.shape[-1], device=x.device)
        total[:, start:end] += piece
        counts[:, start:end] += 1
    return total / counts.clamp_min(1).unsqueeze(-1)


def _takes_modality_dims(model: str) -> bool:
    import inspect

    from affectflow.models import MODELS

    return "modality_dims" in inspect.signature(MODELS.get(model)).parameters or model in (
        "fusion", "dual_transformer")


def _holdout(ids: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if fraction <= 0:
        return ids, []
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(ids)[: max(1, round(fraction * len(ids)))].tolist())
    return [i for i in ids if i not in held], [i for i in ids if i in held]


def load_timed(shard_paths: list[str | os.PathLike] | dict[str, list[str | os.PathLike]]
               ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list[int] | None]:
    """Features by clip id, their timestamps (s), and each backbone's width when two or more are fused
    (on the first non-empty backbone's timeline, see :func:`align_modalities`). Each shard is read
    once."""
    if isinstance(shard_paths, dict) and len(shard_paths) > 1:
        return _fuse_loaded(list(shard_paths), [load_features(p, with_times=True) for p in shard_paths.values()])
    paths = next(iter(shard_paths.values())) if isinstance(shard_paths, dict) else shard_paths
    timed = load_features(paths, with_times=True)
    return {i: f for i, (f, _) in timed.items()}, {i: t for i, (_, t) in timed.items()}, None


def frames_at_steps(times: np.ndarray, fps: float) -> np.ndarray:
    """The 1-based video frame shown at each feature timestamp (frame k spans [(k-1)/fps, k/fps))."""
    return np.floor(np.asarray(times, np.float64) * fps + 1e-6).astype(np.int64) + 1


def steps_for_frames(times: np.ndarray, frames: np.ndarray, fps: float) -> np.ndarray:
    """For each 1-based video frame, the index of the feature step that shows it (the inverse of
    :func:`frames_at_steps`, the mapping training labels with), else the step nearest to the
    frame's middle in time.

    Feature steps may be missing (frames without a face dropped, a coarser feature rate, a video
    rate such as 29.97 against features at 30/s); the nearest step is the papers' "nearest valid
    frame" rule (003, 004).
    """
    times = np.asarray(times, np.float64)
    frames = np.asarray(frames, np.int64)
    shown = frames_at_steps(times, fps)  # non-decreasing, as the timestamps are
    first = np.clip(np.searchsorted(shown, frames, side="left"), 0, len(times) - 1)
    centre = (frames - 0.5) / fps
    right = np.clip(np.searchsorted(times, centre), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(times[right] - centre) < np.abs(times[left] - centre), right, left)
    return np.where(shown[first] == frames, first, nearest)


def frame_targets(times: np.ndarray, fps: float, frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-step labels (T, K) of a track: the label of the frame each step shows; NaN where that
    frame has no valid label."""
    out = np.full((len(times), values.shape[1]), np.nan, np.float32)
    if len(frames) == 0 or len(times) == 0:
        return out
    table = np.full((int(frames.max()) + 2, values.shape[1]), np.nan, np.float32)
    table[frames] = values
    shown = frames_at_steps(times, fps)
    inside = shown < len(table)
    out[inside] = table[shown[inside]]
    return out


def mask_copy_labels(y: np.ndarray, targets: list[str], region: str) -> np.ndarray | None:
    """The per-step labels of a track's ``region``-masked copy (paper 004's data balancing), or
    None when the track gets no such copy.

    004 (section 3.1) adds masked copies for the AUs with below-average positives
    (:data:`affectflow.faces.masking.AUGMENTED_AUS`) and sets the AUs under the mask to 0. Per
    track, the rule here: a copy is kept when the track has at least one labelled step on which an
    augmented AU that stays *visible* under the mask is positive (upper mask: AU12, AU15, AU23,
    AU24, AU26; lower mask: AU1, AU2, AU4 of the ABAW set), so that each copy adds positives of a
    rare AU; a copy of a track without one would only add negatives. In the copy, the AUs under
    the mask (:data:`~affectflow.faces.masking.UPPER_AUS` / ``LOWER_AUS``) are 0 on every labelled
    step; unlabelled steps (NaN) stay unlabelled; the visible AUs keep their labels.
    """
    from affectflow.faces.masking import AUGMENTED_AUS, LOWER_AUS, REGIONS, UPPER_AUS

    if region not in REGIONS:
        raise ValueError(f"region {region!r}; options: {', '.join(REGIONS)}")
    y = np.asarray(y, np.float32)
    if y.ndim != 2 or y.shape[1] != len(targets):
        raise ValueError(f"expected labels (T, {len(targets)}), not shape {y.shape}")
    hidden_set = UPPER_AUS if region == "upper" else LOWER_AUS
    hidden = [j for j, t in enumerate(targets) if t in hidden_set]
    rare_visible = [j for j, t in enumerate(targets) if t in AUGMENTED_AUS and t not in hidden_set]
    labelled = np.isfinite(y) & (y >= 0)
    if not rare_visible or not ((y[:, rare_visible] > 0.5) & labelled[:, rare_visible]).any():
        return None
    out = y.copy()
    out[:, hidden] = np.where(labelled[:, hidden], 0.0, y[:, hidden])
    return out


def masked_shard_layouts(shard_paths: list[str | os.PathLike] | dict[str, list[str | os.PathLike]],
                         mask_augment: dict[str, str]) -> dict[str, list[str] | dict[str, list[str]]]:
    """For each region of ``mask_augment``, ``shard_paths`` with the run's own backbone (the list,
    or the dict's first entry) swapped for its masked copy; fused backbones stay.

    The masked copy's shards are found beside the backbone's, in the features stage's layout
    ``.../features/<features key>/shard-<s>.h5``; a missing one fails naming it.
    """
    own = list(next(iter(shard_paths.values())) if isinstance(shard_paths, dict) else shard_paths)
    layouts = {}
    for region, key in mask_augment.items():
        paths = [str(Path(p).parent.parent / key / Path(p).name) for p in own]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"mask_augment.{region}: no feature shard(s) {missing} of the masked copy {key!r}")
        if isinstance(shard_paths, dict):
            rest = list(shard_paths.items())[1:]
            layouts[region] = {key: paths, **{b: list(p) for b, p in rest}}
        else:
            layouts[region] = paths
    return layouts


def train_fold(
    manifest: pd.DataFrame,
    shard_paths: list[str | os.PathLike] | dict[str, list[str | os.PathLike]],
    fold: int,
    out_dir: str | os.PathLike,
    *,
    targets: list[str],
    settings: TrainSettings,
    k_folds: int | None = None,
    frame_labels: pd.DataFrame | None = None,
    metric: str | None = None,
    callback: Callable[[int, dict], None] | None = None,
    masked_shards: dict[str, list[str | os.PathLike] | dict[str, list[str | os.PathLike]]] | None = None,
) -> dict:
    """Train on the labelled clips outside ``fold``; predict ``fold`` (out-of-fold) and the test clips.

    Folds come from the manifest's ``fold`` column, or from ``settings.fold_scheme`` (see
    :func:`affectflow.data.folds.make_folds`) when it is not ``"manifest"``. Clips whose feature array is
    empty (no face, no audio) get no prediction (NaN) from this run; fusion and the submission
    writer decide what they get. A ``checkpoint.pt`` in ``out_dir`` lets a killed run resume; it is
    removed when the fold is complete. ``shard_paths`` as a dict {backbone: shards} (two or more)
    fuses the backbones (aligned on the first one's timeline); fusion models then get
    ``modality_dims`` from the data unless the run sets it. Returns the metrics dict.

    Per-frame tasks (``settings.task`` va or au) take their labels from ``frame_labels`` (columns
    id, frame, targets; see :func:`affectflow.data.affwild2.frame_label_table`) and the
    manifest's ``fps`` and ``frames``: each feature step is labelled with the frame it shows, and
    predictions are written per video frame (OOF: the labelled frames; test: frames 1..frames),
    each taking the nearest feature step in time. ``metric`` (pearson, ccc, f1) scores the OOF
    predictions; by default pearson for clip tasks, ccc for va and f1 for au.

    ``settings.mask_augment`` (task au, paper 004's data balancing) adds, for each training track
    (not the held-out validation tracks, never OOF or test), a copy whose visual features come from
    the face-masked shards of the same backbone (same timeline) and whose labels follow
    :func:`mask_copy_labels`. ``masked_shards`` gives each region's shards laid out like
    ``shard_paths`` (default: :func:`masked_shard_layouts`, beside the backbone's); with fused
    backbones only the run's own backbone is swapped, the fused ones stay. The feature
    normalisation is computed on the original tracks only.
    """
    s = settings
    per_frame = s.task in FRAME_TASKS
    if per_frame and frame_labels is None:
        raise ValueError(f"task {s.task!r} is per frame: train_fold needs frame_labels (id, frame, targets)")
    metric = metric or {"va": "ccc", "au": "f1"}.get(s.task, "pearson")
    out_dir = Path(out_dir)
    if s.fold_scheme != "manifest":
        manifest = make_folds(manifest, s.fold_scheme, k=k_folds or 5, seed=s.seed)
    sequences, times, dims = load_timed(shard_paths)
    if dims is not None and "modality_dims" not in s.model_params and _takes_modality_dims(s.model):
        s = dataclasses.replace(s, model_params={**s.model_params, "modality_dims": dims})
    settings = s
    by_id = manifest.set_index("id")
    usable = {i for i, seq in sequences.items() if len(seq) > 0}
    if per_frame:
        # a track whose frame rate could not be probed cannot be put on the frame timeline
        fps_of = pd.to_numeric(by_id["fps"], errors="coerce")
        no_rate = sorted(i for i in usable if i in fps_of.index and not (np.isfinite(fps_of[i]) and fps_of[i] > 0))
        if no_rate:
            names = by_id.loc[no_rate, "name"].astype(str).tolist() if "name" in by_id else no_rate
            log.warning("%d track(s) without a usable frame rate get no prediction from this run: %s",
                        len(no_rate), names[:10])
            usable -= set(no_rate)
        labels_of = {int(i): (g["frame"].to_numpy(np.int64), g[targets].to_numpy(np.float32))
                     for i, g in frame_labels.groupby("id", sort=False)}
        step_labels = {i: frame_targets(times[i], float(by_id.at[i, "fps"]), *labels_of[i])
                       for i in usable if i in labels_of}
        usable_for_fit = {i for i, y in step_labels.items() if np.isfinite(y).any()}
    else:
        usable_for_fit = usable
    labelled = manifest[manifest["split"].isin(("train", "val")) & (manifest["fold"] != -1)]
    in_training = (labelled["fold"] != fold) | (labelled["fold"] == TRAIN_ONLY)
    fit_ids = [int(i) for i in labelled.loc[in_training, "id"] if i in usable_for_fit]
    if len(fit_ids) < 2:
        raise ValueError(f"fold {fold}: only {len(fit_ids)} training clips have features"
                         + (" and labelled frames" if per_frame else ""))
    seed = s.seed + fold
    s = dataclasses.replace(s, seed=seed)
    train_ids, val_ids = _holdout(fit_ids, s.val_fraction, seed)

    mean, std = _mean_std([sequences[i] for i in train_ids])
    width = len(mean)
    copies = _mask_copies(s, shard_paths, masked_shards, train_ids, dims, width, by_id,
                          labels_of if per_frame else {}, targets, mean=mean, std=std)
    # normalised in place, track by track: at Aff-Wild2's scale (millions of steps, thousands of
    # fused dimensions) a second, normalised copy of every track would double the job's memory
    for i in usable:
        sequences[i] = ((sequences[i] - mean) / std).astype(np.float32, copy=False)

    def x_of(i):
        x = sequences[i]
        # clip tasks subsample long clips to max_steps; per-frame tasks keep every step (segments
        # bound the length instead) because every frame needs its own prediction
        return torch.from_numpy(x if per_frame else np.ascontiguousarray(subsample(x, s.max_steps)))

    def examples(ids):
        if per_frame:
            return [Example.make(x_of(i), step_labels[i], task=s.task) for i in ids]
        y = by_id.loc[ids, targets].to_numpy(np.float32)
        return [Example.make(x_of(i), y[n], task=s.task) for n, i in enumerate(ids)]

    device = pick_device(s.device)
    train_examples = examples(train_ids) + [Example.make(torch.from_numpy(x), y, task=s.task)
                                            for _, _, x, y in copies]
    fingerprint = json.dumps({"fold": fold, "train": train_ids, "val": val_ids, "targets": targets,
                              **({"mask_copies": [[r, i] for r, i, _, _ in copies]} if copies else {})})
    model, history = fit(s, train_examples, val=examples(val_ids) or None, input_dim=width,
                         output_dim=len(targets), device=device, checkpoint=out_dir / "checkpoint.pt",
                         fingerprint=fingerprint, callback=callback)
    log.info("fold %d: %d clips + %d masked copies, final train loss %.4f", fold, len(train_ids), len(copies),
             history["train_loss"][-1])

    def clip_predictions(ids: list[int]) -> pd.DataFrame:
        frame = pd.DataFrame({"id": ids})
        values = np.full((len(ids), len(targets)), np.nan, np.float32)
        have = [n for n, i in enumerate(ids) if i in usable]
        if have:
            preds = predict(model, [x_of(ids[n]) for n in have], settings=s, device=device)
            values[have] = np.stack(preds)
        frame[targets] = values
        return frame

    def _frame_count(i: int) -> int:
        # the probed count; when the probe gave none, up to the frame the last feature step shows
        n = pd.to_numeric(pd.Series([by_id.at[i, "frames"]]), errors="coerce").iloc[0]
        if np.isfinite(n) and n > 0:
            return int(n)
        if i in usable and len(times[i]):
            return int(frames_at_steps(times[i][-1:], float(by_id.at[i, "fps"]))[0])
        return 0

    def frame_predictions(wanted: dict[int, np.ndarray]) -> pd.DataFrame:
        have = [i for i in wanted if i in usable]
        preds = dict(zip(have, predict(model, [x_of(i) for i in have], settings=s, device=device))) if have else {}
        parts = []
        for i, ks in wanted.items():
            values = np.full((len(ks), len(targets)), np.nan, np.float32)
            if i in preds and len(ks):
                values = preds[i][steps_for_frames(times[i], ks, float(by_id.at[i, "fps"]))]
            part = pd.DataFrame(values, columns=targets)
            part.insert(0, "frame", ks.astype(np.int64))
            part.insert(0, "id", i)
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "frame", *targets])

    oof_ids = [int(i) for i in labelled.loc[labelled["fold"] == fold, "id"]] if fold >= 0 else []
    test_ids = [int(i) for i in manifest.loc[manifest["split"] == "test", "id"]]
    if per_frame:
        oof = frame_predictions({i: labels_of[i][0] if i in labels_of else np.zeros(0, np.int64) for i in oof_ids})
        test = frame_predictions({i: np.arange(1, _frame_count(i) + 1) for i in test_ids})
        truth_table = frame_labels.set_index(["id", "frame"])
        scored = oof.dropna()
        truth = truth_table.loc[list(zip(scored["id"], scored["frame"])), targets].to_numpy() if len(scored) else None
    else:
        oof, test = clip_predictions(oof_ids), clip_predictions(test_ids)
        scored = oof.dropna()
        truth = by_id.loc[scored["id"], targets].to_numpy()
    oof_score = score_task(metric, truth, scored[targets].to_numpy(), targets) if len(scored) > 2 else None
    metrics = {
        "fold": fold,
        "task": s.task,
        "fold_scheme": s.fold_scheme,
        "train_clips": len(train_ids),
        "train_examples": len(train_examples),
        "val_clips": len(val_ids),
        "oof_clips": len(oof_ids),
        "oof_rows": len(oof),
        "oof_rows_predicted": len(scored),
        "oof_clips_predicted": int(scored["id"].nunique()),
        "oof_score": oof_score or {"metric": metric, "per_target": {}, "mean": float("nan")},
        "train_loss": history["train_loss"],
        "monitored": history["monitored"],
        "lr": history["lr"],
        "best_epoch": history["best_epoch"],
        "epochs_run": history["epochs_run"],
        "padding_fraction": float(np.mean(history["padding_fraction"])) if history["padding_fraction"] else 0.0,
        "device": device,
    }
    if s.mask_augment:
        metrics["mask_copies"] = {r: sum(c[0] == r for c in copies) for r in s.mask_augment}
    if metric == "pearson":  # the EMI/ERI names the skeleton's readers know
        metrics["oof_pearson"] = metrics["oof_score"]["per_target"]
        metrics["oof_mean_pearson"] = metrics["oof_score"]["mean"]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("oof.csv", oof), ("test.csv", test)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    checkpoints.save(out_dir / "model.pt", {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                                            "mean": torch.from_numpy(mean), "std": torch.from_numpy(std)})
    write_text_atomic(out_dir / "config.json", json.dumps({**asdict(settings), "targets": targets,
                                                           "input_dim": int(width)}, indent=2))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    (out_dir / "checkpoint.pt").unlink(missing_ok=True)
    return metrics


def _mean_std(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (+1e-6) over the steps of ``arrays``, from running
    float64 sums rather than one concatenated copy of them all."""
    total = np.zeros(arrays[0].shape[1], np.float64)
    squares = np.zeros_like(total)
    count = 0
    for x in arrays:
        total += x.sum(0, dtype=np.float64)
        squares += np.square(x, dtype=np.float64).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    return mean.astype(np.float32), std.astype(np.float32)


def _mask_copies(s: TrainSettings, shard_paths, masked_shards, train_ids: list[int], dims, width: int,
                 by_id: pd.DataFrame, labels_of: dict, targets: list[str], *, mean: np.ndarray,
                 std: np.ndarray) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """train_fold's masked copies (paper 004): (region, track id, normalised features, labels) per
    kept copy."""
    from affectflow.faces.masking import REGIONS

    if not s.mask_augment:
        return []
    if s.task != "au":
        raise ValueError(f"mask_augment (paper 004's face-masked copies) is for task au, not {s.task!r}")
    layouts = masked_shards if masked_shards is not None else masked_shard_layouts(shard_paths, s.mask_augment)
    missing = sorted(set(s.mask_augment) - set(layouts))
    if missing:
        raise ValueError(f"mask_augment names region(s) {missing} but masked_shards has only {sorted(layouts)}")
    copies = []
    for region in (r for r in REGIONS if r in s.mask_augment):
        sequences, times, masked_dims = load_timed(layouts[region])
        if masked_dims != dims:
            raise ValueError(f"mask_augment.{region}: feature widths {masked_dims} differ from the run's {dims}")
        for i in train_ids:
            x = sequences.get(i)
            if x is None or not len(x) or i not in labels_of:
                continue
            if x.shape[1] != width:
                raise ValueError(f"mask_augment.{region}: track {i} has {x.shape[1]} features, the run {width}")
            y = mask_copy_labels(frame_targets(times[i], float(by_id.at[i, "fps"]), *labels_of[i]), targets, region)
            if y is not None:
                copies.append((region, i, ((x - mean) / std).astype(np.float32, copy=False), y))
        log.info("mask_augment.%s: %d of %d training tracks copied", region,
                 sum(c[0] == region for c in copies), len(train_ids))
    return copies
