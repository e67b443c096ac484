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
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from affectflow.config.runs import finetune_input, modality_backbones
from affectflow.data import read_manifest
from affectflow.runtime.device import pick_device
from affectflow.tasks import task_spec
from affectflow.training.clip_tracks import fold_tracks
from affectflow.training.fold_model import load_fold_model, settings_from_config  # noqa: F401  (re-exported)
from affectflow.training.sequences import ShardPaths, shards_by_backbone
from affectflow.training.settings import FRAME_TASKS, settings_from_run
from affectflow.training.tracks import Predictor, write_table

__all__ = ["load_fold_model", "predict_fold", "predict_fold_job", "settings_from_config"]

log = logging.getLogger(__name__)


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
