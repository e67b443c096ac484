"""Reading per-clip feature files: locating them by clip id, fingerprinting a directory of them,
and unpickling arrays without running arbitrary code."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np


def clip_file(directory: Path, clip_id: str, suffix: str) -> Path | None:
    """``<directory>/<id><suffix>``, also as a zero-padded 5-digit id (Hume-Vidmimic2's ``00042``)."""
    names = [f"{clip_id}{suffix}"]
    if str(clip_id).isdigit():
        names += [f"{int(clip_id):05d}{suffix}", f"{int(clip_id)}{suffix}"]
    for name in names:
        path = directory / name
        if path.is_file():
            return path
    return None


def directory_fingerprint(directory: Path, suffix: str) -> str:
    """sha256 over the names and sizes of a directory's ``*<suffix>`` files.

    Cheap even for 17k files, and it changes when files are added, removed or rewritten with a
    different size, so the workflow re-imports them.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (it should hold one <clip id>{suffix} per clip)")
    digest = hashlib.sha256()
    with os.scandir(directory) as entries:
        for name, size in sorted((e.name, e.stat().st_size) for e in entries if e.name.endswith(suffix)):
            digest.update(f"{name}:{size}\n".encode())
    return digest.hexdigest()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists and dicts only: a pickle naming anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are read")


def load_array_pickle(path: Path) -> np.ndarray:
    """A 2-D float array from a pickle of an array (or a dict with one array, or a list of rows)."""
    with open(path, "rb") as fh:
        obj = _ArrayUnpickler(io.BytesIO(fh.read())).load()
    if isinstance(obj, dict):
        arrays = [v for v in obj.values() if isinstance(v, (np.ndarray, list))]
        if len(arrays) != 1:
            raise ValueError(f"{path}: a dict with {len(arrays)} arrays; expected exactly one")
        obj = arrays[0]
    array = np.asarray(obj, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D (T, D) array, not shape {array.shape}")
    return array
