"""The videos to predict: listed from a folder, a list file or a list of paths, each with a name,
a stable id, a shard and its file's fingerprint; and their manifest.

The set is read when the workflow builds its job graph, as the data set's listing is
(:mod:`affectflow.data.listing`): each media job gets its shard's videos with their fingerprints,
so adding, replacing or removing a video re-runs exactly its shard. A video's id is a hash of its
name (not its rank), so adding a video never moves another to another shard.

A video's *name* is its path relative to the folder it was listed from (the folder given, or the
list file's folder), without its suffix, with ``/`` written ``__`` (:func:`video_names`): unique,
stable when other videos are added, and usable as a file name for its outputs
(``videos/<name>.csv``). A file in a listed folder counts when its suffix is one of
:data:`VIDEO_SUFFIXES` and no part of its path is hidden (``.x``); a list file names its videos
explicitly, whatever their suffix (a missing or zero-byte file is kept: its media job records why
it cannot be read, and it gets a row saying so).
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

__all__ = ["PREDICT_SPLIT", "VIDEO_SUFFIXES", "list_videos", "read_video_paths", "video_names", "write_video_manifest"]

#: suffixes of the files taken from a listed folder (any case)
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
#: the ``split`` of a predicted video's manifest row
PREDICT_SPLIT = "predict"
# ids below 2**48: exact in a float64 and short in file and group names
_ID_HEX_DIGITS = 12


def read_video_paths(videos: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """The video files of ``videos``, each with the folder its name is relative to: a folder
    (searched recursively for :data:`VIDEO_SUFFIXES`, hidden files left out; names relative to
    it), a text file naming one video per line (relative to the file's folder; blank lines and
    lines starting with ``#`` skipped), a video file (its folder), or a list of these. Absolute,
    sorted, each file once; an empty result or a path that is none of these is an error naming it
    (a named video that is missing is kept: its row says it cannot be read)."""
    items = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    found: dict[Path, Path] = {}
    for item in items:
        path = Path(os.path.abspath(os.path.expanduser(str(item))))
        if path.is_dir():
            for video in sorted(path.rglob("*")):
                relative = video.relative_to(path).parts
                if video.is_file() and video.suffix.lower() in VIDEO_SUFFIXES and not any(
                        part.startswith(".") for part in relative):
                    found.setdefault(video, path)
        elif path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
            for video in _listed(path):
                found.setdefault(video, path.parent)
        elif path.is_file() or path.suffix.lower() in VIDEO_SUFFIXES:
            found.setdefault(path, path.parent)
        else:
            raise FileNotFoundError(f"predict.videos: {path} is neither a folder, a video nor a list file")
    if not found:
        where = ", ".join(map(str, items))
        raise FileNotFoundError(f"predict.videos: no video ({', '.join(VIDEO_SUFFIXES)}) in {where}")
    return sorted(found.items())


def _listed(list_file: Path) -> list[Path]:
    """The paths a list file names, relative to its folder."""
    out = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(os.path.expanduser(line))
            out.append(Path(os.path.abspath(path if path.is_absolute() else list_file.parent / path)))
    return out


def video_names(paths: Sequence[tuple[Path, Path]]) -> list[str]:
    """Each video's name: its path relative to its folder (:func:`read_video_paths`; the file's
    name when it lies outside it) without the suffix, ``/`` written ``__``; videos whose names
    would be the same keep their suffix (``x.mp4``, ``x.mov``). Two that still share one are an
    error naming both files."""
    def name(path: Path, base: Path, suffix: bool) -> str:
        relative = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
        text = relative.as_posix() if suffix else relative.with_suffix("").as_posix()
        return text.replace("/", "__")

    names = [name(p, b, suffix=False) for p, b in paths]
    counts = pd.Series(names).value_counts()
    names = [name(p, b, suffix=True) if counts[n] > 1 else n for (p, b), n in zip(paths, names, strict=True)]
    seen: dict[str, Path] = {}
    for (path, _), n in zip(paths, names, strict=True):
        if n in seen:
            raise ValueError(f"predict.videos: {seen[n]} and {path} would both be named {n!r}; "
                             "rename one, or list them from one folder")
        seen[n] = path
    return names


def _video_id(name: str) -> int:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:_ID_HEX_DIGITS], 16)


def list_videos(videos: str | os.PathLike | Sequence[str | os.PathLike], *, n_shards: int) -> Listing:
    """The :class:`~affectflow.data.listing.Listing` of the videos to predict (see the module
    docstring): one row per video (id, name, split ``predict``, media as an absolute path, under
    the root ``/``, shard ``"0"`` .. ``n_shards - 1``, fingerprint), by id."""
    paths = read_video_paths(videos)
    names = video_names(paths)
    ids = [_video_id(n) for n in names]
    if len(set(ids)) != len(ids):  # 48-bit hashes of distinct names: not expected, but never merged
        raise ValueError(f"predict.videos: two of {len(ids)} video names hash to one id; rename one")
    clips = pd.DataFrame({"id": pd.Series(ids, dtype="int64"), "name": names, "split": PREDICT_SPLIT,
                          "partition": PREDICT_SPLIT, "media": [str(p) for p, _ in paths],
                          "shard": [str(shard_of(i, n_shards)) for i in ids],
                          "fingerprint": [fingerprint(p) for p, _ in paths]})
    clips = clips.sort_values("id", kind="stable").reset_index(drop=True)
    return Listing(os.sep, clips, tuple(str(k) for k in range(int(n_shards))))


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
