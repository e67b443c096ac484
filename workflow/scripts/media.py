"""Media stage for one shard."""

from affectflow.data.emi import read_manifest
from affectflow.runtime.signals import exit_cleanly_on_sigterm
from affectflow.media import build_media_shard
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
exit_cleanly_on_sigterm()  # scancel / time limit: remove the half-written shard, then fail
qc = build_media_shard(
    read_manifest(snakemake.input.manifest),
    int(snakemake.wildcards.s),
    snakemake.output.shard,
    sample_rate=snakemake.params.sample_rate,
    peak_dbfs=snakemake.params.peak_dbfs,
    max_seconds=snakemake.params.max_seconds,
)
qc.to_csv(snakemake.output.qc, sep="\t", index=False)
