"""A cached file that cannot be read, named: its path, what is wrong, and the command that rebuilds it.

A shard that was copied half-way, overwritten or hit by a disk error makes h5py raise a bare
``OSError``/``KeyError``/``RuntimeError`` ("truncated file: eof = ...") that does not say which of
the thousands of cached files it was. :func:`cache_error` turns such an error into a
:class:`DamagedCacheError` whose message a user can act on without reading code::

    damaged cache file results/emi/features/wav2vec2/shard-3.h5: the file is cut short, 1327168 of
    2654336 bytes are on disk (an interrupted copy or a full disk); h5py: truncated file: eof = 1327168,
    ... Rebuild it and what depends on it (from the workflow's directory): snakemake --cores all
    --forcerun results/emi/features/wav2vec2/shard-3.h5

Snakemake's ``--forcerun`` takes output files: it re-creates that file and re-runs every job of the
default target that depends on it. This module knows nothing of HDF5 itself; it reads h5py's messages.
"""

from __future__ import annotations

import os
import re
import shlex

#: The command that re-creates one cached file (run in the workflow's working directory).
REBUILD_COMMAND = "snakemake --cores all --forcerun {path}"
#: What the message adds: without the run's own options Snakemake builds the default demo config's jobs.
REBUILD_NOTE = "with the run's own --configfile and --profile added"

# h5py's message, e.g. "Unable to synchronously open file (truncated file: eof = 1, ...)": HDF5's own
# reason is the last parenthesised part.
_DETAIL = re.compile(r"\(([^()]*)\)\s*$")
_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")
_MISSING_OBJECT = re.compile(r"object '([^']*)' doesn't exist")


class DamagedCacheError(OSError):
    """A cached file exists but cannot be read; the message says which, why and how to rebuild it.

    An ``OSError`` because it is one: the file's bytes are not what its reader needs (h5py raised
    ``OSError`` here before, so a caller that handled that still does). ``path``, ``reason`` (plain
    words), ``detail`` (h5py's own words) and ``clip_id`` (the clip being read, if any) are kept as
    attributes. Constructible from a message alone, as DataLoader workers re-raise exceptions that way.
    """

    def __init__(self, message: str, *, path: str = "", reason: str = "", detail: str = "",
                 clip_id: str | None = None) -> None:
        super().__init__(message)
        self.path, self.reason, self.detail, self.clip_id = path, reason, detail, clip_id


class MissingCacheError(DamagedCacheError, FileNotFoundError):
    """A cached file that a reader needs is not there at all (also a ``FileNotFoundError``)."""


def rebuild_command(path: str | os.PathLike) -> str:
    """The shell command that re-creates ``path`` and re-runs what depends on it."""
    return REBUILD_COMMAND.format(path=shlex.quote(os.fspath(path)))


def h5_detail(err: BaseException) -> str:
    """h5py's reason for ``err`` without its "Unable to ..." prefix (a KeyError's text unquoted)."""
    text = str(err.args[0]) if err.args else str(err)
    found = _DETAIL.search(text)
    return found.group(1) if found else text


def plain_reason(path: str | os.PathLike, detail: str) -> str:
    """What is wrong with ``path``, in words a user can act on, from h5py's ``detail``."""
    truncated = _TRUNCATED.search(detail)
    if truncated:
        return (f"the file is cut short, {truncated.group(1)} of {truncated.group(2)} bytes are on disk "
                "(an interrupted copy or a full disk)")
    if "file signature not found" in detail:
        if _size(path) == 0:
            return "the file is empty (0 bytes)"
        return "it is not an HDF5 file (its header is missing or overwritten)"
    missing = _MISSING_OBJECT.search(detail)
    if missing:
        return f"it has no '{missing.group(1)}' entry (not written by this stage, or its index is damaged)"
    if "Input/output error" in detail or "errno = 5" in detail:
        return "the disk reported a read error"
    return "part of the file cannot be read (its contents are damaged)"


def _size(path: str | os.PathLike) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def cache_error(path: str | os.PathLike, err: BaseException, *, clip_id: str | None = None) -> DamagedCacheError:
    """The :class:`DamagedCacheError` (:class:`MissingCacheError` for a missing file) for ``err``,
    raised by h5py while reading ``path`` (and its clip ``clip_id``, when one was being read)."""
    path = os.fspath(path)
    where = path if clip_id is None else f"{path}, clip {clip_id}"
    detail = h5_detail(err)
    fix = (f"Rebuild it and what depends on it (from the workflow's directory, {REBUILD_NOTE}): "
           f"{rebuild_command(path)}")
    if isinstance(err, FileNotFoundError) and not os.path.exists(path):
        reason = "the file is missing"
        return MissingCacheError(f"cache file {where} is missing. {fix}", path=path, reason=reason, detail=detail)
    reason = plain_reason(path, detail)
    message = f"damaged cache file {where}: {reason}; h5py: {detail}. {fix}"
    return DamagedCacheError(message, path=path, reason=reason, detail=detail, clip_id=clip_id)
