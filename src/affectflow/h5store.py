"""Shard files: one HDF5 file per shard, one group per clip under ``clips/<id>``.

Every stage (media, faces, features) writes its per-clip arrays this way, with per-clip
attributes for QC (``qc_status``, ``qc_reason``) and file attributes describing what produced it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from affectflow.runtime.atomic import atomic_path


def _attr_value(value: Any) -> Any:
    # HDF5 attributes take scalars, strings and arrays; anything nested goes in as JSON.
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


class ShardWriter:
    """Writes a shard file atomically: clips go to a temporary file renamed on ``close``.

    Use as a context manager; if the block raises, no shard file appears.
    """

    def __init__(self, path: str | os.PathLike, *, file_attrs: Mapping[str, Any] | None = None) -> None:
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._h5 = h5py.File(self._tmp, "w")
        self._h5.create_group("clips")
        for key, value in (file_attrs or {}).items():
            self._h5.attrs[key] = _attr_value(value)

    def add_clip(
        self,
        clip_id: int | str,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the arrays of one clip (variable-length byte arrays are stored as vlen uint8)."""
        group = self._h5["clips"].create_group(str(clip_id))
        for name, array in arrays.items():
            if isinstance(array, list):  # a list of encoded images (bytes)
                dtype = h5py.vlen_dtype(np.dtype("uint8"))
                data = group.create_dataset(name, (len(array),), dtype=dtype)
                for i, blob in enumerate(array):
                    data[i] = np.frombuffer(blob, dtype=np.uint8)
            else:
                group.create_dataset(name, data=np.asarray(array))
        for key, value in (attrs or {}).items():
            group.attrs[key] = _attr_value(value)

    def close(self, *, failed: bool = False) -> None:
        """Close the file and move it into place (or discard it when ``failed``)."""
        self._h5.close()
        if failed:
            self._atomic.__exit__(RuntimeError, RuntimeError("shard failed"), None)
        else:
            self._atomic.__exit__(None, None, None)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def read_file_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The file-level attributes of a shard."""
    with h5py.File(path, "r") as h5:
        return {key: _decode(value) for key, value in h5.attrs.items()}


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def iter_clips(path: str | os.PathLike, names: Sequence[str] | None = None
               ) -> Iterator[tuple[str, dict[str, np.ndarray], dict[str, Any]]]:
    """Yield ``(clip_id, arrays, attrs)`` for every clip of a shard, in file order.

    ``names``: read only these datasets of each clip (those present), e.g. the timestamps of a
    faces shard without its crops; None reads them all.
    """
    with h5py.File(path, "r") as h5:
        for clip_id, group in h5["clips"].items():
            arrays = {}
            for name, data in group.items():
                if names is not None and name not in names:
                    continue
                if data.dtype.kind == "O":  # vlen bytes: encoded images
                    arrays[name] = [bytes(item) for item in data[()]]
                else:
                    arrays[name] = data[()]
            attrs = {key: _decode(value) for key, value in group.attrs.items()}
            yield clip_id, arrays, attrs
