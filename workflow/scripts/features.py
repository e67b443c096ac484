"""Features stage: one backbone over one shard."""

from affectflow.features.stage import write_feature_shard
from affectflow.runtime.job import job

job(snakemake, gpu=True)
key = snakemake.wildcards.backbone
write_feature_shard(
    key,
    snakemake.config["features"][key],
    snakemake.params.signature,
    snakemake.input.source,
    snakemake.output.shard,
    frames_shard=snakemake.input.get("frames"),
)
