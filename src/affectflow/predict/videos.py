"""The videos to predict: listed from a folder, a list file or a list of paths, each with a name,
a stable id, a shard and its file's fingerprint; and their manifest.

The set is read when the workflow builds its job graph, as the data set's listing is
(:mod:`affectflow.data.listing`): each media job gets its shard's videos with their fingerprints,
so adding, replacing or removing a video re-runs exactly its shard. A video's id is a hash of its
name (not its rank), so adding a video never moves another to another shard.

A video's *name* is its path relative to the videos' common folder, without its suffix, with
``/`` written ``__``: unique, and usable as a file name for its outputs (``videos/<name>.csv``).
A file in a listed folder counts when its suffix is one of :data:`VIDEO_SUFFIXES`; a list file or
list names its videos explicitly, whatever their suffix (a missing or zero-byte file is kept: its
media job records why it cannot be read, and it gets a row saying so).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from affectflow.data.affwild2 import probe_video
from affectflow.data.emi import MANIFEST_COLUMNS, write_manifest
from affectflow.data.listing import Listing, fingerprint
from affectflow.data.shards import shard_of

__all__ = ["PREDICT_SPLIT", "VIDEO_SUFFIXES", "list_videos", "read_video_paths", "write_video_manifest"]

#: suffixes of the files taken from a listed folder (any case)
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
#: the ``split`` of a predicted video's manifest row
PREDICT_SPLIT = "predict"
# ids below 2**48: exact in a float64 and short in file and group names
_ID_HEX_DIGITS = 12


def read_video_paths(videos: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The video files of ``videos``: a folder (searched recursively for :data:`VIDEO_SUFFIXES`),
    a text file naming one video per line (relative to the file's folder; blank lines and lines
    starting with ``#`` skipped), or a list of paths (each a file or a folder). Absolute, resolved,
    sorted, without duplicates; an empty result or a missing folder is an error naming it."""
    items = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    found: list[Path] = []
    for item in items:
        path = Path(os.path.expanduser(str(item)))
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(path)
        elif path.is_file():
            found.extend(_listed(path))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(path)  # a named video that is missing: kept, its row says so
        else:
            raise FileNotFoundError(f"predict.videos: {path} is neither a folder, a video nor a list file")
    paths = sorted({Path(os.path.abspath(p)) for p in found})
    if not paths:
        where = ", ".join(map(str, items))
        raise FileNotFoundError(f"predict.videos: no video ({', '.join(VIDEO_SUFFIXES)}) in {where}")
    return paths


def _listed(list_file: Path) -> list[Path]:
    """The paths a list file names, relative to its folder."""
    out = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(os.path.expanduser(line))
            out.append(path if path.is_absolute() else list_file.parent / path)
    return out


def _video_id(name: str) -> int:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:_ID_HEX_DIGITS], 16)


def list_videos(videos: str | os.PathLike | Sequence[str | os.PathLike], *, n_shards: int) -> Listing:
    """The :class:`~affectflow.data.listing.Listing` of the videos to predict (see the module
    docstring): root their common folder, one row per video (id, name, split ``predict``, media
    relative to the root, shard ``"0"`` .. ``n_shards - 1``, fingerprint), by id."""
    paths = read_video_paths(videos)
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    media = [str(p.relative_to(root)) for p in paths]
    names = [os.path.splitext(m)[0].replace(os.sep, "__") for m in media]
    ids = [_video_id(n) for n in names]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise ValueError(f"predict.videos: two videos share a name or an id under {root} ({len(paths)} videos)")
    clips = pd.DataFrame({"id": pd.Series(ids, dtype="int64"), "name": names, "split": PREDICT_SPLIT,
                          "partition": PREDICT_SPLIT, "media": media,
                          "shard": [str(shard_of(i, n_shards)) for i in ids],
                          "fingerprint": [fingerprint(p) for p in paths]})
    clips = clips.sort_values("id", kind="stable").reset_index(drop=True)
    return Listing(str(root), clips, tuple(str(k) for k in range(int(n_shards))))


def write_video_manifest(clips: Sequence[Sequence], root: str | os.PathLike, out_tsv: str | os.PathLike, *,
                         per_frame: bool) -> pd.DataFrame:
    """Write the manifest of the videos to predict: ``clips`` are ``(id, name, split, media[,
    fingerprint])`` (:meth:`Listing.partition_clips`), media relative to ``root``. For the
    per-frame tasks each video's ``fps`` and ``frames`` are probed as the data set's test tracks'
    are (:func:`~affectflow.data.affwild2.probe_video`; NaN and 0 when it cannot be probed), so
    its predictions have one row per video frame. Returns the table."""
    rows = []
    for clip in clips:
        clip_id, name, split, media = clip[:4]
        row = {"id": int(clip_id), "split": split, "subject": "", "media": os.path.join(str(root), media),
               "name": name}
        if per_frame:
            probed = probe_video(Path(row["media"]))
            row["fps"], row["frames"] = probed if probed else (float("nan"), 0)
        rows.append(row)
    columns = [*MANIFEST_COLUMNS, "name", *(["fps", "frames"] if per_frame else [])]
    table = pd.DataFrame.from_records(rows, columns=columns)
    write_manifest(table, out_tsv)
    return table
