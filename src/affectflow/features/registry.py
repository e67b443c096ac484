"""Registry of feature backbones.

A backbone has a ``modality`` ("visual": reads a faces shard; "audio": reads a media shard),
a ``dim``, its ``params`` and ``provenance()`` (weights checksum, package version); its
``extract`` returns a (T, D) float32 array and the timestamps of its T rows.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache

from affectflow.registry import Registry

BACKBONES: Registry = Registry("backbone")


def create_backbone(name: str, **params):
    """Build the backbone registered under ``name``; unknown names list the known ones."""
    return BACKBONES.get(name)(**params)


def list_backbones() -> list[str]:
    """The registered backbone names."""
    return BACKBONES.names()


@cache
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, so a changed checkpoint changes the cache key."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Register the built-in backbones.
from affectflow.features import dlib_face, mfcc  # noqa: E402,F401
