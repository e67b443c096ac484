"""Ensemble of the configured runs, fitted on their out-of-fold predictions."""

from pathlib import Path

from affectflow.ensemble import build_ensemble_job
from affectflow.runtime.job import job

log = job(snakemake)
score = build_ensemble_job(
    snakemake.params.members,
    snakemake.input.truth,  # manifest.tsv (clip tasks) or frame_labels.csv.gz (per-frame tasks)
    Path(snakemake.output.score).parent,
    task=snakemake.params.task,
    method=snakemake.params.method,
    params=snakemake.params.method_params,
    thresholds=snakemake.params.thresholds,
    test=snakemake.params.test,
)
log.info("OOF %s: %s on %d rows", score["metric"], score["oof"]["mean"], score["oof"]["rows"])
