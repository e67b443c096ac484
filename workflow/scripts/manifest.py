"""Read the dataset, assign shards and folds, write one partition's manifest (labelled or test)."""

from affectflow.data import dataset_options, write_manifest_job
from affectflow.runtime.job import job

log = job(snakemake)
p = snakemake.params
log.info(
    "%s",
    write_manifest_job(
        p.task, p.root, p.partition, snakemake.output.manifest,
        # every reader option from the config (p.options leaves out what this partition does not depend on)
        options=dataset_options(snakemake.config["dataset"]),
        n_shards=p.n_shards, test_shards=p.test_shards, k_folds=p.k_folds, seed=p.seed,
        listed_ids=[clip[0] for clip in p.clips],  # the clips the media jobs were given
    ),
)
