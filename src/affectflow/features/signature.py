"""What a features entry's output depends on (its signature), and its stage and runtime keys.

A config entry ``features.<key>`` holds the backbone's parameters plus a few stage keys:
``backbone`` (the registered name, when ``<key>`` is an alias), ``timeline`` (``native`` or
``frames``), ``mask`` (``upper`` / ``lower``, face-crop backbones only) and the runtime keys
``batch_size``, ``num_workers``, ``device``, which change speed, not results. The signature (name,
parameters, weights checksum, package version, timeline, mask) reaches the features rule as
``params``, so Snakemake re-runs exactly the jobs whose signature changed; the runtime keys stay
out of it.
"""

from __future__ import annotations

import copy
import functools
import json

from affectflow.config.schema import section_defaults
from affectflow.faces.masking import REGIONS
from affectflow.features.registry import create_backbone

TIMELINES = ("native", "frames")
#: the timeline of an entry that sets none (the config schema's default)
DEFAULT_TIMELINE = section_defaults("features", "*")["timeline"]
SIGNATURE_KEYS = ("backbone", "timeline", "mask")
RUNTIME_KEYS = ("batch_size", "num_workers", "device")


def backbone_signature(name: str, params: dict) -> dict:
    """Everything the backbone's output depends on: name, parameters, weights checksum, version.

    The workflow passes this as rule ``params`` so that Snakemake re-runs exactly the jobs of a
    backbone whose signature changed.
    """
    backbone = create_backbone(name, **params)
    return {"backbone": name, "modality": backbone.modality, "params": backbone.params, **backbone.provenance()}


def split_entry(key: str, entry: dict) -> tuple[str, dict, str, dict]:
    """A config entry -> (registered name, backbone params, timeline, runtime options).

    The ``mask`` stage key is checked (:func:`check_mask`) and left out of all four.
    """
    entry = dict(entry or {})
    name = entry.pop("backbone", key)
    timeline = entry.pop("timeline", DEFAULT_TIMELINE)
    if timeline not in TIMELINES:
        raise ValueError(f"features.{key}.timeline: {timeline!r}; options: {', '.join(TIMELINES)}")
    check_mask(f"features.{key}.mask", name, entry.pop("mask", None))
    runtime = {k: entry.pop(k) for k in RUNTIME_KEYS if k in entry}
    return name, entry, timeline, runtime


def check_mask(where: str, name: str, mask) -> None:
    """Refuse an unknown region, or a mask on a backbone that does not read face crops."""
    if mask is None:
        return
    if mask not in REGIONS:
        raise ValueError(f"{where}: {mask!r}; options: {', '.join(REGIONS)} "
                         "(the half of the face blacked out, paper 004)")
    from affectflow.features.registry import BACKBONES

    factory = BACKBONES.get(name)
    kind = getattr(factory, "reads", "crops" if getattr(factory, "modality", "") == "visual" else "audio")
    if kind != "crops":
        what = "audio" if kind == "audio" else f"{kind!r} input (features imported per clip)"
        raise ValueError(f"{where}: backbone {name!r} reads {what}, not face crops; mask "
                         f"({'/'.join(REGIONS)} face masking, paper 004) applies to face-crop backbones only")


def check_feature_entries(features: dict) -> None:
    """Fail at workflow start for a ``features`` entry whose stage keys cannot work (a ``mask`` on
    an audio backbone, an unknown timeline), without building any backbone (:func:`split_entry`)."""
    for key, entry in (features or {}).items():
        split_entry(key, entry)


def feature_signature(key: str, entry: dict) -> dict:
    """The signature of config entry ``features.<key>``: the backbone's, plus its timeline and mask."""
    name, params, timeline, _ = split_entry(key, entry)  # checks the timeline and the mask
    signature = backbone_signature(name, params)
    if timeline != DEFAULT_TIMELINE:  # left out when native, so existing signatures keep their value
        signature["timeline"] = timeline
    mask = (entry or {}).get("mask")
    if mask is not None:  # likewise left out when unmasked
        signature["mask"] = mask
    return signature


@functools.cache
def _signature_from_json(name: str, params_json: str) -> dict:
    return backbone_signature(name, json.loads(params_json))


@functools.cache
def _feature_signature_from_json(key: str, entry_json: str) -> dict:
    return feature_signature(key, json.loads(entry_json))


def cached_signature(name: str, params: dict) -> dict:
    """``backbone_signature`` memoised per (name, params): the DAG asks once per shard."""
    # A deep copy: the nested ``params`` dict must not be shared with the cached value.
    return copy.deepcopy(_signature_from_json(name, json.dumps(params, sort_keys=True)))


def cached_feature_signature(key: str, entry: dict) -> dict:
    """``feature_signature`` memoised per (key, entry)."""
    return copy.deepcopy(_feature_signature_from_json(key, json.dumps(entry or {}, sort_keys=True)))


def runtime_options(key: str, entry: dict) -> dict:
    """Keyword options of :func:`build_feature_shard` read from config entry ``features.<key>``:
    the runtime keys (batch size, workers, device), which change speed only."""
    return split_entry(key, entry)[3]
