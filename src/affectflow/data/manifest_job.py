"""The manifest job of the workflow: read the data set, assign shards and folds, write both tables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from affectflow.data.emi import write_manifest
from affectflow.data.folds import assign_folds
from affectflow.data.readers import read_dataset
from affectflow.data.shards import assign_shards
from affectflow.runtime.atomic import write_text_atomic

__all__ = ["write_manifest_job"]


def write_manifest_job(
    task: str,
    root: str | os.PathLike,
    out_manifest: str | os.PathLike,
    out_shards: str | os.PathLike,
    *,
    options: Mapping | None = None,
    n_shards: int,
    k_folds: int,
    seed: int,
) -> str:
    """Write the manifest of ``task`` under ``root`` (with shard and fold) and the shard table.

    ``options`` go to :func:`~affectflow.data.readers.read_dataset`. The shard table
    ``out_shards`` counts the clips per shard (rows) and split (columns), tab-separated.
    Returns a one-line summary for the job's log.
    """
    dataset = read_dataset(task, root, **dict(options or {}))
    manifest = assign_folds(assign_shards(dataset, n_shards), k_folds, seed=seed)
    write_manifest(manifest, out_manifest)
    counts = manifest.groupby(["shard", "split"]).size().unstack(fill_value=0)
    write_text_atomic(out_shards, counts.to_csv(sep="\t"))
    return f"{len(manifest)} clips ({manifest['split'].value_counts().to_dict()}) in {n_shards} shards"
