"""Collect the valid labelled frames of every train/val track into one table."""

from affectflow.data import write_frame_labels
from affectflow.runtime.job import job

log = job(snakemake)
log.info("%s", write_frame_labels(snakemake.input.manifest, snakemake.params.task, snakemake.output[0]))
