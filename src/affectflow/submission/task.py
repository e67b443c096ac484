"""The submission of a pipeline run: read the run's files, then write the validated file."""

from __future__ import annotations

import os

import pandas as pd

from affectflow.data import read_manifest
from affectflow.data.affwild2 import read_sample_frames
from affectflow.submission.errors import SubmissionError
from affectflow.submission.expected import expected_rows, training_fallback
from affectflow.submission.write import write_submission
from affectflow.tasks import task_spec

__all__ = ["write_task_submission"]


def write_task_submission(
    task: str,
    test_predictions_csv: str | os.PathLike,
    manifest_tsv: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    frame_labels_csv: str | os.PathLike | None = None,
    sample_file: str | os.PathLike | None = None,
) -> dict:
    """Write the submission of ``task`` (emi, eri, va, au) from the run's files; return the summary.

    ``test_predictions_csv`` holds the ensemble's test predictions (key columns + targets). The
    rows to submit are the test rows of ``manifest_tsv``, or for per-frame tasks the frames the
    organisers' ``sample_file`` lists (default: every frame of each test track). What no run
    could predict takes the training mean per target: of the manifest's labelled rows (clip
    tasks) or of ``frame_labels_csv`` (per-frame tasks, where it is required). The summary is
    :func:`~affectflow.submission.write.write_submission`'s.
    """
    spec = task_spec(task)
    manifest = read_manifest(manifest_tsv)
    sample_frames = read_sample_frames(sample_file) if sample_file else None
    expected = expected_rows(spec, manifest, sample_frames=sample_frames)
    if spec.per_frame and frame_labels_csv is None:
        raise SubmissionError(f"task {task!r} is per-frame: its training fallback needs frame_labels_csv")
    labelled = pd.read_csv(frame_labels_csv) if spec.per_frame else manifest
    return write_submission(
        spec,
        pd.read_csv(test_predictions_csv),
        expected,
        out_csv,
        fallback=training_fallback(spec, labelled),
        where=str(test_predictions_csv),
    )
