"""Tiny data sets in the official layouts of Hume-Vidmimic2 and Hume-Reaction, and what every fixture shares.

Every clip is a real 1-3 s H.264 + AAC mp4 (about 160x120, 25 or 30 fps) rendered with the
demo's recipe (:mod:`affectflow.testing.media`): a real face (the demo's talker or the NASA
astronaut) and LibriVox speech over a noise floor, so face detectors and audio features work
on them. Labels are planted on observable properties, deterministically from ``seed``:

* clip tasks (EMI, ERI): functions of the clip's brightness, speech gain, pitch and face
  source, as in :mod:`affectflow.demo.plan` (EMI uses its very formulas); ERI rows are divided by
  their maximum, as in the release (row max = 1);
* per-frame tasks (VA, AU): see :mod:`affectflow.testing.affwild2`.

Each builder returns ``root`` and also writes the full truth next to the data (files the
readers ignore): ``fixture_properties.tsv`` and ``fixture_truth*.csv`` (test labels included).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.demo.plan import draw_labels, normalised_properties
from affectflow.demo.render import write_labels
from affectflow.runtime.atomic import atomic_path
from affectflow.tasks import ERI_TARGETS, emi_media_name
from affectflow.testing.media import plan_rows, render_clips

__all__ = [
    "ERI_LABEL_TERMS",
    "PROPERTIES_FILE",
    "SAMPLE_SUBMISSION_NAMES",
    "TEST_LIST_DIR",
    "TRUTH_FILE",
    "eri_expected_labels",
    "make_reaction",
    "make_vidmimic",
]

PROPERTIES_FILE = "fixture_properties.tsv"
TRUTH_FILE = "fixture_truth.csv"  # clip tasks; Aff-Wild2: fixture_truth_<task>.csv
#: where make_affwild2 writes the organisers' test lists (affwild2.TEST_LIST_NAMES)
TEST_LIST_DIR = "names_of_videos_in_each_test_set"
#: the per-task sample submission written by make_affwild2 under root
SAMPLE_SUBMISSION_NAMES: dict[str, str] = {"va": "va_sample_submission.csv", "au": "au_sample_submission.csv"}

#: ERI planted label formulas: target -> {normalised property (demo's normalised_properties): coefficient}
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


def split_names(n: int, *, min_test: int, min_val: int) -> list[str]:
    """``n`` split names: a quarter test, a fifth validation (at least the minimums), the rest train."""
    n_test = max(min_test, round(0.25 * n))
    n_val = max(min_val, round(0.20 * n))
    if n - n_test - n_val < 1:
        raise ValueError(f"too few items ({n}) for a train, a val and a test split")
    return ["train"] * (n - n_test - n_val) + ["val"] * n_val + ["test"] * n_test


def _noisy(mean: pd.DataFrame, rng: np.random.Generator, lo: float, hi: float) -> pd.DataFrame:
    noise = rng.normal(0.0, 0.04, size=mean.shape).clip(-0.12, 0.12)
    return (mean + noise).clip(lo, hi)


def _props_table(rows: list[pd.Series], ids, splits) -> pd.DataFrame:
    props = pd.DataFrame(rows).reset_index(drop=True)
    props["id"] = np.asarray(ids, dtype=np.int64)
    props["split"] = list(splits)
    return props


def write_csv(df: pd.DataFrame, path: Path, **kw) -> None:
    """``df`` as csv at ``path`` without the index, atomically (``kw``: ``DataFrame.to_csv`` options)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kw)


# --- Hume-Vidmimic2 ---------------------------------------------------------------------------
def make_vidmimic(
    root: str | Path, *, n_clips: int = 12, seed: int = 0, resources: str | Path | None = None
) -> Path:
    """A tiny Hume-Vidmimic2 (EMI) root: ``train_split.csv``, ``valid_split.csv``, ``raw/NNNNN.mp4``.

    Test clips (a quarter, at least 2) appear only under ``raw/``. Labels are
    :func:`affectflow.demo.plan.draw_labels` of the clip properties. ``fixture_truth.csv`` holds
    the labels of every clip (test included), ``fixture_properties.tsv`` the properties.
    """
    if int(n_clips) != n_clips or n_clips < 5:
        raise ValueError(f"n_clips must be an integer >= 5, got {n_clips!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = plan_rows(int(n_clips), rng)
    ids = np.sort(rng.choice(np.arange(1, 100000), size=len(rows), replace=False))
    splits = list(rng.permutation(split_names(len(rows), min_test=2, min_val=2)))
    props = _props_table(rows, ids, splits)
    labels = draw_labels(props, seed)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    render_clips([(row, root / "raw" / emi_media_name(i), None, None) for row, i in zip(rows, ids)], resources)
    split = props["split"].to_numpy()
    write_labels(labels[split == "train"], root / "train_split.csv")
    write_labels(labels[split == "val"], root / "valid_split.csv")
    write_labels(labels, root / TRUTH_FILE)
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return root


# --- Hume-Reaction ----------------------------------------------------------------------------
def eri_expected_labels(props: pd.DataFrame) -> pd.DataFrame:
    """Noise-free ERI means (before the row-max normalisation) for a properties table."""
    z = normalised_properties(props)
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
    rows = plan_rows(int(n_clips), rng)
    ids = rng.choice(np.arange(10000, 60000), size=len(rows), replace=False)
    splits = list(rng.permutation(split_names(len(rows), min_test=2, min_val=2)))
    props = _props_table(rows, ids, splits)
    labels = _noisy(eri_expected_labels(props), rng, 0.01, 1.0)
    labels = labels.div(labels.max(axis=1), axis=0).round(6)
    names = [f"[{i}]" for i in ids]
    media = [f"{i:06d}.mp4" if k % 3 == 2 else f"{i}.mp4" for k, i in enumerate(ids)]
    (root / "raw").mkdir(parents=True, exist_ok=True)
    render_clips([(row, root / "raw" / m, None, None) for row, m in zip(rows, media)], resources)

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
        write_csv(info, root / "data_info.csv", float_format="%.6f")
    else:
        write_csv(truth[~is_test], root / "labels.csv", float_format="%.6f")
        part = pd.DataFrame({"File_ID": names, "Split": [split_word[s] for s in props["split"]]})
        write_csv(part, root / "partition.csv")
    write_csv(truth, root / TRUTH_FILE, float_format="%.6f")
    props.insert(1, "name", names)
    props.insert(2, "media_file", media)
    with atomic_path(root / PROPERTIES_FILE) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return root
