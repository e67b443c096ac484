"""The hyper-parameters of one run (:class:`TrainSettings`) and how a config run becomes them.

Torch-free, so that the workflow's start-up checks (:mod:`affectflow.config.runs`) can build and
check every run's settings without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from affectflow.tasks import TASKS
from affectflow.training.branch_init import BRANCH_KEYS
from affectflow.training.finetune_spec import FinetuneSpec, parse_finetune
from affectflow.training.monitor import Monitor, parse_monitor
from affectflow.training.recipes import resolve_run

#: a clip task of any targets (the data sets' clip tasks are those of affectflow.tasks)
GENERIC_CLIP_TASK = "clip"
CLIP_TASKS = (GENERIC_CLIP_TASK, *(name for name, spec in TASKS.items() if not spec.per_frame))
FRAME_TASKS = tuple(name for name, spec in TASKS.items() if spec.per_frame)
#: Keys of a config run that say what the run reads (its features, its branches), not how it trains.
NON_TRAINING_KEYS = ("backbone", "fuse_with", *BRANCH_KEYS)
#: Where a job keeps the feature tracks it reads (affectflow.training.track_store): a memory-mapped
#: temporary file in $TMPDIR (the default: private memory bounded by the batch), or RAM.
LOADERS = ("memmap", "memory")
#: Settings that change how a job runs, never what it computes: not recorded (config.json, the
#: resume checkpoint's key), so a job resumes across a change of one. (Snakemake still sees the run
#: change and re-runs its jobs, which then give the same results.)
EXECUTION_KEYS = ("loader",)


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
    task: str = GENERIC_CLIP_TASK  # a clip task (clip, emi, eri) or per frame: va, au
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
    carry_state: bool = False  # LSTM/GRU: carry the hidden state across consecutive segments (Liu et al. 2023, 003)
    fold_scheme: str = "manifest"  # manifest, official, grouped, trainval5, train5_val, train5_val2, mix
    checkpoint_every: int = 1  # epochs between resumable checkpoints
    # task au (Deng et al. 2023, 004): {region: features key of the run's backbone with that face
    # half masked}; training tracks get masked copies, see affectflow.training.augment.mask_copy_labels
    mask_augment: dict = field(default_factory=dict)
    # validation-driven training, e.g. {metric: pearson, split: official}: the monitored value drives
    # the plateau schedule, early stopping and the kept weights (see affectflow.training.monitor);
    # empty: the held-out loss of val_fraction, else the training loss, as before
    monitor: dict = field(default_factory=dict)
    loader: str = "memmap"  # one of LOADERS; the same results either way
    # train the backbone too (model: finetune): what the run reads and how; see
    # affectflow.training.finetune_spec. Empty: the run trains on cached features.
    finetune: dict = field(default_factory=dict)
    # standardise the features with the fold's training statistics: true (every column), false
    # (none), or one bool per fused modality (backbone, then fuse_with): a frozen fine-tuned branch
    # (init_branches) reads its encoder's outputs as they were in training, unstandardised
    normalise: bool | list = True

    def __post_init__(self) -> None:
        if self.task not in CLIP_TASKS + FRAME_TASKS:
            raise ValueError(f"task {self.task!r}; known: {', '.join(CLIP_TASKS + FRAME_TASKS)}")
        _check_mask_augment(self.mask_augment)
        if self.loader not in LOADERS:
            raise ValueError(f"loader {self.loader!r}; known: {', '.join(LOADERS)}")
        if self.batching not in ("bucket", "random"):
            raise ValueError(f"batching {self.batching!r}; known: bucket, random")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        spec = self.finetune_spec()  # a bad finetune block fails here, naming its key
        if (spec is not None) != (self.model == "finetune"):
            raise ValueError("a finetune block goes with model: finetune (a trainable encoder under a temporal model), "
                             f"not model {self.model!r} with finetune {self.finetune!r}")
        if spec is not None and self.mask_augment:
            raise ValueError("mask_augment swaps cached features for masked ones: a fine-tuning run reads crops")
        if not isinstance(self.normalise, bool) and not (
                isinstance(self.normalise, (list, tuple)) and self.normalise
                and all(isinstance(v, bool) for v in self.normalise)):
            raise ValueError(f"normalise must be true, false or a list of them (one per modality), "
                             f"not {self.normalise!r}")
        monitor = self.monitor_spec()  # a bad monitor fails here, naming its key
        if monitor is not None and monitor.split != "inner" and self.fold_scheme == "mix":
            # heldout would watch no clip; official would quietly hold the validation split out
            raise ValueError(f"monitor.split {monitor.split}: fold_scheme mix trains on every labelled clip and "
                             f"leaves none to validate on; monitor split inner, or no monitor (or fold_scheme "
                             f"official to train on the training split)")

    def finetune_spec(self) -> FinetuneSpec | None:
        """The run's :class:`~affectflow.training.finetune_spec.FinetuneSpec`; None without a ``finetune`` block."""
        return parse_finetune(self.finetune)

    def monitor_spec(self) -> Monitor | None:
        """The run's :class:`~affectflow.training.monitor.Monitor`; None without a ``monitor``."""
        return parse_monitor(self.monitor, task=self.task, val_fraction=self.val_fraction)


def _check_mask_augment(mask_augment) -> None:
    """The shape of ``mask_augment``: face regions to non-empty features keys."""
    from affectflow.faces.masking import REGIONS  # loads OpenCV: on first use, not with this module

    if not isinstance(mask_augment, dict) or set(mask_augment) - set(REGIONS) \
            or not all(isinstance(v, str) and v for v in mask_augment.values()):
        raise ValueError(f"mask_augment {mask_augment!r}: expected {{upper: <features key>, lower: <features key>}} "
                         "(either or both), each the run's backbone with that mask")


def settings_from_run(run: dict, *, seed: int | None = None) -> TrainSettings:
    """TrainSettings from a config run (its recipe underneath); :data:`NON_TRAINING_KEYS` are not
    settings. ``seed`` (the config's ``train.seed``) applies when neither the run nor its recipe sets
    one; without it, :class:`TrainSettings`' own default does."""
    resolved = resolve_run(run)
    for key in NON_TRAINING_KEYS:
        resolved.pop(key, None)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(resolved) - known)
    if unknown:
        raise ValueError(f"unknown run setting(s) {unknown}; known: {', '.join(sorted(known))}")
    if seed is not None:
        resolved.setdefault("seed", seed)
    return TrainSettings(**resolved)


def recorded_settings(settings: TrainSettings) -> dict:
    """The settings as a fold records them (``config.json``, the resume checkpoint's key). An empty
    ``monitor`` (the default) is left out: a run without one writes the very ``config.json``, and
    resumes from the very checkpoints, it did before runs could monitor a metric (the same for an
    empty ``finetune``); so are
    :data:`EXECUTION_KEYS`, which never change the results."""
    recorded = dataclasses.asdict(settings)
    for key in EXECUTION_KEYS:
        del recorded[key]
    for key in ("monitor", "finetune"):  # empty: as written before runs had the key
        if not recorded[key]:
            del recorded[key]
    if recorded["normalise"] is True:  # the default, as written before runs had the key
        del recorded["normalise"]
    return recorded
