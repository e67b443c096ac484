"""Train one run on one fold."""

from pathlib import Path

from affectflow.runtime.job import job
from affectflow.training.fold import train_fold_job

job(snakemake, gpu=True, torch_threads=True)  # the job's share of the cores, not all of them
train_fold_job(
    snakemake.input.manifest,
    list(snakemake.input.features),
    int(snakemake.wildcards.k),
    Path(snakemake.output.metrics).parent,
    task=snakemake.params.task,
    run=dict(snakemake.params.settings),
    seed=snakemake.params.seed,
    k_folds=snakemake.params.k_folds,
    frame_labels=next(iter(snakemake.input.frame_labels), None),  # per-frame tasks only
    branch_models=list(snakemake.input.branches),
    # fine-tuning runs: the weights the encoder starts from
    encoder_weights=snakemake.params.resolved.get("encoder_weights", {}).get("weights", ""),
)
