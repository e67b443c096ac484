"""Faces stage for one shard."""

from affectflow.faces.stage import write_faces_shard
from affectflow.runtime.job import job

job(snakemake, gpu=True)
p = snakemake.params
write_faces_shard(
    snakemake.input.media,
    snakemake.output.shard,
    snakemake.output.qc,
    detector=snakemake.wildcards.detector,
    detector_params=p.detector_params,
    fps=p.fps,
    max_side=p.max_side,
    batch_size=p.batch_size,
    crop_size=p.crop_size,
    options=p.options,
)
