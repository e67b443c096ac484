"""A tiny Aff-Wild2 root (the VA and AU challenges) with labels planted per frame.

Videos are rendered like the other fixtures (:mod:`affectflow.testing.media`). The picture
brightness of each person and the loudness of the audio change sinusoidally within a clip;
valence follows the person's brightness, arousal the loudness, and each AU is on when one of the
two signals is above an AU-specific level. Everything is drawn from ``seed``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.data.affwild2 import CHALLENGE_DIRS, SPLIT_DIRS, TEST_LIST_NAMES
from affectflow.data.affwild2_frames import INVALID, TARGETS
from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import AU_TARGETS, image_location
from affectflow.testing.datasets import (
    PROPERTIES_FILE,
    SAMPLE_SUBMISSION_NAMES,
    TEST_LIST_DIR,
    split_names,
    write_csv,
)
from affectflow.testing.media import HEIGHT, WIDTH, hstack_clips, plan_rows, render_clips

__all__ = ["make_affwild2"]

CROP_SIZE = 112
#: annotation folder of each labelled split (the inverse of the reader's SPLIT_DIRS)
SPLIT_FOLDERS: dict[str, str] = {split: folder for folder, split in SPLIT_DIRS.items()}


def _signal(t: np.ndarray, period: float, phase: float) -> np.ndarray:
    return np.sin(2 * np.pi * t / period + phase)


def _sin_expr(amplitude: float, period: float, phase: float) -> str:
    return f"{amplitude:.4f}*sin(2*PI*t/{period:.4f}+{phase:.4f})"


def _write_crops(video: Path, out_dirs: list[Path], keep: list[np.ndarray]) -> None:
    """Face crops (CROP_SIZE square) of each person (equal vertical strips) for kept frames."""
    import av
    import cv2

    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        for k, frame in enumerate(container.decode(video=0), start=1):
            img = frame.to_ndarray(format="bgr24")
            h, w = img.shape[:2]
            strip = w // len(out_dirs)
            for p, d in enumerate(out_dirs):
                if k > len(keep[p]) or not keep[p][k - 1]:
                    continue
                side = min(strip, h)
                x0 = p * strip + (strip - side) // 2
                y0 = (h - side) // 4  # faces sit in the upper part of the picture
                crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (CROP_SIZE, CROP_SIZE))
                cv2.imwrite(str(d / f"{k:05d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _annotation_text(values: np.ndarray, header: tuple[str, ...], task: str) -> str:
    lines = [",".join(header)]
    for row in values:
        if task == "va":
            lines.append(",".join(f"{v:g}" if v == -5 else f"{v:.4f}" for v in row))
        else:
            lines.append(",".join(str(int(v)) for v in row))
    return "\n".join(lines) + "\n"


def _render_videos(root: Path, rows: list[pd.Series], splits: list[str], pairs: set[int], au_skip: int | None,
                   rng: np.random.Generator, resources: str | Path | None,
                   seconds: tuple[float, float] = (1.5, 2.5)) -> tuple[list, list[dict]]:
    """Render every video; return ``(name, path, people)`` per video and the facts of each track."""
    n = len(rows)
    videos, tracks = [], []  # tracks: dicts of per-track facts
    jobs, stacks = [], []
    tmpdir = tempfile.TemporaryDirectory(prefix="affectflow-affwild2-")
    try:
        for i, row in enumerate(rows):
            name = f"video{i + 1}" if i % 2 else f"{i + 1}-30-{WIDTH}x{HEIGHT}"
            row = row.copy()
            row["fps_rational"], row["fps"] = ("25", 25.0) if i == 1 else ("30", 30.0)
            row["n_frames"] = int(round(rng.uniform(*seconds) * row["fps"]))
            row["brightness"] = 0.0
            out = root / "videos" / ("batch1" if i < n / 2 else "batch2") / f"{name}.mp4"
            out.parent.mkdir(parents=True, exist_ok=True)
            loud_period, loud_phase = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0, 2 * np.pi))
            # +-15 dB around a speech level of -14 dB: the modulation dominates the speech's own
            # syllable-to-pause swings, and the peaks stay below full scale
            row["gain_db"] = -14.0
            volume = f"pow(10,{_sin_expr(0.75, loud_period, loud_phase)})"
            people = ["_left", "_right"] if i in pairs else [""]
            halves = []
            for p, suffix in enumerate(people):
                period, phase = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0, 2 * np.pi))
                tracks.append(
                    {"name": name + suffix, "video": name, "split": splits[i], "person": p,
                     "n_people": len(people), "fps": row["fps"], "frames": row["n_frames"],
                     "bright_period": period, "bright_phase": phase,
                     "loud_period": loud_period, "loud_phase": loud_phase, "in_au": i != au_skip}
                )
                halves.append((period, phase))
            if len(people) == 1:
                jobs.append((row, out, _sin_expr(0.2, *halves[0]), volume))
            else:
                parts = []
                for p, (period, phase) in enumerate(halves):
                    half = row.copy()
                    half["face_source"] = ("talker", "astronaut")[(i + p) % 2]
                    part = Path(tmpdir.name) / f"{name}_{p}.mp4"
                    jobs.append((half, part, _sin_expr(0.2, period, phase), volume if p == 0 else None))
                    parts.append(part)
                stacks.append((parts[0], parts[1], out))
            videos.append((name, out, people))
        render_clips(jobs, resources)
        for left, right, out in stacks:
            hstack_clips(left, right, out)
    finally:
        tmpdir.cleanup()
    return videos, tracks


def _plant_truth(tracks: list[dict], rng: np.random.Generator) -> dict[str, list[pd.DataFrame]]:
    """Per-frame VA and AU truth of every track (stored in the track's ``va`` / ``au``), as tables."""
    au_levels = rng.permutation(np.linspace(-0.6, 0.6, len(AU_TARGETS)))
    truth: dict[str, list[pd.DataFrame]] = {"va": [], "au": []}
    for tr in tracks:
        t = np.arange(tr["frames"]) / tr["fps"]
        bright = _signal(t, tr["bright_period"], tr["bright_phase"])
        loud = _signal(t, tr["loud_period"], tr["loud_phase"])
        va = np.stack([0.8 * bright, 0.8 * loud], axis=1) + rng.normal(0, 0.03, size=(len(t), 2))
        tr["va"] = va.clip(-1, 1).round(4)
        tr["au"] = np.stack(
            [(bright if j % 2 == 0 else loud) > au_levels[j] for j in range(len(AU_TARGETS))], axis=1
        ).astype(np.float64)
        for task in ("va", "au"):
            df = pd.DataFrame(tr[task], columns=list(TARGETS[task]))
            df.insert(0, "frame", np.arange(1, len(t) + 1))
            df.insert(0, "name", tr["name"])
            truth[task].append(df)
    return truth


def _write_annotations(root: Path, tracks: list[dict], rng: np.random.Generator) -> None:
    """Annotation files of the labelled tracks, with invalid rows and one short annotation."""
    labelled = [tr for tr in tracks if tr["split"] != "test"]
    for j, tr in enumerate(labelled):
        for task in ("va", "au"):
            if task == "au" and not tr["in_au"]:
                continue
            values = tr[task].copy()
            n_frames = len(values)
            if j % 2 == 0:  # a run of fully invalid rows
                start = int(rng.integers(2, n_frames - 8))
                values[start : start + 4] = INVALID[task]
            if j % 3 == 0:  # one row invalid in a single column
                row_k = int(rng.integers(n_frames // 2, n_frames - 1))
                values[row_k, int(rng.integers(values.shape[1]))] = INVALID[task]
            if j == 1:
                values = values[: n_frames - 3]  # annotation shorter than the video
            path = root / "Annotations" / CHALLENGE_DIRS[task] / SPLIT_FOLDERS[tr["split"]] / f"{tr['name']}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(_annotation_text(values, TARGETS[task], task))
    for task in ("va", "au"):
        for split_dir in SPLIT_DIRS:
            (root / "Annotations" / CHALLENGE_DIRS[task] / split_dir).mkdir(parents=True, exist_ok=True)


def _write_cropped_aligned(root: Path, videos: list, tracks: list[dict], rng: np.random.Generator) -> None:
    """``cropped_aligned`` with gaps: a random 10% plus frames 3-4 of the first track."""
    for name, out, _people in videos:
        own = [tr for tr in tracks if tr["video"] == name]
        keep = []
        for tr in own:
            mask = rng.random(tr["frames"]) > 0.1
            if tr is tracks[0]:
                mask[2:4] = False
            keep.append(mask)
        _write_crops(out, [root / "cropped_aligned" / tr["name"] for tr in own], keep)


def _write_test_lists(root: Path, tracks: list[dict], truth: dict[str, list[pd.DataFrame]]) -> None:
    """Test lists, sample submissions, the planted truth and the properties of every track."""
    test = [tr for tr in tracks if tr["split"] == "test"]
    for task in ("va", "au"):
        with atomic_path(root / TEST_LIST_DIR / TEST_LIST_NAMES[task]) as tmp:
            tmp.write_text("".join(f"{tr['name']}\n" for tr in test))
        cols = TARGETS[task]
        sample = pd.DataFrame(
            [[image_location(tr["name"], k), *([0] * len(cols))] for tr in test for k in range(1, tr["frames"] + 1)],
            columns=["image_location", *cols],
        )
        write_csv(sample, root / SAMPLE_SUBMISSION_NAMES[task])
        write_csv(pd.concat(truth[task], ignore_index=True), root / f"fixture_truth_{task}.csv", float_format="%.4f")
    props = pd.DataFrame([{k: v for k, v in tr.items() if k not in ("va", "au")} for tr in tracks])
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)


def make_affwild2(
    root: str | Path,
    *,
    n_videos: int = 5,
    two_person: bool = True,
    seed: int = 0,
    resources: str | Path | None = None,
    seconds: tuple[float, float] = (1.5, 2.5),
) -> Path:
    """A tiny Aff-Wild2 root with both the VA and the AU challenge.

    Each video lasts a random duration within ``seconds`` (shorter videos make quicker runs where
    nothing is learned, e.g. a recipe's end-to-end check).

    Writes ``videos/batch{1,2}/<video>.mp4``, ``Annotations/{VA_Estimation_Challenge,
    AU_Detection_Challenge}/{Train_Set,Validation_Set}/<track>.txt``,
    ``cropped_aligned/<track>/NNNNN.jpg`` (with gaps), the organisers' test lists under
    :data:`~affectflow.testing.datasets.TEST_LIST_DIR` and a sample submission per task
    (:data:`~affectflow.testing.datasets.SAMPLE_SUBMISSION_NAMES`) listing every frame of every
    test track. With ``two_person`` the first train video and the first test video hold two
    people side by side (tracks ``<video>_left``/``_right``; two 160x120 pictures, so these
    videos are 320x120).
    Some rows are invalid (VA -5 in one or both columns, AU -1 in one or all columns), and
    one annotation is shorter than its video. The AU challenge leaves out one single-person
    train video when there are two or more. ``fixture_truth_<task>.csv`` (name, frame,
    targets) holds the planted labels of every frame of every track; ``fixture_properties.tsv``
    one row per track.
    """
    if int(n_videos) != n_videos or n_videos < 3:
        raise ValueError(f"n_videos must be an integer >= 3, got {n_videos!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(n_videos)
    splits = split_names(n, min_test=1, min_val=1)
    pairs = set()
    if two_person:
        pairs = {splits.index("train"), splits.index("test")}
    rows = plan_rows(n, rng, min_s=seconds[0], max_s=seconds[1])
    au_skip = None
    single_train = [i for i in range(n) if splits[i] == "train" and i not in pairs]
    if len([i for i in range(n) if splits[i] == "train"]) >= 2 and single_train:
        au_skip = single_train[-1]
    # The draws from ``rng`` happen in this order; changing it changes every fixture.
    videos, tracks = _render_videos(root, rows, splits, pairs, au_skip, rng, resources, tuple(seconds))
    truth = _plant_truth(tracks, rng)
    _write_annotations(root, tracks, rng)
    _write_cropped_aligned(root, videos, tracks, rng)
    _write_test_lists(root, tracks, truth)
    return root
