"""The data set as the workflow sees it when it starts: every clip's id, name, media file, partition,
shard and file fingerprint.

The workflow reads this listing each time it builds its job graph, before any job runs, and
hands each job exactly the part of it the job depends on (as a Snakemake ``params`` value, which
Snakemake compares with the value it recorded when the job last ran):

- a media job gets its shard's clips with their fingerprints, so a new, removed or replaced
  video re-runs that shard's media job (and, through their files, its faces and features jobs)
  and no other shard's;
- the manifest jobs get their partition's clips (labelled: train and validation; test), so a
  new test video re-writes the test manifest and never the one training reads.

Test clips have shards of their own (``test0``, ``test1``, ...; labelled shards are ``0``,
``1``, ...), so the feature shards a training job reads never hold a test clip. A clip's shard
is :func:`~affectflow.data.shards.shard_of` its id within its partition: adding clips never
moves another clip.

A file's fingerprint is its size and modification time in nanoseconds (``"size:mtime_ns"``,
``"missing"`` when absent). A re-downloaded or re-encoded copy differs in at least one of them,
also when the copy keeps an older modification time (``cp -p``, ``rsync -a``, ``wget``'s server
time), which Snakemake's own newer-than-the-output test misses. Contents are not hashed: hashing
a challenge's videos (tens to hundreds of GB) each time the job graph is built would take minutes,
while one ``stat`` per file takes milliseconds for 17,246 clips (``bench/dag_scale.py``). The
price: a copy with the same size and the same modification time to the nanosecond is not seen.
Files the workflow makes itself (the demo set) are tracked by Snakemake through their rule and
get an empty fingerprint.

Reading the listing opens no video and parses no Aff-Wild2 annotation (``probe=False``); the
EMI and ERI split files are read, so a malformed one fails here, naming the file and line.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from affectflow.data import affwild2
from affectflow.data.folds import LABELLED_SPLITS
from affectflow.data.readers import organiser_files, read_dataset
from affectflow.data.shards import shard_of
from affectflow.tasks import emi_media_name, task_spec

__all__ = [
    "LABELLED",
    "PARTITIONS",
    "TEST",
    "TEST_SHARD_PREFIX",
    "Listing",
    "count_test_shards",
    "empty_listing",
    "fingerprint",
    "check_partition",
    "label_files",
    "labels_digest",
    "partition_of",
    "read_listing",
    "shard_column",
    "shard_label",
]

LABELLED, TEST = "labelled", "test"
#: the two partitions: clips with labels (train and validation) and the test clips
PARTITIONS: tuple[str, str] = (LABELLED, TEST)
#: a test shard's label is this prefix and its index
TEST_SHARD_PREFIX = "test"
_COLUMNS = ["id", "name", "split", "partition", "media", "shard", "fingerprint"]


def fingerprint(path: str | os.PathLike) -> str:
    """``"size:mtime_ns"`` of ``path``, or ``"missing"`` when it cannot be stat'ed (see the module docstring)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def count_test_shards(n_shards: int, test_shards: int | None = None) -> int:
    """Shards of the test partition: ``test_shards``, or by default a third of ``n_shards`` (at least 1).

    The challenges' test sets hold about a quarter to a third as many clips as their labelled sets
    (Hume-Vidmimic2: 4,586 of 17,246), so the default keeps test shards about as large as labelled ones.
    """
    return int(test_shards) if test_shards else max(1, math.ceil(int(n_shards) / 3))


def shard_label(partition: str, index: int) -> str:
    """The shard's name in file names: ``"3"`` (labelled) or ``"test3"`` (test)."""
    check_partition(partition)
    return f"{TEST_SHARD_PREFIX}{index}" if partition == TEST else str(index)


def check_partition(partition: str) -> str:
    """``partition`` if it is one of :data:`PARTITIONS`, else a ValueError naming them."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; known: {', '.join(PARTITIONS)}")
    return partition


def partition_of(split: str) -> str:
    """``labelled`` for train and validation clips, ``test`` for test clips."""
    return LABELLED if split in LABELLED_SPLITS else TEST


def label_files(task: str, root: str | os.PathLike) -> list[str]:
    """The files the labels of ``task`` are read from: EMI's split csvs, ERI's ``data_info.csv`` (or
    ``labels.csv`` + ``partition.csv``), every Aff-Wild2 annotation file of the train and validation sets.

    The demo rule's outputs (EMI), and for Aff-Wild2 the files whose fingerprints make the labels
    digest (:func:`labels_digest`): a folder's time does not change when a file in it is edited.
    """
    spec = task_spec(task)
    if not spec.per_frame:  # the clip tasks' organisers' files are all label files
        return organiser_files(spec.name, root)
    ann = affwild2.annotation_dir(root, spec.name)
    return sorted(p for d in affwild2.SPLIT_DIRS for p in glob.glob(f"{glob.escape(ann)}/{d}/*.txt"))


@dataclass(frozen=True)
class Listing:
    """The listed clips (columns id, name, split, partition, media relative to ``root``, shard,
    fingerprint), the shard labels of both partitions (labelled first), and ``labels``: a digest of
    the labels as the organisers' files hold them now (see :func:`labels_digest`)."""

    root: str
    clips: pd.DataFrame
    shards: tuple[str, ...]
    labels: str = ""

    def partition_shards(self, partition: str) -> list[str]:
        """The shard labels of ``partition``."""
        return [s for s in self.shards if s.startswith(TEST_SHARD_PREFIX) == (partition == TEST)]

    def shard_clips(self, shard: str) -> list[tuple]:
        """``(id, name, media, fingerprint)`` of every clip of ``shard``, by id: a media job's clips."""
        if str(shard) not in self.shards:
            raise ValueError(f"no shard {shard!r} in this data set; its shards: {', '.join(self.shards)}")
        rows = self.clips[self.clips["shard"] == str(shard)]
        return [(int(i), str(n), str(m), str(f))
                for i, n, m, f in zip(rows["id"], rows["name"], rows["media"], rows["fingerprint"], strict=True)]

    def partition_clips(self, partition: str, *, fingerprints: bool) -> list[tuple]:
        """``(id, name, split, media[, fingerprint])`` of every clip of ``partition``, by id.

        With ``fingerprints`` a replaced video changes the value too: for readers that open the
        videos (Aff-Wild2's frame rate and count), not for those that only list them.
        """
        rows = self.clips[self.clips["partition"] == partition]
        columns = ["id", "name", "split", "media", *(["fingerprint"] if fingerprints else [])]
        return [(int(r[0]), *map(str, r[1:])) for r in rows[columns].itertuples(index=False)]


def empty_listing(root: str | os.PathLike) -> Listing:
    """A listing without clips or shards: the data set of a run that only predicts from a bundle."""
    return Listing(str(root), pd.DataFrame({c: pd.Series(dtype=object) for c in _COLUMNS}), ())


def _demo_clips(root: str, demo: Mapping) -> pd.DataFrame:
    """The demo's planned clips (the set may not be rendered yet): ids and splits from its plan."""
    from affectflow.demo.plan import plan_clips

    plan = plan_clips(demo["n_clips"], demo["max_duration_s"], demo["seed"])
    media = [f"raw/{emi_media_name(int(i))}" for i in plan["id"]]
    return pd.DataFrame({"id": plan["id"].astype("int64"), "name": plan["id"].astype(str), "split": plan["split"],
                         "media": media, "fingerprint": ""})


def labels_digest(task: str, root: str | os.PathLike, dataset: pd.DataFrame) -> str:
    """SHA-256 of the labels as the organisers' files hold them now: the labelled rows' ids, splits and
    targets (EMI, ERI: the reader has parsed them), or each annotation file's fingerprint (VA, AU:
    parsing millions of annotation lines at each start would be slow). A test row added to ERI's
    ``data_info.csv`` or a label file copied back with an older time changes nothing, resp. is seen."""
    spec = task_spec(task)
    if spec.per_frame:
        text = "\n".join(f"{os.path.relpath(path, root)}\t{fingerprint(path)}" for path in label_files(spec.name, root))
    else:
        labelled = dataset[dataset["split"].isin(LABELLED_SPLITS)]
        text = labelled[["id", "split", *spec.targets]].to_csv(index=False, float_format="%.17g")
    return hashlib.sha256(text.encode()).hexdigest()


def _read_clips(task: str, root: str, test_list: str | os.PathLike | None) -> tuple[pd.DataFrame, str]:
    """The data set's clips as its reader lists them, media relative to ``root``, with fingerprints;
    and the :func:`labels_digest`."""
    spec = task_spec(task)
    if spec.per_frame:
        df = affwild2.read_affwild2_manifest(root, spec.name, test_list=test_list, probe=False)
    else:
        df = read_dataset(spec.name, root)
    base = os.path.realpath(root)
    media = [os.path.relpath(m, base) for m in df["media"]]
    clips = pd.DataFrame({"id": df["id"].astype("int64"), "name": df["name"].astype(str), "split": df["split"],
                          "media": media, "fingerprint": [fingerprint(os.path.join(base, m)) for m in media]})
    return clips, labels_digest(spec.name, root, df)


def read_listing(task: str, root: str | os.PathLike, *, n_shards: int, test_shards: int | None = None,
                 test_list: str | os.PathLike | None = None, demo: Mapping | None = None) -> Listing:
    """List the data set of ``task`` under ``root`` and give each clip its partition and shard.

    ``n_shards`` labelled shards and :func:`count_test_shards` test shards. ``demo`` (the config's
    ``dataset.demo``): the clips come from the demo's plan, so the set need not be rendered yet (its
    files are the demo rule's outputs: fingerprints and the labels digest are empty, Snakemake tracks
    them through that rule). Raises what the task's reader raises for a malformed or missing
    organisers' file.
    """
    root = str(root)
    clips, labels = (_demo_clips(root, demo), "") if demo else _read_clips(task, root, test_list)
    clips["partition"] = [partition_of(s) for s in clips["split"]]
    clips["shard"] = shard_column(clips["id"], clips["split"], n_shards, test_shards)
    clips = clips.sort_values("id", kind="stable").reset_index(drop=True)[_COLUMNS]
    n_test = count_test_shards(n_shards, test_shards)
    shards = tuple(shard_label(LABELLED, k) for k in range(int(n_shards))) + tuple(
        shard_label(TEST, k) for k in range(n_test))
    return Listing(root, clips, shards, labels)


def shard_column(ids, splits, n_shards: int, test_shards: int | None = None) -> list[str]:
    """Each clip's shard label from its id and split: :func:`~affectflow.data.shards.shard_of` its id among
    its partition's shards (``n_shards`` labelled, :func:`count_test_shards` test)."""
    n_test = count_test_shards(n_shards, test_shards)
    out = []
    for i, split in zip(ids, splits, strict=True):
        partition = partition_of(split)
        out.append(shard_label(partition, shard_of(i, n_test if partition == TEST else int(n_shards))))
    return out
