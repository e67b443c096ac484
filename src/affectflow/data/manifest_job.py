"""The manifest jobs of the workflow: read the data set, give each clip its shard and fold, write one
partition's rows (the labelled clips training reads, or the test clips prediction reads)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from affectflow.data.emi import write_manifest
from affectflow.data.folds import assign_folds
from affectflow.data.listing import PARTITIONS, partition_of, shard_column
from affectflow.data.readers import read_dataset

__all__ = ["write_manifest_job"]


def write_manifest_job(
    task: str,
    root: str | os.PathLike,
    partition: str,
    out_manifest: str | os.PathLike,
    *,
    options: Mapping | None = None,
    n_shards: int,
    test_shards: int | None = None,
    k_folds: int,
    seed: int,
) -> str:
    """Write the manifest rows of ``partition`` (``labelled`` or ``test``) of ``task`` under ``root``.

    ``options`` go to :func:`~affectflow.data.readers.read_dataset`. Shards are those of
    :func:`affectflow.data.listing.shard_column`; folds are dealt over the labelled clips only
    (:func:`~affectflow.data.folds.assign_folds`), so test clips never change them. Returns a
    one-line summary for the job's log.
    """
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; known: {', '.join(PARTITIONS)}")
    dataset = read_dataset(task, root, **dict(options or {}))
    dataset["shard"] = shard_column(dataset["id"], dataset["split"], n_shards, test_shards)
    manifest = assign_folds(dataset, k_folds, seed=seed)
    rows = manifest[[partition_of(s) == partition for s in manifest["split"]]].reset_index(drop=True)
    write_manifest(rows, out_manifest)
    return f"{len(rows)} {partition} clips ({rows['split'].value_counts().to_dict()}) of {len(manifest)}"
