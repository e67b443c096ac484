"""A trained fold's model rebuilt from its ``config.json`` and ``model.pt``.

Apart from :mod:`affectflow.training.predict` (which also reads the workflow's run config) so
that a features backbone reading a fine-tuned fold (:mod:`affectflow.features.backbones.finetuned`)
can load one without an import cycle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from affectflow.models import create_model
from affectflow.runtime.device import pick_device
from affectflow.training import checkpoints
from affectflow.training.branch_init import BRANCH_PARAMS
from affectflow.training.settings import TrainSettings

__all__ = ["MODEL_KEYS", "load_fold_model", "settings_from_config"]

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
    model = create_model(settings.model, input_dim=input_dim, output_dim=len(targets),
                         **_without_starting_weights(settings.model_params))
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


def _without_starting_weights(params: dict) -> dict:
    """A fine-tuned model's parameters without the ResNet18 checkpoint its encoder started from:
    ``model.pt`` holds every weight, so a trained fold never needs that file again. (The Wav2Vec2
    encoder is built from its directory's config and keeps it.)"""
    encoder_params = params.get("encoder_params") or {}
    if "weights_path" not in encoder_params:
        return params
    return {**params, "encoder_params": {k: v for k, v in encoder_params.items() if k != "weights_path"}}
