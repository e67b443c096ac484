"""Shard files: one HDF5 file per shard, one group per clip under ``clips/<id>``.

Every stage (media, faces, features) writes its per-clip arrays this way, with per-clip
attributes for QC (``qc_status``, ``qc_reason``) and file attributes describing what produced it.

Every read goes through :func:`open_shard` and :func:`shard_errors`: a shard that cannot be read
(a truncated copy, overwritten bytes, a disk error) raises
:class:`~affectflow.runtime.cache_errors.DamagedCacheError`, which names the file, the clip being
read, what is wrong and the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.cache_errors import DamagedCacheError, cache_error

# What h5py raises on a damaged file: OSError (open, read), KeyError (an entry's header is
# unreadable or absent), RuntimeError (a damaged B-tree while listing a group).
H5_READ_ERRORS = (OSError, KeyError, RuntimeError)


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


@contextlib.contextmanager
def shard_errors(path: str | os.PathLike, clip_id: str | None = None) -> Iterator[None]:
    """Turn h5py's errors inside the block, reading ``path`` (its clip ``clip_id``), into
    :class:`DamagedCacheError` (a missing file: ``MissingCacheError``).

    A ``PermissionError`` passes unchanged: the file may be fine, and h5py's message names it.
    """
    try:
        yield
    except (DamagedCacheError, PermissionError):
        raise
    except H5_READ_ERRORS as err:
        raise cache_error(path, err, clip_id=clip_id) from err


def open_shard(path: str | os.PathLike) -> h5py.File:
    """``path`` opened read-only (close it, or use it as a context manager); a file that is
    missing or cannot be opened raises :class:`DamagedCacheError` naming it."""
    with shard_errors(path):
        return h5py.File(path, "r")


def read_file_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The file-level attributes of a shard."""
    with open_shard(path) as h5, shard_errors(path):
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
    faces shard without its crops; None reads them all. A clip that cannot be read raises
    :class:`DamagedCacheError` naming the shard and the clip.
    """
    for clip_id, group in clip_groups(path):
        with shard_errors(path, clip_id):
            arrays, attrs = _read_clip(group, names)
        yield clip_id, arrays, attrs  # outside shard_errors: the caller's errors stay its own


def clip_groups(path: str | os.PathLike, wanted: set[int] | None = None) -> Iterator[tuple[str, h5py.Group]]:
    """Yield ``(clip name, group)`` for each clip of a shard (only those whose integer id is in
    ``wanted``, when given), in file order, without reading any dataset. Read a group's datasets
    inside ``shard_errors(path, name)``: the file stays open until the iteration ends."""
    with open_shard(path) as h5:
        with shard_errors(path):
            clips = h5["clips"]
            names = list(clips)
        for name in names:
            if wanted is not None and int(name) not in wanted:
                continue
            with shard_errors(path, name):
                group = clips[name]
            yield name, group


def _read_clip(group: h5py.Group, names: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    # Entries are opened by name: h5py's ``items()`` gives None for one whose header is damaged.
    arrays = {}
    for name in list(group):
        if names is not None and name not in names:
            continue
        data = group[name]
        if data.dtype.kind == "O":  # vlen bytes: encoded images
            arrays[name] = [bytes(item) for item in data[()]]
        else:
            arrays[name] = data[()]
    attrs = {key: _decode(value) for key, value in group.attrs.items()}
    return arrays, attrs
