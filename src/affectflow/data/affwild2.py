"""Reader for Aff-Wild2 (ABAW valence-arousal ``va`` and action-unit ``au`` tasks).

Layout under ``root``::

    Annotations/VA_Estimation_Challenge/Train_Set/<track>.txt        (AU: AU_Detection_Challenge)
    Annotations/VA_Estimation_Challenge/Validation_Set/<track>.txt
    videos/**/<video>.mp4 | .avi                                      any depth under videos/
    cropped_aligned/<track>/00001.jpg ...                             1-based, with gaps
    names_of_videos_in_each_test_set/Valence_Arousal_Estimation_Challenge_test_set_release.txt
                                     (AU: Action_Unit_Detection_Challenge_test_set_release.txt)

One manifest row per annotation track. A track ``<video>_left`` / ``<video>_right`` (two people
in one video) uses the media of ``<video>`` unless a video named like the track itself exists;
``subject`` is the video name, so both people of a video fall in one fold.

Annotation files (read by :mod:`affectflow.data.affwild2_frames`): line 1 is the header
(``valence,arousal`` or ``AU1,...,AU26``), line k+1 belongs to frame k. A file may have fewer
lines than the video has frames, but at most
:data:`FRAME_TOLERANCE` (1) more: ffprobe's ``nb_frames`` of Aff-Wild2 videos is known to be
one short of the organisers' annotation count for some videos, while a larger excess means the
annotation belongs to another video.

``fps`` and ``frames`` come from PyAV (the video stream's ``average_rate`` and ``frames``); when
the container states no frame count, ``frames = round(duration * fps)`` (decoding every frame of
3M frames only to count them is too slow). A track whose video is missing or cannot be probed
is kept with ``fps`` NaN and ``frames`` 0, and a warning is logged (its frame-count check is
skipped): the submission must still list it.

Test tracks come from ``test_list`` (a text file, one track name per line); by default the
organisers' file (:data:`TEST_LIST_NAMES`) is looked for at ``root/``,
``root/names_of_videos_in_each_test_set/`` and ``root/Annotations/<challenge>/``. With no test
list there are no test rows, and this is logged.

:func:`organiser_files` lists the organisers' files a manifest is read from (the annotation
folder and the test list passed, if any) and :func:`count_clips` counts the annotated tracks,
for the workflow to plan its jobs before the manifest exists.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
from pathlib import Path

import av
import numpy as np
import pandas as pd

from affectflow.data.affwild2_frames import check_task, parse_annotation
from affectflow.data.emi import MANIFEST_COLUMNS, DatasetError, data_rows, location

__all__ = [
    "CHALLENGE_DIRS",
    "FRAME_TOLERANCE",
    "PER_FRAME_COLUMNS",
    "SPLIT_DIRS",
    "TEST_LIST_NAMES",
    "count_clips",
    "organiser_files",
    "probe_video",
    "read_affwild2_manifest",
    "read_sample_frames",
    "track_id",
    "video_of_track",
]

log = logging.getLogger(__name__)

#: the annotation folder of each task's challenge under ``root/Annotations``
CHALLENGE_DIRS: dict[str, str] = {"va": "VA_Estimation_Challenge", "au": "AU_Detection_Challenge"}
SPLIT_DIRS: dict[str, str] = {"Train_Set": "train", "Validation_Set": "val"}
TEST_LIST_NAMES: dict[str, str] = {
    "va": "Valence_Arousal_Estimation_Challenge_test_set_release.txt",
    "au": "Action_Unit_Detection_Challenge_test_set_release.txt",
}
TEST_LIST_DIRS: tuple[str, ...] = (".", "names_of_videos_in_each_test_set")
#: how many more annotation lines than video frames are accepted (see the module docstring)
FRAME_TOLERANCE = 1
#: manifest columns of a per-frame task after MANIFEST_COLUMNS
PER_FRAME_COLUMNS: tuple[str, ...] = ("name", "labels", "fps", "frames", "crops")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi")
_PERSON_SUFFIXES: tuple[str, ...] = ("_left", "_right")
_SAMPLE_RE = re.compile(r"^(.+)/(\d+)\.jpg$")


def track_id(name: str) -> int:
    """Stable integer id of an Aff-Wild2 track: the first 12 hex digits of sha1(name)."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:12], 16)


def video_of_track(track: str, videos: dict[str, Path] | None = None) -> str:
    """The video name a track belongs to: ``v_left``/``v_right`` -> ``v``, else the track itself.

    When ``videos`` (name -> path) is given and holds the track's own name, that wins.
    """
    if videos is not None and track in videos:
        return track
    for suffix in _PERSON_SUFFIXES:
        if track.endswith(suffix) and len(track) > len(suffix):
            return track[: -len(suffix)]
    return track


# --- sample submission ------------------------------------------------------------------------
def read_sample_frames(path: str | os.PathLike) -> pd.DataFrame:
    """The frames the organisers' sample submission lists: columns ``name`` (track), ``frame``.

    The file is a csv whose header starts with ``image_location`` and whose rows start with
    ``<track>/00001.jpg``; the other columns are not read. Rows keep the file's order. A
    missing file, a bad header, a malformed location, frame 0 or a duplicate location raises
    :class:`DatasetError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: sample submission file not found")
    names: list[str] = []
    frames: list[int] = []
    seen: dict[tuple[str, int], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0].strip() != "image_location":
            got = ",".join(header) if header else "an empty file"
            raise DatasetError(f"{location(path, 1)}: bad header {got!r}, expected image_location,...")
        for line, cells in data_rows(reader, len(header), path):
            match = _SAMPLE_RE.match(cells[0])
            if not match:
                raise DatasetError(
                    f"{location(path, line)}: image_location {cells[0]!r} is not <video>/<frame>.jpg"
                )
            name, frame = match.group(1), int(match.group(2))
            if frame < 1:
                raise DatasetError(f"{location(path, line)}: frame {frame} in {cells[0]!r}; frames start at 1")
            key = (name, frame)
            if key in seen:
                raise DatasetError(
                    f"{location(path, line)}: duplicate image_location {cells[0]!r} (first seen on line {seen[key]})"
                )
            seen[key] = line
            names.append(name)
            frames.append(frame)
    return pd.DataFrame({"name": pd.Series(names, dtype=object), "frame": np.asarray(frames, dtype=np.int64)})


# --- media ------------------------------------------------------------------------------------
def _list_videos(videos_dir: Path) -> dict[str, list[Path]]:
    """Video name (file stem) -> every .mp4/.avi with that stem anywhere under ``videos/``."""
    if not videos_dir.is_dir():
        raise DatasetError(f"{videos_dir}: video directory not found (expected videos/**/<video>.mp4 or .avi)")
    found: dict[str, list[Path]] = {}
    for dirpath, _dirnames, filenames in os.walk(videos_dir):
        for filename in filenames:
            stem, suffix = os.path.splitext(filename)
            if suffix.lower() in VIDEO_SUFFIXES:
                found.setdefault(stem, []).append(Path(dirpath) / filename)
    return found


def probe_video(path: Path) -> tuple[float, int] | None:
    """``(fps, frames)`` of a video from its container, or None if it cannot be probed."""
    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            if video is None:
                return None
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else 0.0
            frames = int(video.frames or 0)
            if frames <= 0 and fps > 0:
                if video.duration and video.time_base:
                    duration = float(video.duration * video.time_base)
                else:
                    duration = container.duration / av.time_base if container.duration else 0.0
                frames = int(round(duration * fps))
            if fps <= 0 or frames <= 0:
                return None
            return fps, frames
    except (av.error.FFmpegError, OSError, ValueError):
        return None


# --- manifest ---------------------------------------------------------------------------------
def _read_test_list(path: Path) -> list[tuple[int, str]]:
    """``(line, track)`` per non-blank line of a test list; duplicates are an error."""
    if not path.is_file():
        raise DatasetError(f"{path}: test list not found")
    out, seen = [], {}
    with path.open(encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, start=1):
            name = text.strip()
            if not name:
                continue
            if "/" in name or "," in name or os.sep in name:
                raise DatasetError(f"{location(path, line)}: {name!r} is not a track name")
            if name in seen:
                raise DatasetError(
                    f"{location(path, line)}: duplicate track {name!r} (first seen on line {seen[name]})")
            seen[name] = line
            out.append((line, name))
    return out


def _default_test_list(root: Path, task: str) -> Path | None:
    name = TEST_LIST_NAMES[task]
    candidates = [root / d / name for d in TEST_LIST_DIRS] + [root / "Annotations" / CHALLENGE_DIRS[task] / name]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{root}: several test lists named {name}: {', '.join(map(str, found))}; pass test_list= to pick one"
        )
    return found[0] if found else None


def annotation_dir(root: str | os.PathLike, task: str) -> str:
    """``root/Annotations/<challenge>`` of ``task``, as text (``root`` as given)."""
    return f"{root}/Annotations/{CHALLENGE_DIRS[check_task(task)]}"


def organiser_files(root: str | os.PathLike, task: str, *, test_list: str | os.PathLike | None = None) -> list[str]:
    """The organisers' files the manifest of ``task`` is read from: the annotation folder, and ``test_list``
    when one is passed (the default test list is looked for, not required)."""
    return [annotation_dir(root, task)] + ([str(test_list)] if test_list is not None else [])


def count_clips(root: str | os.PathLike, task: str) -> int | None:
    """Annotated tracks (``.txt`` files at any depth) of ``task``'s challenge; None when there are none.

    The test tracks (about a quarter more) are not counted.
    """
    annotations = annotation_dir(root, task)
    total = sum(name.endswith(".txt") for _, _, names in os.walk(annotations) for name in names)
    return total or None


def _annotated_tracks(ann_root: Path) -> list[tuple[str, str, Path | None]]:
    """``(name, split, labels)`` per annotation file of the train and validation splits."""
    tracks: list[tuple[str, str, Path | None]] = []
    where: dict[str, str] = {}
    for dirname, split in SPLIT_DIRS.items():
        split_dir = ann_root / dirname
        if not split_dir.is_dir():
            raise DatasetError(f"{split_dir}: annotation split directory not found")
        for path in sorted(split_dir.glob("*.txt")):
            name = path.stem
            if name in where:
                raise DatasetError(f"{path}: track {name!r} is also annotated in {where[name]}")
            where[name] = str(path)
            tracks.append((name, split, path))
    return tracks


def _test_tracks(root: Path, task: str, test_list: str | os.PathLike | None,
                 annotated: list[tuple[str, str, Path | None]]) -> list[tuple[str, str, Path | None]]:
    """``(name, "test", None)`` per track of the test list (``test_list`` or the organisers' file)."""
    if test_list is None:
        test_path = _default_test_list(root, task)
        if test_path is None:
            log.warning(
                "%s: no test list (%s under %s) and none passed: the manifest has no test rows",
                root, TEST_LIST_NAMES[task], " or ".join(TEST_LIST_DIRS),
            )
            return []
    else:
        test_path = Path(test_list).resolve()
    where = {name: str(labels) for name, _, labels in annotated}
    tracks: list[tuple[str, str, Path | None]] = []
    for line, name in _read_test_list(test_path):
        if name in where:
            raise DatasetError(f"{location(test_path, line)}: test track {name!r} is also annotated in {where[name]}")
        where[name] = location(test_path, line)
        tracks.append((name, "test", None))
    return tracks


def _track_media(root: Path, name: str, videos: dict[str, list[Path]]) -> tuple[str, Path, bool]:
    """``(video name, media path, found)`` of a track; a video found twice is an error."""
    video = video_of_track(name, videos)
    paths = videos.get(video, [])
    if len(paths) > 1:
        raise DatasetError(
            f"{root / 'videos'}: video {video!r} (track {name!r}) is found {len(paths)} times: "
            + ", ".join(sorted(map(str, paths)))
        )
    if paths:
        return video, paths[0], True
    return video, root / "videos" / f"{video}.mp4", False


def _track_records(root: Path, task: str, tracks: list[tuple[str, str, Path | None]],
                   videos: dict[str, list[Path]], frame_tolerance: int, probe: bool = True) -> list[dict]:
    """One manifest record per track: its media probed, its annotation checked against the video length
    (without ``probe``: neither, ``fps`` NaN and ``frames`` 0)."""
    probes: dict[Path, tuple[float, int] | None] = {}
    records, missing = [], []
    for name, split, labels in tracks:
        video, media, found = _track_media(root, name, videos)
        fps, frames = math.nan, 0
        if probe and found:
            if media not in probes:
                probes[media] = probe_video(media)
            if probes[media] is not None:
                fps, frames = probes[media]
            else:
                missing.append(f"{name} (unreadable {media.name})")
        elif probe:
            missing.append(f"{name} (no video {video!r})")
        if labels is not None and probe:
            n_lines = len(parse_annotation(labels, task))
            if frames and n_lines > frames + frame_tolerance:
                raise DatasetError(
                    f"{location(labels, n_lines + 1)}: {n_lines} annotated frames but the video {media} has "
                    f"{frames} frames (at most {frame_tolerance} more allowed)"
                )
        crops = root / "cropped_aligned" / name
        records.append(
            {
                "id": track_id(name), "split": split, "subject": video, "media": str(media),
                "name": name, "labels": str(labels) if labels is not None else "",
                "fps": fps, "frames": frames, "crops": str(crops) if crops.is_dir() else "",
            }
        )
    if missing:
        log.warning(
            "%s: %d track(s) have no readable video and stay in the manifest with fps NaN, frames 0: %s",
            root, len(missing), "; ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    return records


def read_affwild2_manifest(
    root: str | os.PathLike,
    task: str,
    *,
    test_list: str | os.PathLike | None = None,
    frame_tolerance: int = FRAME_TOLERANCE,
    probe: bool = True,
) -> pd.DataFrame:
    """Read the Aff-Wild2 annotations of ``task`` ("va" or "au") under ``root`` into a manifest.

    One row per annotation track (train: ``Train_Set``, val: ``Validation_Set``) and per test
    track of the test list, sorted by id, with columns ``id`` (:func:`track_id` of the name),
    ``split``, ``subject`` (the video name, shared by ``_left``/``_right``), ``media`` (absolute
    video path), ``name`` (the track), ``labels`` (annotation path, "" for test), ``fps``,
    ``frames`` (from PyAV; see the module docstring), ``crops`` (``cropped_aligned/<track>`` if
    that directory exists, else "").

    ``test_list``: a text file of test track names, one per line; None looks for the
    organisers' file (:data:`TEST_LIST_NAMES`). ``frame_tolerance``: how many more annotation
    lines than video frames are accepted. ``probe=False`` lists the tracks only (the workflow's
    start-up listing): no video is opened and no annotation parsed, ``fps`` is NaN and ``frames`` 0.

    Raises :class:`DatasetError` naming the file and line for a malformed annotation file or
    test list, a track in two splits (or labelled and in the test list), an annotation longer
    than its video (beyond the tolerance), a video name found twice under ``videos/``, and a
    missing ``videos/`` or annotation directory.
    """
    task = check_task(task)
    if int(frame_tolerance) != frame_tolerance or frame_tolerance < 0:
        raise ValueError(f"frame_tolerance must be a non-negative integer, got {frame_tolerance!r}")
    root = Path(root).resolve()
    ann_root = root / "Annotations" / CHALLENGE_DIRS[task]
    if not ann_root.is_dir():
        raise DatasetError(f"{ann_root}: annotation directory not found (expected {'/'.join(SPLIT_DIRS)} inside)")
    videos = _list_videos(root / "videos")
    tracks = _annotated_tracks(ann_root)
    tracks += _test_tracks(root, task, test_list, tracks)
    records = _track_records(root, task, tracks, videos, frame_tolerance, probe)
    df = pd.DataFrame.from_records(records, columns=[*MANIFEST_COLUMNS, *PER_FRAME_COLUMNS])
    ids = df["id"]
    if ids.duplicated().any():  # a sha1 prefix collision: astronomically unlikely, but never silent
        dup = df.loc[ids.duplicated(keep=False), "name"].tolist()
        raise DatasetError(f"{root}: tracks {dup} hash to the same id")
    df = df.astype({"id": "int64", "fps": "float64", "frames": "int64"})
    for col in ("split", "subject", "media", "name", "labels", "crops"):
        df[col] = df[col].astype(object)
    return df.sort_values("id", kind="stable").reset_index(drop=True)
