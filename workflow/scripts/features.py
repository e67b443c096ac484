"""Features stage: one backbone over one shard."""

from affectflow.features.stage import build_feature_shard
from affectflow.workflow_io import setup_logging

setup_logging(snakemake.log[0])
build_feature_shard(
    snakemake.wildcards.backbone,
    dict(snakemake.params.signature["params"]),
    snakemake.input.source,
    snakemake.output.shard,
)
