"""A trained ensemble as a portable folder: export it, and check it before predicting with it.

A bundle holds what predicting needs and what says where it came from, and no data and no
backbone weights (their licences forbid redistribution; the user supplies the same files on the
other machine)::

    bundle.json        format, package version, task, data set, the ensemble (method, members),
                       each backbone's signature (name, parameters, weights sha256, versions),
                       the training manifest's sha256 and clip count, the OOF scores (the
                       ensemble's and each member's, each fold's), every file's sha256
    config.yaml        the config it was trained with (schema defaults filled in)
    ensemble/          members.json (members, weights, AU thresholds), score.json
    train/<run>/fold<k>/   model.pt, config.json, metrics.json of every member and of every
                       fine-tuning run whose encoder a member's features come from

Predicting from a bundle (``predict.bundle``) runs the workflow with the bundle's config, its
fold models and fitted ensemble in place of a training run's. :func:`check_bundle` refuses, before
any job, a bundle with a missing or altered file, another task or ensemble than the config's, or a
backbone whose weights here have another sha256 than when it was trained (naming the features key
and both checksums): its features would not be the ones the models learnt from.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

import affectflow
from affectflow.config.runs import finetune_input, modality_backbones
from affectflow.runtime.hashing import file_sha256

__all__ = ["BUNDLE_FILE", "BUNDLE_FORMAT", "BundleError", "bundle_backbones", "bundle_config", "bundle_runs",
           "check_bundle", "export_bundle", "read_bundle"]

BUNDLE_FILE = "bundle.json"
#: the layout's version: a bundle of another format is refused rather than misread
BUNDLE_FORMAT = 1
FOLD_FILES = ("model.pt", "config.json", "metrics.json")
#: config sections that are the user's, not the model's: left out of a bundle
USER_SECTIONS = ("predict", "resources")
#: config sections a prediction depends on: predicting with a bundle under another value is refused
MODEL_SECTIONS = ("media", "faces", "features", "train", "ensemble")


class BundleError(ValueError):
    """A bundle that cannot be used here; the message names the bundle and the reason."""


def _finetuned_run(features: Mapping, key: str) -> str | None:
    entry = features.get(key) or {}
    return entry.get("run") if entry.get("backbone") == "finetuned" else None


def bundle_runs(members: Iterable[str], runs: Mapping, features: Mapping) -> list[str]:
    """The runs whose fold models a bundle holds: the ensemble's members, then every fine-tuning
    run whose encoder a bundled run's features (``backbone: finetuned``) come from."""
    out: list[str] = []
    todo = list(members)
    while todo:
        run = todo.pop(0)
        if run in out:
            continue
        out.append(run)
        if not finetune_input(runs[run]):
            todo.extend(r for key in modality_backbones(runs[run]) if (r := _finetuned_run(features, key)))
    return out


def bundle_backbones(members: Iterable[str], runs: Mapping, features: Mapping) -> list[str]:
    """The ``features`` keys the bundled runs predict from (a fine-tuning run reads crops or audio
    and carries its encoder in its fold models: none)."""
    keys: list[str] = []
    for run in bundle_runs(members, runs, features):
        if not finetune_input(runs[run]):
            keys.extend(k for k in modality_backbones(runs[run]) if k not in keys)
    return keys


def bundle_config(config: Mapping) -> dict:
    """The config a bundle records: all but :data:`USER_SECTIONS` (where to predict, cluster sizes)."""
    return {key: value for key, value in config.items() if key not in USER_SECTIONS}


def export_bundle(out_dir: str | os.PathLike, *, config: Mapping, train_dir: str | os.PathLike, runs: Mapping[str, int],
                  members_json: str | os.PathLike, score_json: str | os.PathLike, manifest: str | os.PathLike,
                  backbones: Mapping[str, Mapping]) -> dict:
    """Write the bundle (see the module docstring) to ``out_dir``, replacing it whole only once
    complete (built next to it, then renamed). ``runs``: each bundled run's number of folds (its
    ``fold0`` .. directories under ``train_dir``; a stale ``fold<k>`` beyond them is not taken);
    ``backbones``: each features key's signature as the workflow computed it. Returns the
    ``bundle.json`` record."""
    out_dir, train_dir = Path(out_dir), Path(train_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "ensemble").mkdir(parents=True)
    shutil.copy2(members_json, tmp / "ensemble" / "members.json")
    shutil.copy2(score_json, tmp / "ensemble" / "score.json")
    fold_scores = {}
    for run, n_folds in runs.items():
        folds = [train_dir / run / f"fold{k}" for k in range(int(n_folds))]
        fold_scores[run] = {}
        for fold in folds:
            target = tmp / "train" / run / fold.name
            target.mkdir(parents=True)
            for name in FOLD_FILES:
                shutil.copy2(fold / name, target / name)
            fold_scores[run][fold.name] = json.loads((fold / "metrics.json").read_text()).get("oof")
    (tmp / "config.yaml").write_text(yaml.safe_dump(bundle_config(config), sort_keys=False))
    score = json.loads(Path(score_json).read_text())
    record = {
        "format": BUNDLE_FORMAT,
        "package_version": affectflow.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "task": config["dataset"]["task"],
        "dataset": config["dataset"]["name"],
        "ensemble": {"name": config["ensemble"]["name"], "method": score.get("method"),
                     "members": json.loads(Path(members_json).read_text())["members"]},
        "backbones": {key: dict(value) for key, value in backbones.items()},
        "training_manifest": {"sha256": file_sha256(manifest), "clips": _rows(manifest)},
        "oof": {"ensemble": score.get("oof"), "members": score.get("members"), "folds": fold_scores},
        "files": {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
    }
    (tmp / BUNDLE_FILE).write_text(json.dumps(record, indent=1, allow_nan=False, default=_nan_free))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return record


def _first_difference(trained, given, where: str) -> str | None:
    """The first key path at which ``given`` differs from ``trained`` (keys ``trained`` lacks, such
    as a newer version's defaults, are not compared), with both values; None when none does."""
    if isinstance(trained, Mapping) and isinstance(given, Mapping):
        for key, value in trained.items():
            found = _first_difference(value, given.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    return None if trained == given else f"{where} ({given!r}, trained with {trained!r})"


def _nan_free(value):
    raise TypeError(f"not JSON serialisable: {value!r}")


def _rows(manifest: str | os.PathLike) -> int:
    with open(manifest) as handle:
        return max(0, sum(1 for _ in handle) - 1)


def read_bundle(bundle_dir: str | os.PathLike) -> dict:
    """The ``bundle.json`` of ``bundle_dir``, its format checked and every file it lists present
    with its recorded sha256."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / BUNDLE_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{bundle_dir}: not a bundle ({path}: {exc})") from exc
    if record.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {record.get('format')!r}; this version reads {BUNDLE_FORMAT}")
    for name, expected in record.get("files", {}).items():
        file = bundle_dir / name
        if not file.is_file():
            raise BundleError(f"{bundle_dir}: {name} is missing")
        if file_sha256(file) != expected:
            raise BundleError(f"{bundle_dir}: {name} was changed since the bundle was made "
                              f"(sha256 {file_sha256(file)}, recorded {expected})")
    return record


def check_bundle(bundle_dir: str | os.PathLike, config: Mapping) -> dict:
    """Refuse to predict with ``bundle_dir`` under ``config`` (the bundle's own, as the workflow
    runs it) when a file is missing or altered, the task or the ensemble differ, or a backbone's
    weights here have another sha256 than the bundle recorded (naming the features key and both
    checksums). Returns the bundle's record."""
    from affectflow.features.signature import cached_feature_signature  # builds backbones: torch

    record = read_bundle(bundle_dir)
    if record["task"] != config["dataset"]["task"]:
        raise BundleError(f"{bundle_dir}: a bundle of task {record['task']!r}, the config's is "
                          f"{config['dataset']['task']!r} (predict with the bundle's config.yaml)")
    members = list(config["ensemble"]["members"])
    if record["ensemble"]["members"] != members:
        raise BundleError(f"{bundle_dir}: ensemble members {record['ensemble']['members']}, the config's are "
                          f"{members} (predict with the bundle's config.yaml)")
    trained = yaml.safe_load((Path(bundle_dir) / "config.yaml").read_text()) or {}
    for section in MODEL_SECTIONS:
        where = _first_difference(trained.get(section), config.get(section), section)
        if where:
            raise BundleError(f"{bundle_dir}: the config's {where} differs from the one the bundle was trained "
                              "with (predict with the bundle's config.yaml, as affectflow predict does)")
    for key, recorded in record["backbones"].items():
        entry = config["features"].get(key)
        if entry is None:
            raise BundleError(f"{bundle_dir}: backbone {key!r} is not in the config's features")
        here = cached_feature_signature(key, entry)
        if here.get("weights_sha256", "") != recorded.get("weights_sha256", ""):
            raise BundleError(
                f"{bundle_dir}: features.{key} ({recorded.get('backbone')}, weights "
                f"{recorded.get('params', {}).get('weights', '-')}): the weights here have sha256 "
                f"{here.get('weights_sha256') or '(none)'}, the bundle was trained with "
                f"{recorded.get('weights_sha256') or '(none)'}; supply the same weights file")
    return record
