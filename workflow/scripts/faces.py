"""Faces stage for one shard."""

from affectflow.faces.stage import build_faces_shard
from affectflow.runtime.gpu_slots import claim_gpus_for_job
from affectflow.runtime.signals import exit_cleanly_on_sigterm
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
exit_cleanly_on_sigterm()  # scancel / time limit: remove the half-written shard, then fail
claim_gpus_for_job(snakemake)  # a free device of its own, held until the job exits
p = snakemake.params
qc = build_faces_shard(
    snakemake.input.media,
    snakemake.output.shard,
    detector=snakemake.wildcards.detector,
    detector_params=dict(p.detector_params),
    fps=p.fps,
    max_side=p.max_side,
    batch_size=p.batch_size,
    crop_size=p.crop_size,
    **dict(p.options),
)
qc.to_csv(snakemake.output.qc, sep="\t", index=False)
