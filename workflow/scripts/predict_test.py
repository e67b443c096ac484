"""Predict the test clips with one fold model of one run."""

from affectflow.runtime.job import job
from affectflow.training.predict import predict_fold_job

job(snakemake, gpu=True, torch_threads=True)  # the job's share of the cores, not all of them
predict_fold_job(
    snakemake.input.model,
    snakemake.input.config,
    snakemake.input.manifest,
    list(snakemake.input.features),
    snakemake.output.test,
    task=snakemake.params.task,
    run=dict(snakemake.params.settings),
)
