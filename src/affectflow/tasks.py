"""The four ABAW tasks: targets, unit, value range, metric and submission key (see docs/methods.md).

Every stage after the data stage asks :func:`task_spec` what a task looks like instead of
hard-coding EMI. Prediction tables passed between stages (``oof.csv``, ``test.csv``) carry the
task's :func:`key_columns` followed by its targets: ``id`` for clip tasks, ``id, frame`` for
per-frame tasks (``frame`` is the organisers' 1-based frame number, ``<video>/{frame:05d}.jpg``).
"""

from __future__ import annotations

from dataclasses import dataclass

EMI_TARGETS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",  # the space is part of the organisers' header
    "Excitement",
    "Joy",
)
EMI_ID_COLUMN = "Filename"
EMI_HEADER: tuple[str, ...] = (EMI_ID_COLUMN, *EMI_TARGETS)

ERI_TARGETS: tuple[str, ...] = (
    "Adoration",
    "Amusement",
    "Anxiety",
    "Disgust",
    "Empathic-Pain",  # with a hyphen in Hume-Reaction, unlike Vidmimic's "Empathic Pain"
    "Fear",
    "Surprise",
)
VA_TARGETS: tuple[str, ...] = ("valence", "arousal")
AU_TARGETS: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
)


@dataclass(frozen=True)
class TaskSpec:
    """What one task predicts and how it is scored and submitted."""

    name: str
    unit: str  # "clip" (one row per clip) or "frame" (one row per video frame)
    targets: tuple[str, ...]
    submission_key: str  # first column of the submission: Filename, File_ID or image_location
    low: float  # targets' range; clip values are clipped into it on submission
    high: float
    metric: str  # "pearson" (mean over targets), "ccc" (mean) or "f1" (macro at affectflow.metrics.AU_THRESHOLD)
    invalid: float | None = None  # the organisers' code for a missing label (-5 VA, -1 AU)

    @property
    def per_frame(self) -> bool:
        return self.unit == "frame"

    @property
    def binary(self) -> bool:
        return self.metric == "f1"


TASKS: dict[str, TaskSpec] = {
    "emi": TaskSpec("emi", "clip", EMI_TARGETS, EMI_ID_COLUMN, 0.0, 1.0, "pearson"),
    "eri": TaskSpec("eri", "clip", ERI_TARGETS, "File_ID", 0.0, 1.0, "pearson"),
    "va": TaskSpec("va", "frame", VA_TARGETS, "image_location", -1.0, 1.0, "ccc", invalid=-5.0),
    "au": TaskSpec("au", "frame", AU_TARGETS, "image_location", 0.0, 1.0, "f1", invalid=-1.0),
}


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name`` (emi, eri, va, au); an unknown name fails listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def key_columns(spec: TaskSpec) -> list[str]:
    """Columns that identify one prediction row: ``["id"]`` or ``["id", "frame"]``."""
    return ["id", "frame"] if spec.per_frame else ["id"]


def image_location(video: str, frame: int) -> str:
    """Aff-Wild2's row key ``<video>/00001.jpg`` for 1-based ``frame``."""
    return f"{video}/{int(frame):05d}.jpg"


def emi_media_name(clip_id: int) -> str:
    """File name of a Hume-Vidmimic2 clip under ``raw/``: the id zero-padded to five digits."""
    return f"{int(clip_id):05d}.mp4"
