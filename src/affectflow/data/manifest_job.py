"""The manifest jobs of the workflow: read the data set, give each clip its shard and fold, write one
partition's rows (the labelled clips training reads, or the test clips prediction reads)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from affectflow.data.emi import DatasetError, write_manifest
from affectflow.data.folds import assign_folds
from affectflow.data.listing import check_partition, partition_of, shard_column
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
    listed_ids: Iterable[int] | None = None,
) -> str:
    """Write the manifest rows of ``partition`` (``labelled`` or ``test``) of ``task`` under ``root``.

    ``options`` go to :func:`~affectflow.data.readers.read_dataset`. Shards are those of
    :func:`affectflow.data.listing.shard_column`; folds are dealt over the labelled clips only
    (:func:`~affectflow.data.folds.assign_folds`), so test clips never change them. Returns a
    one-line summary for the job's log.

    ``listed_ids``: the partition's ids as the workflow listed them when it built its jobs. A data
    set that changed since (a video added while the run was starting) fails, naming the ids, rather
    than writing rows the media jobs never saw.
    """
    check_partition(partition)
    dataset = read_dataset(task, root, **dict(options or {}))
    dataset["shard"] = shard_column(dataset["id"], dataset["split"], n_shards, test_shards)
    manifest = assign_folds(dataset, k_folds, seed=seed)
    rows = manifest[[partition_of(s) == partition for s in manifest["split"]]].reset_index(drop=True)
    if listed_ids is not None:
        _check_unchanged(root, partition, set(map(int, listed_ids)), set(rows["id"].astype(int)))
    write_manifest(rows, out_manifest)
    return f"{len(rows)} {partition} clips ({rows['split'].value_counts().to_dict()}) of {len(manifest)}"


def _check_unchanged(root, partition: str, listed: set[int], now: set[int]) -> None:
    """Fail, naming the ids, when the partition's clips on disk differ from those listed at start-up."""
    if listed == now:
        return
    added, removed = sorted(now - listed), sorted(listed - now)
    raise DatasetError(
        f"{root}: the {partition} clips changed after this run's job graph was built (added: {added[:10]}, "
        f"removed: {removed[:10]}); run the same snakemake command again to process them"
    )
