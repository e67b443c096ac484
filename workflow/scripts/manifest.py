"""Read the dataset, assign shards and folds, write the manifest."""

from affectflow.runtime.atomic import write_text_atomic
from affectflow.data import read_dataset, write_manifest
from affectflow.data.folds import assign_folds
from affectflow.data.shards import assign_shards
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
manifest = assign_folds(
    assign_shards(read_dataset(p.task, p.root, **p.options), p.n_shards), p.k_folds, seed=p.seed
)
write_manifest(manifest, snakemake.output.manifest)
counts = manifest.groupby(["shard", "split"]).size().unstack(fill_value=0)
write_text_atomic(snakemake.output.shards, counts.to_csv(sep="\t"))
log.info("%d clips (%s) in %d shards", len(manifest), manifest["split"].value_counts().to_dict(), p.n_shards)
