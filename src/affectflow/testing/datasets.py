"""Tiny data sets in the official layouts of Hume-Vidmimic2, Hume-Reaction and Aff-Wild2.

Every clip is a real 1-3 s H.264 + AAC mp4 (about 160x120, 25 or 30 fps) rendered with the
demo's recipe (:mod:`affectflow.testing.media`): a real face (the demo's talker or the NASA
astronaut) and LibriVox speech over a noise floor, so face detectors and audio features work
on them. Labels are planted on observable properties, deterministically from ``seed``:

* clip tasks (EMI, ERI): functions of the clip's brightness, speech gain, pitch and face
  source, as in :mod:`affectflow.demo.build` (EMI uses its very formulas); ERI rows are divided by
  their maximum, as in the release (row max = 1);
* per-frame tasks (VA, AU): the picture brightness of each person and the loudness of the
  audio change sinusoidally within a clip; valence follows the person's brightness, arousal
  the loudness, and each AU is on when one of the two signals is above an AU-specific level.

Each builder returns ``root`` and also writes the full truth next to the data (files the
readers ignore): ``fixture_properties.tsv`` and ``fixture_truth*.csv`` (test labels included).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.demo import build as demo
from affectflow.runtime.atomic import atomic_path
from affectflow.data.affwild2 import CHALLENGE_DIRS, INVALID, TEST_LIST_NAMES
from affectflow.tasks import AU_TARGETS, ERI_TARGETS, VA_TARGETS, emi_media_name, image_location
from affectflow.testing.media import clip_row, hstack_clips, render_clip, resources_dir, speech_track

__all__ = [
    "ERI_LABEL_TERMS",
    "PROPERTIES_FILE",
    "SAMPLE_SUBMISSION_NAMES",
    "TEST_LIST_DIR",
    "TRUTH_FILE",
    "make_affwild2",
    "make_reaction",
    "make_vidmimic",
]

PROPERTIES_FILE = "fixture_properties.tsv"
TRUTH_FILE = "fixture_truth.csv"  # clip tasks; Aff-Wild2: fixture_truth_<task>.csv
#: where make_affwild2 writes the organisers' test lists (affwild2.TEST_LIST_NAMES)
TEST_LIST_DIR = "names_of_videos_in_each_test_set"
#: the per-task sample submission written by make_affwild2 under root
SAMPLE_SUBMISSION_NAMES: dict[str, str] = {"va": "va_sample_submission.csv", "au": "au_sample_submission.csv"}

#: ERI planted label formulas: target -> {normalised property (demo.normalised_properties): coefficient}
ERI_LABEL_TERMS: dict[str, dict[str, float]] = {
    "Adoration": {"bright": 0.35},
    "Amusement": {"pitch": 0.35},
    "Anxiety": {"gain": 0.35},
    "Disgust": {"bright": -0.30},
    "Empathic-Pain": {"pitch": -0.30},
    "Fear": {"gain": -0.30},
    "Surprise": {"face": 0.30},
}
assert tuple(ERI_LABEL_TERMS) == ERI_TARGETS

WIDTH, HEIGHT = 160, 120
CROP_SIZE = 112
WORKERS = 2
_FPS_CYCLE = ("30", "25", "30")


def _plan(n: int, rng: np.random.Generator, *, min_s: float = 1.0, max_s: float = 2.5) -> list[pd.Series]:
    """Clip plans (demo property rows) with drawn properties; ``id`` is the row index."""
    rows = []
    for i in range(n):
        fps = _FPS_CYCLE[i % len(_FPS_CYCLE)]
        n_frames = int(round(rng.uniform(min_s, max_s) * float(fps)))
        rows.append(
            clip_row(
                clip_id=i, face=("talker", "astronaut")[i % 2], fps=fps, n_frames=n_frames,
                width=WIDTH, height=HEIGHT,
                brightness=round(float(rng.uniform(*demo.BRIGHTNESS_RANGE)), 3) + 0.0,
                gain_db=round(float(rng.uniform(*demo.GAIN_DB_RANGE)), 2),
                pitch_semitones=round(float(rng.uniform(*demo.PITCH_RANGE)), 2) + 0.0,
                video_start_s=round(float(rng.uniform(0, demo.MOVIE_LOOP_S)), 2),
                speech_start_s=round(float(rng.uniform(0, 20.0)), 2),
                audio_sample_rate=44100, audio_channels=1,
            )
        )
    return rows


def _splits(n: int, *, min_test: int, min_val: int) -> list[str]:
    n_test = max(min_test, round(0.25 * n))
    n_val = max(min_val, round(0.20 * n))
    if n - n_test - n_val < 1:
        raise ValueError(f"too few items ({n}) for a train, a val and a test split")
    return ["train"] * (n - n_test - n_val) + ["val"] * n_val + ["test"] * n_test


def _render_all(jobs: list[tuple], resources: str | Path | None) -> None:
    """Render ``(row, out, brightness_expr, volume_expr)`` jobs two at a time."""
    res = resources_dir(resources)
    with tempfile.TemporaryDirectory(prefix="affectflow-fixture-") as tmp:
        speech = speech_track(res, Path(tmp) / "speech.wav")
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(render_clip, row, out, resources=res, speech=speech, brightness_expr=b, volume_expr=v)
                for row, out, b, v in jobs
            ]
            for fut in futures:
                fut.result()


def _noisy(mean: pd.DataFrame, rng: np.random.Generator, lo: float, hi: float) -> pd.DataFrame:
    noise = rng.normal(0.0, 0.04, size=mean.shape).clip(-0.12, 0.12)
    return (mean + noise).clip(lo, hi)


def _props_table(rows: list[pd.Series], ids, splits) -> pd.DataFrame:
    props = pd.DataFrame(rows).reset_index(drop=True)
    props["id"] = np.asarray(ids, dtype=np.int64)
    props["split"] = list(splits)
    return props


def _write_csv(df: pd.DataFrame, path: Path, **kw) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kw)


# --- Hume-Vidmimic2 ---------------------------------------------------------------------------
def make_vidmimic(
    root: str | Path, *, n_clips: int = 12, seed: int = 0, resources: str | Path | None = None
) -> Path:
    """A tiny Hume-Vidmimic2 (EMI) root: ``train_split.csv``, ``valid_split.csv``, ``raw/NNNNN.mp4``.

    Test clips (a quarter, at least 2) appear only under ``raw/``. Labels are
    :func:`affectflow.demo.build.draw_labels` of the clip properties. ``fixture_truth.csv`` holds
    the labels of every clip (test included), ``fixture_properties.tsv`` the properties.
    """
    if int(n_clips) != n_clips or n_clips < 5:
        raise ValueError(f"n_clips must be an integer >= 5, got {n_clips!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = _plan(int(n_clips), rng)
    ids = np.sort(rng.choice(np.arange(1, 100000), size=len(rows), replace=False))
    splits = list(rng.permutation(_splits(len(rows), min_test=2, min_val=2)))
    props = _props_table(rows, ids, splits)
    labels = demo.draw_labels(props, seed)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    _render_all([(row, root / "raw" / emi_media_name(i), None, None) for row, i in zip(rows, ids)], resources)
    split = props["split"].to_numpy()
    demo._write_labels(labels[split == "train"], root / "train_split.csv")  # noqa: SLF001 - demo's writer
    demo._write_labels(labels[split == "val"], root / "valid_split.csv")  # noqa: SLF001
    demo._write_labels(labels, root / TRUTH_FILE)  # noqa: SLF001
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return root


# --- Hume-Reaction ----------------------------------------------------------------------------
def eri_expected_labels(props: pd.DataFrame) -> pd.DataFrame:
    """Noise-free ERI means (before the row-max normalisation) for a properties table."""
    z = demo.normalised_properties(props)
    return pd.DataFrame(
        {t: 0.5 + sum(c * z[p] for p, c in terms.items()) for t, terms in ERI_LABEL_TERMS.items()},
        index=props.index,
    )


def make_reaction(
    root: str | Path,
    *,
    layout: str = "data_info",
    n_clips: int = 12,
    seed: int = 0,
    resources: str | Path | None = None,
) -> Path:
    """A tiny Hume-Reaction (ERI) root in ``layout`` "data_info" or "labels_partition".

    ``File_ID`` is written ``[n]``; clips are ``raw/<n>.mp4``, every third one zero-padded to
    six digits (``raw/0nnnnn.mp4``), as the reader accepts both. Test rows have empty targets
    (data_info) or no labels.csv row (labels_partition). ``fixture_truth.csv`` holds every
    clip's labels (File_ID + targets, test included).
    """
    if layout not in ("data_info", "labels_partition"):
        raise ValueError(f"layout must be 'data_info' or 'labels_partition', not {layout!r}")
    if int(n_clips) != n_clips or n_clips < 5:
        raise ValueError(f"n_clips must be an integer >= 5, got {n_clips!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = _plan(int(n_clips), rng)
    ids = rng.choice(np.arange(10000, 60000), size=len(rows), replace=False)
    splits = list(rng.permutation(_splits(len(rows), min_test=2, min_val=2)))
    props = _props_table(rows, ids, splits)
    labels = _noisy(eri_expected_labels(props), rng, 0.01, 1.0)
    labels = labels.div(labels.max(axis=1), axis=0).round(6)
    names = [f"[{i}]" for i in ids]
    media = [f"{i:06d}.mp4" if k % 3 == 2 else f"{i}.mp4" for k, i in enumerate(ids)]
    (root / "raw").mkdir(parents=True, exist_ok=True)
    _render_all([(row, root / "raw" / m, None, None) for row, m in zip(rows, media)], resources)

    split_word = {"train": "Train", "val": "Val", "test": "Test"}
    truth = labels.copy()
    truth.insert(0, "File_ID", names)
    is_test = props["split"].to_numpy() == "test"
    if layout == "data_info":
        info = truth.copy()
        info.insert(1, "Split", [split_word[s] for s in props["split"]])
        info.loc[is_test, list(ERI_TARGETS)] = np.nan
        info["Age"] = rng.integers(18, 70, size=len(info))
        info["Country"] = rng.choice(["United States", "South Africa"], size=len(info))
        _write_csv(info, root / "data_info.csv", float_format="%.6f")
    else:
        _write_csv(truth[~is_test], root / "labels.csv", float_format="%.6f")
        part = pd.DataFrame({"File_ID": names, "Split": [split_word[s] for s in props["split"]]})
        _write_csv(part, root / "partition.csv")
    _write_csv(truth, root / TRUTH_FILE, float_format="%.6f")
    props.insert(1, "name", names)
    props.insert(2, "media_file", media)
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return root


# --- Aff-Wild2 --------------------------------------------------------------------------------
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


def make_affwild2(
    root: str | Path,
    *,
    n_videos: int = 5,
    two_person: bool = True,
    seed: int = 0,
    resources: str | Path | None = None,
) -> Path:
    """A tiny Aff-Wild2 root with both the VA and the AU challenge.

    Writes ``videos/batch{1,2}/<video>.mp4``, ``Annotations/{VA_Estimation_Challenge,
    AU_Detection_Challenge}/{Train_Set,Validation_Set}/<track>.txt``,
    ``cropped_aligned/<track>/NNNNN.jpg`` (with gaps), the organisers' test lists under
    :data:`TEST_LIST_DIR` and a sample submission per task (:data:`SAMPLE_SUBMISSION_NAMES`)
    listing every frame of every test track. With ``two_person`` the first train video and
    the first test video hold two people side by side (tracks ``<video>_left``/``_right``;
    two 160x120 pictures, so these videos are 320x120).
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
    splits = _splits(n, min_test=1, min_val=1)
    pairs = set()
    if two_person:
        pairs = {splits.index("train"), splits.index("test")}
    rows = _plan(n, rng, min_s=1.5, max_s=2.5)
    videos, tracks = [], []  # tracks: dicts of per-track facts
    au_skip = None
    single_train = [i for i in range(n) if splits[i] == "train" and i not in pairs]
    if len([i for i in range(n) if splits[i] == "train"]) >= 2 and single_train:
        au_skip = single_train[-1]
    jobs, stacks = [], []
    tmpdir = tempfile.TemporaryDirectory(prefix="affectflow-affwild2-")
    try:
        for i, row in enumerate(rows):
            name = f"video{i + 1}" if i % 2 else f"{i + 1}-30-{WIDTH}x{HEIGHT}"
            row = row.copy()
            row["fps_rational"], row["fps"] = ("25", 25.0) if i == 1 else ("30", 30.0)
            row["n_frames"] = int(round(rng.uniform(1.5, 2.5) * row["fps"]))
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
        _render_all(jobs, resources)
        for left, right, out in stacks:
            hstack_clips(left, right, out)
    finally:
        tmpdir.cleanup()

    # planted per-frame truth
    au_levels = rng.permutation(np.linspace(-0.6, 0.6, len(AU_TARGETS)))
    truth = {"va": [], "au": []}
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
            df = pd.DataFrame(tr[task], columns=list(VA_TARGETS if task == "va" else AU_TARGETS))
            df.insert(0, "frame", np.arange(1, len(t) + 1))
            df.insert(0, "name", tr["name"])
            truth[task].append(df)

    # annotation files, with invalid rows and one short annotation
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
            folder = "Train_Set" if tr["split"] == "train" else "Validation_Set"
            path = root / "Annotations" / CHALLENGE_DIRS[task] / folder / f"{tr['name']}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(_annotation_text(values, VA_TARGETS if task == "va" else AU_TARGETS, task))
    for task in ("va", "au"):
        for split_dir in ("Train_Set", "Validation_Set"):
            (root / "Annotations" / CHALLENGE_DIRS[task] / split_dir).mkdir(parents=True, exist_ok=True)

    # cropped_aligned with gaps (a random 10% plus frames 3-4 of the first track)
    for name, out, people in videos:
        own = [tr for tr in tracks if tr["video"] == name]
        keep = []
        for tr in own:
            mask = rng.random(tr["frames"]) > 0.1
            if tr is tracks[0]:
                mask[2:4] = False
            keep.append(mask)
        _write_crops(out, [root / "cropped_aligned" / tr["name"] for tr in own], keep)

    # test lists and sample submissions
    test = [tr for tr in tracks if tr["split"] == "test"]
    for task in ("va", "au"):
        with atomic_path(root / TEST_LIST_DIR / TEST_LIST_NAMES[task]) as tmp:
            tmp.write_text("".join(f"{tr['name']}\n" for tr in test))
        cols = VA_TARGETS if task == "va" else AU_TARGETS
        sample = pd.DataFrame(
            [[image_location(tr["name"], k), *([0] * len(cols))] for tr in test for k in range(1, tr["frames"] + 1)],
            columns=["image_location", *cols],
        )
        _write_csv(sample, root / SAMPLE_SUBMISSION_NAMES[task])
        _write_csv(pd.concat(truth[task], ignore_index=True), root / f"fixture_truth_{task}.csv", float_format="%.4f")
    props = pd.DataFrame([{k: v for k, v in tr.items() if k not in ("va", "au")} for tr in tracks])
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return root
