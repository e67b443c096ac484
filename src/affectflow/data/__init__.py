"""Readers that turn an ABAW data set on disk into a manifest.

A manifest has one row per clip (EMI, ERI) or per Aff-Wild2 annotation track (VA, AU) and
the columns ``id``, ``split``, ``subject``, ``media``, ``name``, then the task's target
columns (clip tasks) or ``labels``, ``fps``, ``frames``, ``crops`` (per-frame tasks). See
:mod:`affectflow.data.emi`, :mod:`~affectflow.data.reaction` and
:mod:`~affectflow.data.affwild2`; :func:`read_dataset` picks the reader by task, and
:func:`organiser_files` / :func:`count_clips` say what each reader reads and how many clips
it will find, :func:`dataset_options` which reader options a config sets
(:mod:`affectflow.data.readers`). :func:`write_manifest_job` is the workflow's manifest job.
"""

from affectflow.data.affwild2 import read_affwild2_manifest, read_sample_frames
from affectflow.data.affwild2_frames import frame_label_table, read_frame_labels, write_frame_labels
from affectflow.data.emi import (
    MANIFEST_COLUMNS,
    DatasetError,
    read_emi_manifest,
    read_manifest,
    write_manifest,
)
from affectflow.data.manifest_job import write_manifest_job
from affectflow.data.reaction import read_reaction_manifest
from affectflow.data.readers import DATASET_OPTIONS, count_clips, dataset_options, organiser_files, read_dataset

__all__ = [
    "DATASET_OPTIONS",
    "MANIFEST_COLUMNS",
    "DatasetError",
    "count_clips",
    "dataset_options",
    "frame_label_table",
    "organiser_files",
    "read_affwild2_manifest",
    "read_dataset",
    "read_emi_manifest",
    "read_frame_labels",
    "read_manifest",
    "read_reaction_manifest",
    "read_sample_frames",
    "write_frame_labels",
    "write_manifest",
    "write_manifest_job",
]
