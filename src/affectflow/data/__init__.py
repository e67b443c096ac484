"""Readers that turn an ABAW data set on disk into a manifest.

A manifest has one row per clip (EMI, ERI) or per Aff-Wild2 annotation track (VA, AU) and
the columns ``id``, ``split``, ``subject``, ``media``, ``name``, then the task's target
columns (clip tasks) or ``labels``, ``fps``, ``frames``, ``crops`` (per-frame tasks). See
:mod:`affectflow.data.emi`, :mod:`~affectflow.data.reaction` and
:mod:`~affectflow.data.affwild2`; :func:`read_dataset` picks the reader by task.
"""

from __future__ import annotations

import os

import pandas as pd

from affectflow.data.affwild2 import (
    frame_label_table,
    read_affwild2_manifest,
    read_frame_labels,
    read_sample_frames,
)
from affectflow.data.emi import (
    MANIFEST_COLUMNS,
    DatasetError,
    read_emi_manifest,
    read_manifest,
    write_manifest,
)
from affectflow.data.reaction import read_reaction_manifest

__all__ = [
    "MANIFEST_COLUMNS",
    "DatasetError",
    "frame_label_table",
    "read_affwild2_manifest",
    "read_dataset",
    "read_emi_manifest",
    "read_frame_labels",
    "read_manifest",
    "read_reaction_manifest",
    "read_sample_frames",
    "write_manifest",
]

#: keyword options each task's reader accepts through :func:`read_dataset`
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {
    "emi": (),
    "eri": (),
    "va": ("test_list", "frame_tolerance"),
    "au": ("test_list", "frame_tolerance"),
}


def read_dataset(task: str, root: str | os.PathLike, **options) -> pd.DataFrame:
    """Read the data set of ``task`` (emi, eri, va, au) under ``root`` into a manifest.

    ``options`` go to the task's reader: ``test_list`` and ``frame_tolerance`` for va/au
    (see :func:`read_affwild2_manifest`); emi and eri take none. For emi, the ``name``
    column (the organisers' ``Filename``, i.e. the id as text) is added after ``media``,
    so every task's manifest has ``name``.
    """
    if task not in DATASET_OPTIONS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(DATASET_OPTIONS)}")
    unknown = sorted(set(options) - set(DATASET_OPTIONS[task]))
    if unknown:
        allowed = ", ".join(DATASET_OPTIONS[task]) or "none"
        raise TypeError(f"read_dataset({task!r}): unknown option(s) {unknown}; allowed: {allowed}")
    if task == "emi":
        df = read_emi_manifest(root)
        df.insert(len(MANIFEST_COLUMNS), "name", df["id"].astype(str).astype(object))
        return df
    if task == "eri":
        return read_reaction_manifest(root)
    return read_affwild2_manifest(root, task, **options)
