"""The reader of each task (emi, eri, va, au): its manifest, its organisers' files and its clip count.

:func:`read_dataset` reads a data set into a manifest; :func:`organiser_files` lists the
organisers' files that manifest is read from and
:func:`count_clips` estimates the clips before any manifest exists (to size the jobs). Each
dispatches to :mod:`affectflow.data.emi`, :mod:`~affectflow.data.reaction` or
:mod:`~affectflow.data.affwild2`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from affectflow.data import affwild2, emi, reaction
from affectflow.data.affwild2 import read_affwild2_manifest
from affectflow.data.emi import MANIFEST_COLUMNS, read_emi_manifest
from affectflow.data.reaction import read_reaction_manifest

__all__ = ["DATASET_OPTIONS", "count_clips", "dataset_options", "organiser_files", "read_dataset"]

#: keyword options each task's reader accepts through :func:`read_dataset`
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {
    "emi": (),
    "eri": (),
    "va": ("test_list", "frame_tolerance"),
    "au": ("test_list", "frame_tolerance"),
}


def _check_task(task: str) -> str:
    if task not in DATASET_OPTIONS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(DATASET_OPTIONS)}")
    return task


#: reader options that say which clips are test clips: the labelled clips' manifest does not depend on them
TEST_OPTIONS: tuple[str, ...] = ("test_list",)


def dataset_options(dataset: Mapping, *, labelled_only: bool = False) -> dict:
    """The reader options (:data:`DATASET_OPTIONS`, of any task) that the config's ``dataset``
    section sets, for :func:`read_dataset`: an option the task's reader does not take fails there,
    naming it. ``labelled_only`` leaves out :data:`TEST_OPTIONS`, so that pointing the config at
    a test list released late re-writes no manifest that training reads."""
    every = dict.fromkeys(name for names in DATASET_OPTIONS.values() for name in names)
    skip = TEST_OPTIONS if labelled_only else ()
    return {name: dataset[name] for name in every if name in dataset and name not in skip}


def read_dataset(task: str, root: str | os.PathLike, **options) -> pd.DataFrame:
    """Read the data set of ``task`` (emi, eri, va, au) under ``root`` into a manifest.

    ``options`` go to the task's reader: ``test_list`` and ``frame_tolerance`` for va/au
    (see :func:`~affectflow.data.affwild2.read_affwild2_manifest`); emi and eri take none. For
    emi, the ``name`` column (the organisers' ``Filename``, i.e. the id as text) is added after
    ``media``, so every task's manifest has ``name``.
    """
    _check_task(task)
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


def organiser_files(task: str, root: str | os.PathLike, *, test_list: str | os.PathLike | None = None) -> list[str]:
    """The organisers' files (and folders) the manifest of ``task`` under ``root`` is read from.

    emi: ``train_split.csv``, ``valid_split.csv``; eri: ``data_info.csv``, or ``labels.csv`` +
    ``partition.csv`` when only those exist; va/au: the challenge's annotation folder and
    ``test_list`` when one is given (emi and eri have no test list and ignore it). Paths are
    ``root`` as given joined with ``/``.
    """
    _check_task(task)
    if task == "emi":
        return emi.organiser_files(root)
    if task == "eri":
        return reaction.organiser_files(root)
    return affwild2.organiser_files(root, task, test_list=test_list)


def count_clips(task: str, root: str | os.PathLike, *, demo_clips: int | None = None) -> int | None:
    """About how many clips (manifest rows) the data set of ``task`` under ``root`` has; None when unknown.

    ``demo_clips`` (the demo's ``n_clips``, the set not rendered yet) wins when given. Else emi
    and eri count the media files under ``raw/`` (None when it cannot be listed), va and au the
    annotation files of the challenge (train and validation tracks; None when there are none).
    """
    _check_task(task)
    if demo_clips is not None:
        return int(demo_clips)
    if task == "emi":
        return emi.count_clips(root)
    if task == "eri":
        return reaction.count_clips(root)
    return affwild2.count_clips(root, task)
