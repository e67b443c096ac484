"""Test prediction from a trained fold: ``model.pt`` + ``config.json`` + the test clips' feature shards.

Its own step, apart from training (:mod:`affectflow.training.fold`), so that a new, removed or
replaced test video re-runs the prediction of each fold model and nothing that trains.
:func:`load_fold_model` rebuilds a fold's model from the model registry and its saved weights;
:func:`predict_fold` writes the fold's ``test.csv``; :func:`predict_fold_job` is the workflow's
one call, from paths and config values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectflow.config.runs import finetune_input, modality_backbones
from affectflow.data import read_manifest
from affectflow.models import create_model
from affectflow.runtime.device import pick_device
from affectflow.tasks import task_spec
from affectflow.training import checkpoints
from affectflow.training.branch_init import BRANCH_PARAMS
from affectflow.training.clip_tracks import fold_tracks
from affectflow.training.sequences import ShardPaths, shards_by_backbone
from affectflow.training.settings import FRAME_TASKS, TrainSettings, settings_from_run
from affectflow.training.tracks import Predictor, write_table

__all__ = ["load_fold_model", "predict_fold", "predict_fold_job", "settings_from_config"]

log = logging.getLogger(__name__)

#: What ``model.pt`` of a trained fold holds (see :func:`affectflow.training.fold.train_fold`).
MODEL_KEYS = ("state_dict", "mean", "std")


def settings_from_config(config: dict, where: str | os.PathLike = "config.json") -> TrainSettings:
    """The :class:`TrainSettings` a fold's ``config.json`` recorded (its other keys, such as
    ``targets`` and ``input_dim``, are not settings), without the branch-init model parameters
    (:data:`~affectflow.training.branch_init.BRANCH_PARAMS`): the fold's weights already hold the
    trained branches. ``where`` names the file in errors."""
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    if "model" not in config:
        raise ValueError(f"{where}: no 'model'; not the config.json of a trained fold")
    values = {k: v for k, v in config.items() if k in fields}
    values["model_params"] = {k: v for k, v in values.get("model_params", {}).items() if k not in BRANCH_PARAMS}
    try:
        return TrainSettings(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def _read_config(config_json: str | os.PathLike) -> dict:
    """A fold's ``config.json``, with the keys prediction needs beyond the settings."""
    config = json.loads(Path(config_json).read_text())
    missing = [k for k in ("model", "targets", "input_dim") if k not in config]
    if missing:
        raise ValueError(f"{config_json}: missing {missing}; not the config.json of a trained fold")
    return config


def _read_weights(model_pt: str | os.PathLike) -> dict:
    """A fold's ``model.pt`` (read with ``weights_only=True``), failing with the file's name."""
    try:
        payload = checkpoints.load(model_pt)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{model_pt}: not a readable checkpoint: {err}") from None
    missing = [k for k in MODEL_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise ValueError(f"{model_pt}: missing {missing}; not the model.pt of a trained fold")
    return payload


def load_fold_model(model_pt: str | os.PathLike, config_json: str | os.PathLike, device: str | None = None
                    ) -> tuple[torch.nn.Module, TrainSettings, np.ndarray, np.ndarray, list[str]]:
    """A trained fold's model, rebuilt from the registry and loaded with its weights (strictly).

    Returns ``(model in eval mode on device, settings, feature mean, feature std, targets)``; the
    settings are those of :func:`settings_from_config`. ``device`` defaults to the run's
    (``settings.device``, ``auto``: a GPU when one is visible). A ``model.pt`` that does not fit the
    model its ``config.json`` describes (a missing or unexpected key, another shape) fails naming both files.
    """
    config = _read_config(config_json)
    settings = settings_from_config(config, config_json)
    payload = _read_weights(model_pt)
    targets, input_dim = list(config["targets"]), int(config["input_dim"])
    model = create_model(settings.model, input_dim=input_dim, output_dim=len(targets), **settings.model_params)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        why = " ".join(str(err).split())  # torch's message spans lines
        raise ValueError(f"{model_pt}: does not fit the {settings.model!r} model of {config_json}: {why}") from None
    mean, std = payload["mean"].numpy(), payload["std"].numpy()
    if mean.shape != (input_dim,) or std.shape != (input_dim,):
        raise ValueError(f"{model_pt}: feature mean/std of shape {tuple(mean.shape)}/{tuple(std.shape)}, "
                         f"expected ({input_dim},) (input_dim of {config_json})")
    device = device or pick_device(settings.device)
    return model.to(device).eval(), settings, mean, std, targets


def predict_fold(model_pt: str | os.PathLike, config_json: str | os.PathLike, clips: pd.DataFrame,
                 shard_paths: ShardPaths, out_csv: str | os.PathLike, *, device: str | None = None,
                 loader: str = "memmap") -> pd.DataFrame:
    """Predict ``clips`` (the test manifest's rows) with a trained fold; write and return the table.

    Features come from ``shard_paths`` (one backbone's shards, or {backbone: shards} to fuse, as
    :func:`affectflow.training.fold.train_fold` takes them), normalised with ``model.pt``'s mean and
    std. The table has one row per clip (id, targets), in the order of ``clips``, or for per-frame
    tasks (the ``task`` in ``config.json``: va, au) one row per video frame 1..``frames`` of each
    track (id, frame, targets), each from the feature step that shows the frame (else the nearest;
    without ``frames``, up to the frame the last step shows). A clip without features (no face, no
    audio, no frame rate) gets NaN. ``out_csv`` is written atomically; an empty ``clips`` gives a
    header-only table. ``loader`` says where the features read are kept (see
    :mod:`affectflow.training.track_store`).
    """
    model, settings, mean, std, targets = load_fold_model(model_pt, config_json, device)
    device = device or pick_device(settings.device)  # the one load_fold_model chose
    per_frame = settings.task in FRAME_TASKS
    _check_backbones(shard_paths, config_json)
    tracks = fold_tracks(clips, shard_paths, targets, settings=dataclasses.replace(settings, loader=loader),
                         per_frame=per_frame)
    widths = tracks.widths()
    if widths - {len(mean)}:
        groups = shard_paths.values() if isinstance(shard_paths, dict) else [shard_paths]
        where = sorted({str(Path(p).parent) for paths in groups for p in paths})
        raise ValueError(f"features of width {sorted(widths)} in {where}, but the model of {model_pt} "
                         f"reads {len(mean)} (were the features recomputed without retraining?)")
    tracks.normalise(mean, std)
    table = Predictor(model, tracks, targets, settings, device).test([int(i) for i in clips["id"]])
    write_table(out_csv, table)
    log.info("%s: %d clip(s), %d row(s), %d predicted", out_csv, len(clips), len(table),
             int(table[targets].notna().all(axis=1).sum()))
    return table


def _check_backbones(shard_paths: ShardPaths, config_json: str | os.PathLike) -> None:
    """Fused shards must come in the modalities' order the fold trained with (``backbones`` of its config)."""
    trained = json.loads(Path(config_json).read_text()).get("backbones")
    if isinstance(shard_paths, dict) and trained is not None and list(shard_paths) != list(trained):
        raise ValueError(f"{config_json}: trained on backbones {trained}, given {list(shard_paths)}")


def predict_fold_job(model_pt: str | os.PathLike, config_json: str | os.PathLike,
                     test_manifest_tsv: str | os.PathLike, feature_shards: Iterable[str | os.PathLike],
                     out_csv: str | os.PathLike, *, task: str, run: dict) -> pd.DataFrame:
    """Predict the test clips with one fold of a config ``run``: what the test prediction rule runs.

    Reads the test manifest, groups ``feature_shards`` by the run's backbones (``backbone``, then
    ``fuse_with``; the face-masked copies of ``mask_augment`` only serve training: not needed, and
    ignored if given; for a fine-tuning run they are its faces or media shards) and calls
    :func:`predict_fold`. ``task`` (the data set's) is checked against the fold's
    ``config.json``. An empty test manifest reads no shard and writes a header-only table.
    """
    spec = task_spec(task)
    run = {"task": spec.name, **run}  # the data set's task unless the run says
    clips = read_manifest(test_manifest_tsv)
    trained_task = json.loads(Path(config_json).read_text()).get("task")
    if trained_task != run["task"]:
        raise ValueError(f"{config_json}: a model of task {trained_task!r}, but run {run['task']!r} is asked for")
    shard_paths: ShardPaths = []
    if finetune_input(run):
        shard_paths = [str(p) for p in feature_shards]  # a fine-tuned model reads faces or media shards
    elif len(clips):
        shard_paths = shards_by_backbone(list(feature_shards), modality_backbones(run))
    return predict_fold(model_pt, config_json, clips, shard_paths, out_csv, loader=settings_from_run(run).loader)
