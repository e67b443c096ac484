"""A run's ``finetune`` block: training a backbone end to end with the temporal model (issue 15).

A run with ``model: finetune`` (:mod:`affectflow.models.finetune`: a trainable encoder, e.g. paper
001's ResNet18 trunk + spatial Transformer or paper 002's Wav2Vec2 VAD model, under a registered
temporal model) reads face crops or raw audio instead of cached features; its ``finetune`` block
says how:

- ``input``: ``crops`` (face crops of the faces shard) or ``audio`` (16 kHz audio of the media shard);
- ``frames``: crops, frames per clip sampled uniformly over its valid frames (0: all; paper 001:
  "we uniformly extract 32 frames from each sample");
- ``size``: crops, the side in pixels the encoder reads (112);
- ``window_s``: audio, seconds from the clip's start (0: all; paper 002: "cut to a maximum length of 12s");
- ``freeze``: parameter name prefixes to freeze (e.g. ``encoder.trunk.0``);
  ``freeze_depth``: freeze the encoder's first N top-level children;
- ``lr_backbone``: the encoder's learning rate (default: the run's ``lr``);
- ``grad_accum``: batches whose mean gradient makes one optimiser step (1: none; not with
  ``carry_state``); a per-batch schedule (cosine) still advances per batch;
- ``workers``: DataLoader processes that read and decode a batch while the model trains (0: none).

AMP is the run's ``amp`` (bf16 autocast, CUDA only), gradient checkpointing the model's
``model_params.checkpointing``. Torch-free: the settings check it at workflow start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["FINETUNE_INPUTS", "FinetuneSpec", "parse_finetune"]

#: What a fine-tuning run reads: face crops (faces shards) or audio (media shards).
FINETUNE_INPUTS = ("crops", "audio")


@dataclass(frozen=True)
class FinetuneSpec:
    """A validated ``finetune`` block (see the module docstring for each key)."""

    input: str
    frames: int = 32
    size: int = 112
    window_s: float = 0.0
    freeze: tuple[str, ...] = field(default_factory=tuple)
    freeze_depth: int | None = None
    lr_backbone: float | None = None
    grad_accum: int = 1
    workers: int = 0


def parse_finetune(block: Mapping | None) -> FinetuneSpec | None:
    """The :class:`FinetuneSpec` of a run's ``finetune`` block; None for an empty one. A bad key or
    value fails naming it."""
    if not block:
        return None
    if not isinstance(block, Mapping):
        raise ValueError(f"finetune must be a mapping, not {block!r}")
    known = set(FinetuneSpec.__dataclass_fields__)
    unknown = sorted(set(block) - known)
    if unknown:
        raise ValueError(f"finetune: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
    if block.get("input") not in FINETUNE_INPUTS:
        raise ValueError(f"finetune.input {block.get('input')!r}; known: {', '.join(FINETUNE_INPUTS)}")
    values = dict(block)
    values["freeze"] = tuple(values.get("freeze") or ())
    spec = FinetuneSpec(**values)
    for key, least in (("frames", 0), ("size", 1), ("grad_accum", 1), ("workers", 0)):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"finetune.{key} must be an integer >= {least}, not {value!r}")
    if isinstance(spec.window_s, bool) or not isinstance(spec.window_s, (int, float)) or spec.window_s < 0:
        raise ValueError(f"finetune.window_s must be >= 0, not {spec.window_s!r}")
    if spec.freeze_depth is not None and (isinstance(spec.freeze_depth, bool) or not isinstance(spec.freeze_depth, int)
                                          or spec.freeze_depth < 0):
        raise ValueError(f"finetune.freeze_depth must be an integer >= 0, not {spec.freeze_depth!r}")
    if spec.lr_backbone is not None and (isinstance(spec.lr_backbone, bool)
                                         or not isinstance(spec.lr_backbone, (int, float)) or spec.lr_backbone <= 0):
        raise ValueError(f"finetune.lr_backbone must be > 0, not {spec.lr_backbone!r}")
    return spec
