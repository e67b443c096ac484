"""Train one temporal model on one fold of cached features; write its OOF predictions and the model.

:func:`train_fold` wires the training loop (:func:`affectflow.training.loop.fit`) to a manifest,
a backbone's feature shards (or several, fused) and a fold; :func:`train_fold_job` is the
training rule's one call, from paths and config values. Training reads the labelled clips only:
the test clips are predicted from the written ``model.pt`` and ``config.json`` by
:mod:`affectflow.training.predict`, so a new test video re-runs no training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectflow.config.runs import finetune_input, modality_backbones, run_backbones
from affectflow.data import read_manifest
from affectflow.data.folds import LABELLED_SPLITS, TEST_FOLD, TRAIN_ONLY, group_keys, make_folds
from affectflow.h5store import read_file_attrs
from affectflow.models import takes_modality_dims
from affectflow.runtime.atomic import write_json_atomic, write_text_atomic
from affectflow.runtime.device import pick_device
from affectflow.scoring import score_arrays
from affectflow.tasks import task_spec
from affectflow.training import checkpoints
from affectflow.training.augment import masked_copies, masked_layouts
from affectflow.training.branch_init import branch_fold, branch_runs, with_branch_checkpoints
from affectflow.training.clip_tracks import fold_tracks
from affectflow.training.encoder_weights import with_encoder_weights
from affectflow.training.loop import fit
from affectflow.training.monitor import OFFICIAL_VAL_SPLIT, task_metric
from affectflow.training.sequences import Example, ShardPaths, shards_by_backbone
from affectflow.training.settings import FRAME_TASKS, TrainSettings, recorded_settings, settings_from_run
from affectflow.training.tracks import FoldTracks, Predictor, write_table

log = logging.getLogger(__name__)


def train_fold(manifest: pd.DataFrame, shard_paths: ShardPaths, fold: int, out_dir: str | os.PathLike, *,
               targets: list[str], settings: TrainSettings, k_folds: int,
               frame_labels: pd.DataFrame | None = None, metric: str | None = None,
               callback: Callable[[int, dict], None] | None = None,
               masked_shards: dict[str, ShardPaths] | None = None, oof_in_sample: str | None = None) -> dict:
    """Train on the labelled clips outside ``fold``; predict ``fold`` (out-of-fold).

    Folds come from the manifest's ``fold`` column, or from ``settings.fold_scheme`` (see
    :func:`affectflow.data.folds.make_folds`, with ``k_folds``, the config's ``train.k_folds``) when
    it is not ``"manifest"``. Test rows of ``manifest`` (split ``test``), if any, are ignored:
    neither read nor predicted. Clips whose feature array is empty (no face, no audio) get no
    prediction (NaN) from this run; fusion and the submission writer decide what they get. A
    ``checkpoint.pt`` in ``out_dir`` lets a killed run resume; it is removed when the fold is
    complete. ``shard_paths`` as a dict {backbone: shards} (two or more) fuses the backbones (aligned
    on the first one's timeline); fusion models then get ``modality_dims`` from the data unless the
    run sets it. Writes ``oof.csv``, ``model.pt`` (state dict, feature mean and std),
    ``config.json`` (the settings, ``targets``, ``input_dim``, the ``backbones`` of a dict
    ``shard_paths``) and ``metrics.json``; returns the metrics dict.

    Per-frame tasks (``settings.task`` va or au) take their labels from ``frame_labels`` (columns
    id, frame, targets; see :func:`affectflow.data.affwild2_frames.frame_label_table`) and the
    manifest's ``fps``: each feature step is labelled with the frame it shows, and the OOF rows are
    the labelled frames, each predicted from the nearest feature step in time. ``metric`` (pearson,
    ccc, f1) scores the OOF predictions (:func:`affectflow.scoring.score_arrays`); by default the
    task's, pearson for ``clip``.

    ``settings.mask_augment`` (task au, the data balancing of Deng et al. 2023, 004) adds, for each
    training track (not the held-out validation tracks, never OOF), a copy whose visual
    features come from the face-masked shards of the same backbone (same timeline) and whose labels
    follow :func:`~affectflow.training.augment.mask_copy_labels`. ``masked_shards`` gives each
    region's shards laid out like ``shard_paths`` (see :func:`~affectflow.training.augment.masked_layouts`;
    :func:`train_fold_job` passes them); with fused backbones only the run's own backbone is swapped,
    the fused ones stay. The feature normalisation is computed on the original tracks only.

    ``settings.monitor`` names the validation set (:func:`_validation_split`) and the metric that
    chooses the kept epoch; ``metrics.json`` then records the monitor, ``best_epoch`` and
    ``best_score``; ``oof_in_sample`` (why upstream training saw the out-of-fold clips) too.
    """
    per_frame = settings.task in FRAME_TASKS
    if per_frame and frame_labels is None:
        raise ValueError(f"task {settings.task!r} is per frame: train_fold needs frame_labels (id, frame, targets)")
    metric = metric or task_metric(settings.task)
    out_dir = Path(out_dir)
    manifest = _labelled_folds(manifest, settings, k_folds)
    tracks = fold_tracks(manifest, shard_paths, targets, settings=settings, per_frame=per_frame,
                         frame_labels=frame_labels)
    settings = _with_modality_dims(settings, tracks.dims)  # what config.json records (the run's seed)
    labelled = manifest[manifest["fold"] != TEST_FOLD]
    fit_ids = _fit_ids(labelled, fold, tracks)
    s = dataclasses.replace(settings, seed=settings.seed + fold)  # each fold its own seed
    oof_ids = [int(i) for i in labelled.loc[labelled["fold"] == fold, "id"]] if fold >= 0 else []
    train_ids, val_ids, monitored = _validation_split(labelled, fold, fit_ids, oof_ids, tracks, s)

    tracks.load(train_ids + val_ids)  # the tracks fitting reads; the out-of-fold ones when predicted
    mean, std = _kept_raw(*tracks.mean_std(train_ids), s.normalise, tracks.dims)
    copies = masked_copies(s, masked_shards, train_ids, tracks, targets, mean=mean, std=std)
    tracks.normalise(mean, std)
    device = pick_device(s.device)
    train_examples = _examples(tracks, train_ids, targets, s) + [Example.make(x, y, task=s.task)
                                                                 for _, _, x, y in copies]
    fingerprint = _fingerprint(fold, train_ids, val_ids, targets, copies)
    model, history = fit(s, train_examples, val=_examples(tracks, val_ids, targets, s) or None,
                         input_dim=len(mean), output_dim=len(targets), device=device,
                         checkpoint=out_dir / "checkpoint.pt", fingerprint=fingerprint, callback=callback)
    log.info("fold %d: %d clips + %d masked copies, final train loss %.4f", fold, len(train_ids), len(copies),
             history["train_loss"][-1])

    oof = Predictor(model, tracks, targets, s, device).oof(oof_ids)
    scored = oof.dropna()
    metrics = {"fold": fold, "task": s.task, "fold_scheme": s.fold_scheme, "train_clips": len(train_ids),
               "train_examples": len(train_examples), "val_clips": len(val_ids), **_oof_counts(oof_ids, oof, scored),
               "oof_score": _score_oof(scored, tracks, targets, metric, frame_labels),
               **_history_metrics(history, monitored), "device": device}
    if oof_in_sample:
        metrics["oof_in_sample"] = oof_in_sample
    if s.mask_augment:
        metrics["mask_copies"] = {r: sum(c[0] == r for c in copies) for r in s.mask_augment}
    backbones = list(shard_paths) if isinstance(shard_paths, dict) else None  # the modalities' order
    recorded = {**recorded_settings(settings), "targets": targets, "input_dim": int(len(mean)), "backbones": backbones}
    _write_fold(out_dir, oof, model, mean, std, recorded, metrics)
    return metrics


def train_fold_job(manifest: str | os.PathLike, feature_shards: Iterable[str | os.PathLike], fold: int,
                   out_dir: str | os.PathLike, *, task: str, run: dict, seed: int, k_folds: int,
                   frame_labels: str | os.PathLike | None = None,
                   branch_models: Iterable[str | os.PathLike] = (), encoder_weights: str = "") -> dict:
    """Train fold ``fold`` of a config ``run`` on data set task ``task``: what the training rule runs.

    Reads the manifest and (per-frame tasks) the frame label table ``frame_labels`` (csv), groups
    ``feature_shards`` by the run's features keys (:func:`affectflow.config.runs.run_backbones`:
    ``backbone``, ``fuse_with``, then the face-masked copies of ``mask_augment``), hands this
    fold's unimodal models ``branch_models`` (:func:`affectflow.config.runs.branch_model_paths`) to
    the fusion model's branches, and calls :func:`train_fold` with the run's settings, the task's
    targets and metric. ``seed`` is the config's, used when the run sets none.
    """
    spec = task_spec(task)
    run = {"task": spec.name, **run}  # the data set's task unless the run says
    configured = run  # with its branch keys
    # init_branches (Yu et al. 2023, 001): this fold's unimodal models go to the fusion model's branches
    run = with_branch_checkpoints(run, [str(p) for p in branch_models])
    if finetune_input(run):
        run = with_encoder_weights(run, encoder_weights)
        settings = settings_from_run(run, seed=seed)
        grouped, shard_paths = {}, [str(p) for p in feature_shards]  # faces or media shards
    else:
        settings = settings_from_run(run, seed=seed)
        grouped = shards_by_backbone(list(feature_shards), run_backbones(run))
        shard_paths = {b: grouped[b] for b in modality_backbones(run)}
    return train_fold(
        read_manifest(manifest),
        shard_paths,
        int(fold),
        Path(out_dir),
        targets=list(spec.targets),
        settings=settings,
        k_folds=k_folds,
        frame_labels=pd.read_csv(frame_labels) if frame_labels else None,
        metric=spec.metric,
        masked_shards=masked_layouts(shard_paths, grouped, settings.mask_augment) or None,
        oof_in_sample=_upstream_in_sample(configured, shard_paths),
    )


def _upstream_in_sample(run: dict, shard_paths: ShardPaths) -> str | None:
    """Why this fold's out-of-fold clips were trained on upstream (its OOF score is then in-sample),
    or None: features of a fine-tuned encoder (trained on every fold's clips but its own), branches
    loaded from other runs' best folds (``branch_fold: best``)."""
    reasons = []
    if isinstance(shard_paths, dict):
        tuned = [b for b, paths in shard_paths.items() if paths and read_file_attrs(paths[0]).get("backbone")
                 == "finetuned"]
        if tuned:
            reasons.append(f"features {tuned} come from a fine-tuned encoder that trained on this fold's clips")
    if branch_fold(run) == "best" and branch_runs(run):
        reasons.append("its branches come from the named runs' best folds, which trained on this fold's clips")
    return "; ".join(reasons) or None


def _with_modality_dims(settings: TrainSettings, dims: list[int] | None) -> TrainSettings:
    """Fused backbones give a fusion model its ``modality_dims`` from the data unless the run sets them."""
    if dims is not None and "modality_dims" not in settings.model_params and takes_modality_dims(settings.model):
        return dataclasses.replace(settings, model_params={**settings.model_params, "modality_dims": dims})
    return settings


def _kept_raw(mean: np.ndarray, std: np.ndarray, normalise: bool | list, dims: list[int] | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The fold's statistics with the columns that stay unstandardised set to mean 0, std 1: all
    (``normalise`` false), none (true), or those of each fused modality whose entry is false."""
    if normalise is True or not len(mean):
        return mean, std
    keep = np.zeros(len(mean), bool)
    if normalise is not False:
        widths = dims or [len(mean)]
        if len(normalise) != len(widths):
            raise ValueError(f"normalise {normalise} has {len(normalise)} entries for {len(widths)} modalities")
        keep = np.repeat(np.asarray(normalise, bool), widths)
    return np.where(keep, mean, 0).astype(mean.dtype), np.where(keep, std, 1).astype(std.dtype)


def _fit_ids(labelled: pd.DataFrame, fold: int, tracks: FoldTracks) -> list[int]:
    """The labelled tracks fold ``fold`` trains on (outside the fold, or train-only) that can be fitted."""
    in_training = (labelled["fold"] != fold) | (labelled["fold"] == TRAIN_ONLY)
    fit_ids = [int(i) for i in labelled.loc[in_training, "id"] if i in tracks.trainable]
    if len(fit_ids) < 2:
        raise ValueError(f"fold {fold}: only {len(fit_ids)} training clips have features"
                         + (" and labelled frames" if tracks.per_frame else ""))
    return fit_ids


def _validation_split(labelled: pd.DataFrame, fold: int, fit_ids: list[int], oof_ids: list[int],
                      tracks: FoldTracks, s: TrainSettings) -> tuple[list[int], list[int], dict]:
    """(training ids, validation ids, what ``metrics.json`` records of the run's monitor) of fold ``fold``.

    Without a monitor: the seeded ``val_fraction`` holdout (none by default). A monitor's ``inner``
    split holds out its ``fraction`` of ``fit_ids``; its ``official`` split monitors every labelled
    clip of the organisers' validation split (manifest split ``val``) that can be fitted: none of
    them is trained on, and those among ``oof_ids`` make the out-of-fold score in-sample
    (``selection_in_sample``); its ``heldout`` split monitors the fold's out-of-fold clips. Held-out
    sets take whole groups (:func:`~affectflow.data.folds.group_keys`: an Aff-Wild2 video's two
    tracks, a subject's clips).
    """
    monitor = s.monitor_spec()
    groups = dict(zip(labelled["id"].astype(int), group_keys(labelled)))
    if monitor is None:
        train_ids, val_ids = _holdout(fit_ids, s.val_fraction, s.seed, groups)
        _check_training_left(fold, train_ids, val_ids, f"val_fraction {s.val_fraction}")
        return train_ids, val_ids, {}
    if monitor.split == "inner":
        train_ids, val_ids = _holdout(fit_ids, monitor.fraction, s.seed, groups)
    elif monitor.split == "heldout":
        train_ids, val_ids = fit_ids, [i for i in oof_ids if i in tracks.trainable]
        if not val_ids:
            raise ValueError(f"fold {fold}: monitor.split heldout, but the fold has no out-of-fold clip with features"
                             + (" and labelled frames" if tracks.per_frame else "")
                             + f" (fold scheme {s.fold_scheme}" + (": it trains on every labelled clip)"
                                                                 if s.fold_scheme == "mix" else ")"))
    else:
        official = labelled.loc[labelled["split"] == OFFICIAL_VAL_SPLIT, "id"]
        val_ids = [int(i) for i in official if i in tracks.trainable]
        held = set(val_ids)
        train_ids = [i for i in fit_ids if i not in held]
        if not val_ids:
            raise ValueError(f"fold {fold}: monitor.split official, but no labelled clip of the validation split "
                             f"(manifest split {OFFICIAL_VAL_SPLIT!r}) has features"
                             + (" and labelled frames" if tracks.per_frame else ""))
    _check_training_left(fold, train_ids, val_ids, f"monitor {monitor.describe()}")
    in_sample = bool(set(val_ids) & set(oof_ids))
    if in_sample:
        log.warning("fold %d: the monitored validation clips include out-of-fold clips: the kept epoch is chosen on "
                    "them, so this fold's OOF score is in-sample", fold)
    return train_ids, val_ids, {**monitor.describe(), "selection_in_sample": in_sample}


def _check_training_left(fold: int, train_ids: list[int], val_ids: list[int], what: str) -> None:
    """Refuse a validation set that leaves fewer than 2 clips to train on (whole groups can overshoot
    the held-out share), naming what held them out."""
    if len(train_ids) < 2:
        raise ValueError(f"fold {fold}: {what} holds out {len(val_ids)} clips and leaves {len(train_ids)} to train "
                         f"on (at least 2 needed)")


def _labelled_folds(manifest: pd.DataFrame, settings: TrainSettings, k_folds: int) -> pd.DataFrame:
    """The labelled rows of ``manifest`` (the test clips are predict_fold's) with the folds of the run's
    ``fold_scheme`` (the manifest's own ``fold`` column for ``manifest``)."""
    manifest = manifest[manifest["split"].isin(LABELLED_SPLITS)]
    if settings.fold_scheme != "manifest":
        manifest = make_folds(manifest, settings.fold_scheme, k=k_folds, seed=settings.seed)
    return manifest


def _fingerprint(fold: int, train_ids: list[int], val_ids: list[int], targets: list[str], copies: list) -> str:
    """What a resumable checkpoint was written for, beyond the settings: the fold's data."""
    return json.dumps({"fold": fold, "train": train_ids, "val": val_ids, "targets": targets,
                       **({"mask_copies": [[r, i] for r, i, _, _ in copies]} if copies else {})})


def _oof_counts(oof_ids: list[int], oof: pd.DataFrame, scored: pd.DataFrame) -> dict:
    """How many out-of-fold clips and rows there are and how many got a prediction (``scored``)."""
    return {"oof_clips": len(oof_ids), "oof_rows": len(oof), "oof_rows_predicted": len(scored),
            "oof_clips_predicted": int(scored["id"].nunique())}


def _holdout(ids: list[int], fraction: float, seed: int, groups: dict[int, tuple[str, str]]
             ) -> tuple[list[int], list[int]]:
    """(train, validation) ids: a seeded random ``fraction`` of ``ids`` held out to monitor, whole
    ``groups`` at a time (groups in a seeded random order until the fraction is reached, so a large
    group can take the held-out share past ``fraction``).

    Where every clip is its own group the held-out clips are the very ones a clip-level draw
    gives (``permutation`` shuffles a list and its indices alike), so runs without groups keep
    their validation sets."""
    if fraction <= 0:
        return ids, []
    members: dict[tuple[str, str], list[int]] = {}
    for i in ids:
        members.setdefault(groups.get(i, ("clip", str(i))), []).append(i)
    order = list(members.values())
    want, held = max(1, round(fraction * len(ids))), set()
    for n in np.random.default_rng(seed).permutation(len(order)):
        if len(held) >= want:
            break
        held.update(order[n])
    return [i for i in ids if i not in held], [i for i in ids if i in held]


def _examples(tracks: FoldTracks, ids: list[int], targets: list[str], s: TrainSettings) -> list[Example]:
    """Training examples of ``ids``: per-step labels (per-frame tasks) or the manifest's clip labels."""
    if tracks.per_frame:
        return [Example.make(tracks.model_input(i, s), tracks.step_labels[i], task=s.task) for i in ids]
    y = tracks.by_id.loc[ids, targets].to_numpy(np.float32)
    return [Example.make(tracks.model_input(i, s), y[n], task=s.task) for n, i in enumerate(ids)]


def _score_oof(scored: pd.DataFrame, tracks: FoldTracks, targets: list[str], metric: str,
               frame_labels: pd.DataFrame | None) -> dict:
    """The OOF score of the predicted rows ``scored`` against their truth (the manifest's clip labels,
    or ``frame_labels``): ``{"metric", "per_target", "mean"}``."""
    if not tracks.per_frame:
        truth = tracks.by_id.loc[scored["id"], targets].to_numpy()
    elif len(scored):
        rows = list(zip(scored["id"], scored["frame"], strict=True))
        truth = frame_labels.set_index(["id", "frame"]).loc[rows, targets].to_numpy()
    else:
        truth = np.zeros((0, len(targets)))
    score = score_arrays(metric, truth, scored[targets].to_numpy(), targets)
    return {"metric": metric, "per_target": score["per_target"], "mean": score["mean"]}


def _history_metrics(history: dict, monitored: dict) -> dict:
    """The training history as the fold's metrics report it; with a run's monitor (``monitored``: what
    :func:`_validation_split` says of it) also the monitor and the kept epoch's score (``best_score``)."""
    metrics = {
        "train_loss": history["train_loss"],
        # an epoch whose score could not be computed is NaN: null in JSON, as best_score
        "monitored": [None if v is None or not math.isfinite(v) else v for v in history["monitored"]],
        "lr": history["lr"],
        "best_epoch": history["best_epoch"],
        "epochs_run": history["epochs_run"],
        "padding_fraction": float(np.mean(history["padding_fraction"])) if history["padding_fraction"] else 0.0,
    }
    if monitored:
        best = history["best_score"]
        metrics["monitor"] = monitored
        metrics["best_score"] = best if np.isfinite(best) else None  # None: no epoch had a score
    return metrics


def _write_fold(out_dir: Path, oof: pd.DataFrame, model: torch.nn.Module, mean: np.ndarray, std: np.ndarray,
                config: dict, metrics: dict) -> None:
    """Write the fold's outputs (each atomically) and drop its resume checkpoint."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(out_dir / "oof.csv", oof)
    checkpoints.save(out_dir / "model.pt", {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                                            "mean": torch.from_numpy(mean), "std": torch.from_numpy(std)})
    write_text_atomic(out_dir / "config.json", json.dumps(config, indent=2))
    write_json_atomic(out_dir / "metrics.json", metrics)  # an undefined score (no OOF row) as null
    (out_dir / "checkpoint.pt").unlink(missing_ok=True)
