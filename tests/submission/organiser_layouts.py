"""Organisers' layouts written by hand for the submission step's tests: split files and empty media.

The submission step lists a data set without opening a video, so an empty file stands for each
clip. The headers are written out here, independently of the package's readers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EMI_TARGETS = ["Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy"]
ERI_TARGETS = ["Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain", "Fear", "Surprise"]
CHALLENGE = {"va": "VA_Estimation_Challenge", "au": "AU_Detection_Challenge"}
TEST_LIST = {
    "va": "Valence_Arousal_Estimation_Challenge_test_set_release.txt",
    "au": "Action_Unit_Detection_Challenge_test_set_release.txt",
}
FRAME_HEADER = {"va": "valence,arousal", "au": "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"}


def touch(path: Path) -> Path:
    """An empty file at ``path`` (parents made): a video nobody opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def emi_media(root: Path, clip_id: int) -> Path:
    """Where the Hume-Vidmimic2 video of ``clip_id`` lives."""
    return root / "raw" / f"{int(clip_id):05d}.mp4"


def write_emi_root(root: Path, splits: dict[int, str]) -> Path:
    """A Hume-Vidmimic2 root: ``splits`` maps each clip id to train, val or test (test: a video only)."""
    for clip_id in splits:
        touch(emi_media(root, clip_id))
    for name, split in (("train_split.csv", "train"), ("valid_split.csv", "val")):
        ids = [i for i, s in splits.items() if s == split]
        lines = ["Filename," + ",".join(EMI_TARGETS)]
        lines += [f"{i}," + ",".join(f"{(i * (k + 3)) % 10 / 10:.1f}" for k in range(len(EMI_TARGETS))) for i in ids]
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def write_eri_root(root: Path, clips: pd.DataFrame) -> Path:
    """A Hume-Reaction root from a manifest-like table (``id``, ``name`` = File_ID, ``split``, targets)."""
    split_text = {"train": "Train", "val": "Val", "test": "Test"}
    lines = ["File_ID,Split," + ",".join(ERI_TARGETS)]
    for _, row in clips.iterrows():
        values = ["" if row["split"] == "test" else f"{row[t]:.6f}" for t in ERI_TARGETS]
        lines.append(f"{row['name']},{split_text[row['split']]}," + ",".join(values))
    root.mkdir(parents=True, exist_ok=True)
    (root / "data_info.csv").write_text("\n".join(lines) + "\n")
    for clip_id in clips["id"]:
        touch(root / "raw" / f"{int(clip_id)}.mp4")
    return root


def write_affwild2_root(root: Path, task: str, labelled: dict[str, str], tests: list[str],
                        *, test_list: Path | None = None) -> Path:
    """An Aff-Wild2 root for ``task``: an annotation file per ``labelled`` track (name -> train or val),
    an empty video per track, and the test list ``tests`` at ``test_list`` (default: the
    organisers' file under ``root/names_of_videos_in_each_test_set``). Returns the test list's path."""
    ann = root / "Annotations" / CHALLENGE[task]
    for folder in ("Train_Set", "Validation_Set"):
        (ann / folder).mkdir(parents=True, exist_ok=True)
    for name, split in labelled.items():
        folder = "Train_Set" if split == "train" else "Validation_Set"
        (ann / folder / f"{name}.txt").write_text(FRAME_HEADER[task] + "\n")
    for name in [*labelled, *tests]:
        touch(root / "videos" / f"{name.removesuffix('_left').removesuffix('_right')}.mp4")
    return write_test_list(test_list or root / "names_of_videos_in_each_test_set" / TEST_LIST[task], tests)


def write_test_list(path: Path, tests: list[str]) -> Path:
    """The organisers' test list: one track name a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in tests))
    return path
