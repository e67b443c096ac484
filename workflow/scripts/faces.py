"""Faces stage for one shard."""

from affectflow.faces.stage import build_faces_shard
from affectflow.workflow_io import setup_logging

setup_logging(snakemake.log[0])
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
)
qc.to_csv(snakemake.output.qc, sep="\t", index=False)
