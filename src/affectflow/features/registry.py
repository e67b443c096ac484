"""Registry of feature backbones.

A backbone has a ``modality`` ("visual" or "audio"), what it ``reads`` from its input shard
("crops": a faces shard's JPEG crops; "audio": a media shard's samples; "clip": only the clip
id and frame timestamps, for features imported from files), a ``dim``, its ``params`` and
``provenance()`` (weights checksum, package version); its ``extract`` returns a (T, D) float32
array and the timestamps of its T rows. Names are versioned: a name never changes meaning, a
changed implementation gets a new name.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from functools import cache
from pathlib import Path

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


@cache
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, so a changed checkpoint changes the cache key."""
    stat = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


# Files of a local model directory (transformers ``save_pretrained``) that decide its output;
# tokenizer or README files do not.
MODEL_DIR_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin")


def dir_sha256(directory: str | os.PathLike) -> str:
    """One sha256 over a model directory's config and weight files (sharded weights included)."""
    directory = Path(directory)
    files = sorted(
        p for p in directory.iterdir()
        if p.is_file() and (p.name in MODEL_DIR_FILES or p.name.startswith(("model-", "pytorch_model-")))
    )
    if not any(p.name != "config.json" and p.suffix in (".safetensors", ".bin") for p in files):
        raise FileNotFoundError(
            f"{directory}: no model weights (expected model.safetensors or pytorch_model.bin, "
            "as written by save_pretrained)"
        )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()


# Register the built-in backbones (each module registers its names on import).
from affectflow.features import (  # noqa: E402,F401
    dino,
    dlib_face,
    fbank,
    fer_tflite,
    iresnet,
    landmarks,
    mfcc,
    openface,
    smile,
    speech,
    torch_image,
    vidmimic,
)
