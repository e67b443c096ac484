"""Checks of the config against the registries, run when the workflow starts.

The JSON schema checks shapes and types; this checks that every name refers to something that
exists, so a typo fails at start-up listing the known names instead of deep inside a job.
"""

from __future__ import annotations

from collections.abc import Mapping

from affectflow.faces import DETECTORS
from affectflow.features import BACKBONES
from affectflow.models import MODELS
from affectflow.training.recipes import resolve_run


class ConfigError(ValueError):
    """A config value that names nothing known; the message names the key and the options."""


def check_names(config: Mapping) -> None:
    """Raise ConfigError for an unknown detector, backbone, model or ensemble member."""
    if "ground_truth" in config["dataset"] and config["dataset"].get("task", "emi") != "emi":
        raise ConfigError("dataset.ground_truth: the held-out score rule reads EMI labels (Filename + 6 emotions) "
                          f"only, not task {config['dataset']['task']!r}; remove the key")
    detector = config["faces"]["detector"]
    if detector not in DETECTORS:
        raise ConfigError(f"faces.detector: unknown {detector!r}; known: {', '.join(DETECTORS.names())}")
    for key, entry in config["features"].items():
        name = (entry or {}).get("backbone", key)  # an entry may alias a backbone: {backbone: name, ...}
        if name not in BACKBONES:
            raise ConfigError(f"features.{key}: unknown backbone {name!r}; known: {', '.join(BACKBONES.names())}")
    runs = config["train"]["runs"]
    for run, settings in runs.items():
        if settings["backbone"] not in config["features"]:
            raise ConfigError(
                f"train.runs.{run}.backbone: {settings['backbone']!r} is not configured under features "
                f"(configured: {', '.join(config['features']) or 'none'})"
            )
        model = resolve_run(settings).get("model")  # the run's own, else its recipe's
        if model is None:
            raise ConfigError(f"train.runs.{run}: no model (set model, or a recipe that names one)")
        if model not in MODELS:
            raise ConfigError(f"train.runs.{run}.model: unknown {model!r}; known: {', '.join(MODELS.names())}")
    from affectflow.ensemble.build import ENSEMBLERS

    method = config["ensemble"].get("method", "mean")
    if method not in ENSEMBLERS:
        raise ConfigError(f"ensemble.method: unknown {method!r}; known: {', '.join(ENSEMBLERS.names())}")
    if config["ensemble"].get("thresholds") and config["dataset"].get("task", "emi") != "au":
        raise ConfigError("ensemble.thresholds: per-target thresholds are for binary targets (task au) only")
    for member in config["ensemble"]["members"]:
        if member not in runs:
            raise ConfigError(f"ensemble.members: {member!r} is not a run; runs: {', '.join(runs)}")
