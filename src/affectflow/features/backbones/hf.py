"""Loading transformers models from a local directory only (never from the hub)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path


def read_config(directory: Path) -> dict:
    """The model's config.json, read without importing transformers (the DAG only needs its sizes)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json; expected a directory written by save_pretrained")
    return json.loads(path.read_text())


def from_local(cls, directory: Path, **kwargs):
    """``cls.from_pretrained(directory)`` with the hub switched off for this call."""
    return cls.from_pretrained(str(directory), local_files_only=True, **kwargs)


def versions() -> str:
    """torch and transformers versions, for provenance."""
    return f"torch {importlib.metadata.version('torch')} transformers {importlib.metadata.version('transformers')}"
