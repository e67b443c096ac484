"""Features stage: one backbone over one shard."""

from affectflow.features.stage import build_feature_shard, runtime_options
from affectflow.runtime.gpu_slots import claim_gpus_for_job
from affectflow.runtime.signals import exit_cleanly_on_sigterm
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
exit_cleanly_on_sigterm()  # scancel / time limit: remove the half-written shard, then fail
claim_gpus_for_job(snakemake)  # a free device of its own, held until the job exits
signature = snakemake.params.signature
key = snakemake.wildcards.backbone
build_feature_shard(
    signature["backbone"],
    dict(signature["params"]),
    snakemake.input.source,
    snakemake.output.shard,
    timeline=signature.get("timeline", "native"),
    mask=signature.get("mask"),  # paper 004: upper or lower half of each crop blacked out
    frames_shard=snakemake.input.get("frames"),
    # batch size, workers and device change speed only, so they are read here, not passed as params
    **runtime_options(key, snakemake.config["features"][key]),
)
