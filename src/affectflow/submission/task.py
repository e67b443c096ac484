"""The pipeline's submission step: the rows the organisers expect now, checked against what this run
processed, then the validated file.

The ids to submit are read from the organisers' files when the step runs
(:func:`affectflow.data.listing.read_listing`: the videos of ``raw/`` in neither split file for
EMI, the test rows of the data info for ERI, the test list for VA and AU), never from a table the
run cached earlier. The run's test manifest says which test clips it processed; a test clip the
organisers list but the run never processed (a video added after the job graph was built), or
one the run processed that they no longer list (a video removed, or moved to a labelled split),
fails the step with the clips' names and the command that brings the run up to date, so a
submission is never short and never lists a clip the organisers dropped.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from affectflow.data import read_manifest
from affectflow.data.affwild2 import TEST_LIST_NAMES, read_sample_frames
from affectflow.data.listing import TEST, read_listing
from affectflow.data.readers import organiser_files
from affectflow.submission.errors import SubmissionError, first_few
from affectflow.submission.expected import expected_rows, integer_keys, training_fallback
from affectflow.submission.write import write_submission
from affectflow.tasks import TaskSpec, task_spec

__all__ = ["RERUN_ADVICE", "check_processed_tests", "organiser_clips", "write_task_submission"]

#: What brings a run whose test clips changed up to date, said by every stale-test error.
RERUN_ADVICE = (
    "Run the same snakemake command again: the test manifest, the media, faces and features jobs of "
    "their test shard(s), the test predictions (rule predict_test), the ensemble and this submission "
    "will run (`snakemake -n` lists them first)."
)


def _test_source(spec: TaskSpec, root: str | os.PathLike, test_list: str | os.PathLike | None) -> str:
    """Which organisers' file lists the test clips of ``spec`` under ``root``, for error messages."""
    if spec.name == "emi":
        return "the videos of raw/ in neither split csv"
    if spec.name == "eri":
        return "the Test rows of " + ", ".join(os.path.basename(p) for p in organiser_files("eri", root))
    return f"the test list {test_list if test_list is not None else TEST_LIST_NAMES[spec.name]}"


def _organisers_source(spec: TaskSpec, root: str | os.PathLike, test_list: str | os.PathLike | None) -> str:
    """The organisers' files under ``root`` as error messages name them."""
    return f"the organisers' files under {root} (test {_noun(spec)}: {_test_source(spec, root, test_list)})"


def _noun(spec: TaskSpec) -> str:
    """What one submitted unit is called: an Aff-Wild2 track or a clip."""
    return "track(s)" if spec.per_frame else "clip(s)"


def organiser_clips(
    spec: TaskSpec,
    root: str | os.PathLike,
    processed: pd.DataFrame,
    *,
    test_list: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The clips of ``spec``'s data set under ``root`` as the organisers' files list them now.

    Columns ``id, name, split`` (:func:`~affectflow.data.listing.read_listing`, which opens no
    video), sorted by id. Per-frame tasks also get ``frames``, each test track's frame count as
    the run's test manifest ``processed`` recorded it (the listing does not open the videos).
    """
    listed = read_listing(spec.name, root, n_shards=1, test_list=test_list).clips
    clips = listed[["id", "name", "split", "partition"]].copy()
    if spec.per_frame:
        ids = integer_keys(processed["id"], where="test manifest", name="id")
        counts = processed["frames"] if "frames" in processed.columns else pd.Series(np.nan, index=processed.index)
        frames = dict(zip(ids.tolist(), pd.to_numeric(counts, errors="coerce"), strict=True))
        clips["frames"] = [frames.get(int(i), np.nan) for i in clips["id"]]
    return clips


def check_processed_tests(
    spec: TaskSpec,
    clips: pd.DataFrame,
    processed: pd.DataFrame,
    *,
    root: str | os.PathLike,
    test_manifest: str | os.PathLike,
    test_list: str | os.PathLike | None = None,
) -> None:
    """Fail unless the run processed exactly the test clips the organisers list now.

    ``clips``: :func:`organiser_clips`; ``processed``: the run's test manifest (read from
    ``test_manifest``). Raises :class:`SubmissionError` naming the test clips (tracks for VA/AU)
    the organisers list but the run did not process, and those the run processed that the
    organisers no longer list as test clips, with :data:`RERUN_ADVICE`.
    """
    listed = clips[clips["partition"] == TEST]
    listed_ids = set(listed["id"].tolist())
    processed_ids = integer_keys(processed["id"], where=str(test_manifest), name="id")
    done = set(processed_ids.tolist())
    noun = _noun(spec)
    problems = []
    new = [str(n) for i, n in zip(listed["id"], listed["name"], strict=True) if i not in done]
    if new:
        problems.append(f"{len(new)} listed there but not processed by this run (added to {root} after its job "
                        f"graph was built): {first_few(new)}")
    names = processed["name"] if "name" in processed.columns else processed["id"]
    gone = [str(n) for i, n in zip(processed_ids, names, strict=True) if i not in listed_ids]
    if gone:
        problems.append(f"{len(gone)} processed by this run but no longer listed there as test {noun} (removed, or "
                        f"moved to a labelled split): {first_few(gone)}")
    if problems:
        raise SubmissionError(
            f"the test {noun} this run processed (its test manifest {test_manifest}) are not those "
            f"{_organisers_source(spec, root, test_list)} list now:\n  " + "\n  ".join(problems)
            + f"\nThe submission would not match the data set. {RERUN_ADVICE}"
        )


def write_task_submission(
    task: str,
    test_predictions_csv: str | os.PathLike,
    manifest_tsv: str | os.PathLike,
    test_manifest_tsv: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    root: str | os.PathLike,
    test_list: str | os.PathLike | None = None,
    frame_labels_csv: str | os.PathLike | None = None,
    sample_file: str | os.PathLike | None = None,
) -> dict:
    """Write the submission of ``task`` (emi, eri, va, au) from the run's files; return the summary.

    The rows to submit are the test clips the organisers' files under ``root`` list when this
    runs, in id order (see the module docstring; ``test_list``: VA/AU's test list when not the
    organisers' default file), or for per-frame tasks the frames the organisers' ``sample_file``
    lists, whose tracks must be test tracks there (default: frames 1..``frames`` of every test
    track, ``frames`` from ``test_manifest_tsv``). They must be exactly the test clips of
    ``test_manifest_tsv``, the ones this run processed (:func:`check_processed_tests`).
    ``test_predictions_csv`` holds the ensemble's test predictions (key columns + targets). What
    no run could predict (no face, no audio, no readable video) takes the nearest predicted frame
    (per-frame tasks) or the training mean per target: of ``manifest_tsv``'s labelled clips (clip
    tasks) or of ``frame_labels_csv`` (per-frame tasks, where it is required). The summary is
    :func:`~affectflow.submission.write.write_submission`'s.
    """
    spec = task_spec(task)
    if spec.per_frame and frame_labels_csv is None:
        raise SubmissionError(f"task {task!r} is per-frame: its training fallback needs frame_labels_csv")
    processed = read_manifest(test_manifest_tsv)
    clips = organiser_clips(spec, root, processed, test_list=test_list)
    check_processed_tests(spec, clips, processed, root=root, test_manifest=test_manifest_tsv, test_list=test_list)
    sample_frames = read_sample_frames(sample_file) if sample_file else None
    expected = expected_rows(spec, clips, sample_frames=sample_frames,
                             source=_organisers_source(spec, root, test_list))
    labelled = pd.read_csv(frame_labels_csv) if spec.per_frame else read_manifest(manifest_tsv)
    return write_submission(
        spec,
        pd.read_csv(test_predictions_csv),
        expected,
        out_csv,
        fallback=training_fallback(spec, labelled),
        where=str(test_predictions_csv),
    )
