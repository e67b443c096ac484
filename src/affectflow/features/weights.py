"""The weights manifest (``resources/weights.yaml``): where each checkpoint lies, and its checksum.

Users supply the files (the licences of most checkpoints forbid redistribution); a backbone
parameter naming weights is either a manifest entry or a path. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from affectflow.runtime.hashing import dir_sha256, file_sha256

# The repository root: this file is src/affectflow/features/weights.py (resolved, because job
# scripts import the package through a symlink).
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MANIFEST = REPO_ROOT / "resources" / "weights.yaml"


def load_manifest(manifest: str | os.PathLike = DEFAULT_MANIFEST) -> dict[str, dict]:
    """The manifest's entries by name (empty if the file does not exist)."""
    path = Path(manifest)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("weights", {}))


def resolve_weights(ref: str, *, manifest: str | os.PathLike = DEFAULT_MANIFEST) -> Path:
    """The local file or directory of ``ref``: a manifest entry name, or else a path.

    Relative paths in the manifest are relative to the repository root. When the manifest gives
    a sha256 the file must match it. A missing file fails naming it and how to supply it.
    """
    if not ref:
        raise ValueError("no weights given: name an entry of resources/weights.yaml or a local path")
    entries = load_manifest(manifest)
    if ref in entries:
        entry = entries[ref]
        path = Path(os.path.expanduser(str(entry["path"])))
        if not path.is_absolute():
            path = Path(manifest).resolve().parent.parent / path
        if not path.exists():
            raise FileNotFoundError(
                f"weights {ref!r}: {path} does not exist; obtain it from {entry.get('source', '?')} "
                f"(licence: {entry.get('licence', '?')}) and put it there, or edit {manifest}"
            )
        expected = str(entry.get("sha256") or "")
        if expected:
            actual = weights_sha256(path)
            if actual != expected:
                raise ValueError(f"weights {ref!r}: {path} has sha256 {actual}, the manifest expects {expected}")
        return path
    path = Path(os.path.expanduser(ref))
    if not path.exists():
        known = ", ".join(sorted(entries)) or "(none)"
        raise FileNotFoundError(f"weights {ref!r}: neither a file nor an entry of {manifest} (entries: {known})")
    return path


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file, or of a model directory's config and weight files."""
    path = Path(path)
    return dir_sha256(path) if path.is_dir() else file_sha256(path)
