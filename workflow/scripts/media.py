"""Media stage for one shard."""

from affectflow.media import write_media_shard
from affectflow.runtime.job import job

job(snakemake)
p = snakemake.params
write_media_shard(
    p.clips,
    p.root,
    snakemake.wildcards.s,
    snakemake.output.shard,
    snakemake.output.qc,
    sample_rate=p.sample_rate,
    peak_dbfs=p.peak_dbfs,
    max_seconds=p.max_seconds,
)
