"""Read the dataset, assign shards and folds, write the manifest and the shard table."""

from affectflow.data import write_manifest_job
from affectflow.runtime.job import job

log = job(snakemake)
p = snakemake.params
log.info(
    "%s",
    write_manifest_job(
        p.task, p.root, snakemake.output.manifest, snakemake.output.shards,
        options=p.options, n_shards=p.n_shards, k_folds=p.k_folds, seed=p.seed,
    ),
)
