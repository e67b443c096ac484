"""Checks of the config against the registries, run when the workflow starts.

The JSON schema checks shapes and types; this checks that every name refers to something that
exists, so a typo fails at start-up listing the known names instead of deep inside a job.
The names are read from the registries' source (:func:`affectflow.registry.declared_names`), so
the check imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping

from affectflow.registry import declared_names
from affectflow.training.recipes import resolve_run


def registered(family: str) -> list[str]:
    """The names registered in a family: ``detectors``, ``backbones``, ``models``, ``losses`` or ``ensemblers``."""
    package, registry = _FAMILIES[family]
    return declared_names(package, registry)


_FAMILIES = {
    "detectors": ("affectflow.faces", "DETECTORS"),
    "backbones": ("affectflow.features", "BACKBONES"),
    "models": ("affectflow.models", "MODELS"),
    # the package, not the module affectflow.training.losses: declared_names reads a package's modules
    "losses": ("affectflow.training", "LOSSES"),
    "ensemblers": ("affectflow.ensemble", "ENSEMBLERS"),
}


class ConfigError(ValueError):
    """A config value that names nothing known; the message names the key and the options."""


def check_names(config: Mapping) -> None:
    """Raise ConfigError for an unknown detector, backbone, model, loss or ensemble member, or a
    member without out-of-fold rows (``fold_scheme: mix``) in an ensemble that fits on them."""
    if "ground_truth" in config["dataset"] and config["dataset"]["task"] != "emi":
        raise ConfigError("dataset.ground_truth: the held-out score rule reads EMI labels (Filename + 6 emotions) "
                          f"only, not task {config['dataset']['task']!r}; remove the key")
    detector = config["faces"]["detector"]
    detectors = registered("detectors")
    if detector not in detectors:
        raise ConfigError(f"faces.detector: unknown {detector!r}; known: {', '.join(detectors)}")
    backbones, models, losses = registered("backbones"), registered("models"), registered("losses")
    for key, entry in config["features"].items():
        name = (entry or {}).get("backbone", key)  # an entry may alias a backbone: {backbone: name, ...}
        if name not in backbones:
            raise ConfigError(f"features.{key}: unknown backbone {name!r}; known: {', '.join(backbones)}")
    runs = config["train"]["runs"]
    for run, settings in runs.items():
        if settings["backbone"] not in config["features"]:
            raise ConfigError(
                f"train.runs.{run}.backbone: {settings['backbone']!r} is not configured under features "
                f"(configured: {', '.join(config['features']) or 'none'})"
            )
        resolved = resolve_run(settings)  # the run's own settings, else its recipe's
        model = resolved.get("model")
        if model is None:
            raise ConfigError(f"train.runs.{run}: no model (set model, or a recipe that names one)")
        if model not in models:
            raise ConfigError(f"train.runs.{run}.model: unknown {model!r}; known: {', '.join(models)}")
        if "loss" in resolved and resolved["loss"] not in losses:
            raise ConfigError(f"train.runs.{run}.loss: unknown {resolved['loss']!r}; known: {', '.join(losses)}")
    ensemblers = registered("ensemblers")
    for method in [config["ensemble"]["method"], *config["ensemble"]["compare"]]:
        if method not in ensemblers:
            raise ConfigError(f"ensemble: unknown method {method!r}; known: {', '.join(ensemblers)}")
    if config["ensemble"]["thresholds"] and config["dataset"]["task"] != "au":
        raise ConfigError("ensemble.thresholds: per-target thresholds are for binary targets (task au) only")
    fitted = [m for m in [config["ensemble"]["method"], *config["ensemble"]["compare"]] if m != "mean"]
    for member in config["ensemble"]["members"]:
        if member not in runs:
            raise ConfigError(f"ensemble.members: {member!r} is not a run; runs: {', '.join(runs)}")
        # a run trained on every labelled clip has no OOF rows to fit weights or thresholds on
        if resolve_run(runs[member]).get("fold_scheme") == "mix" and (fitted or config["ensemble"]["thresholds"]):
            raise ConfigError(f"ensemble.members: {member!r} has fold_scheme mix (no out-of-fold rows): only method "
                              f"mean without thresholds can combine it, not {fitted or ['thresholds']}")
