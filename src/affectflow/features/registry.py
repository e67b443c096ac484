"""Registry of feature backbones.

A backbone has a ``modality`` ("visual" or "audio"), what it ``reads`` from its input shard
("crops": a faces shard's JPEG crops; "audio": a media shard's samples; "clip": only the clip
id and frame timestamps, for features imported from files), a ``dim``, its ``params`` and
``provenance()`` (weights checksum, package version); its ``extract`` returns a (T, D) float32
array and the timestamps of its T rows. Names are versioned: a name never changes meaning, a
changed implementation gets a new name.
"""

from __future__ import annotations

import inspect

from affectflow.registry import Registry

BACKBONES: Registry = Registry("backbone")


def create_backbone(name: str, **params):
    """Build the backbone registered under ``name``; unknown names list the known ones.

    A parameter the backbone does not take fails naming it and the backbone's parameters.
    """
    factory = BACKBONES.get(name)
    accepted = [p for p in inspect.signature(factory).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(params) - {p.name for p in accepted})
    if unknown:
        options = ", ".join(p.name for p in accepted) or "(none)"
        raise ValueError(f"backbone {name!r}: unknown parameter(s) {', '.join(unknown)}; it takes: {options}")
    return factory(**params)


def list_backbones() -> list[str]:
    """The registered backbone names."""
    return BACKBONES.names()
