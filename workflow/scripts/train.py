"""Train one run on one fold."""

from pathlib import Path

from affectflow.datasets.emi import read_manifest
from affectflow.tasks import EMI_TARGETS
from affectflow.train import TrainSettings, train_fold
from affectflow.workflow_io import setup_logging

setup_logging(snakemake.log[0])
run = dict(snakemake.params.settings)
settings = TrainSettings(
    model=run["model"],
    model_params=dict(run.get("model_params", {})),
    epochs=run.get("epochs", 80),
    lr=run.get("lr", 0.002),
    batch_size=run.get("batch_size", 16),
    max_steps=run.get("max_steps", 64),
    seed=snakemake.params.seed,
)
train_fold(
    read_manifest(snakemake.input.manifest),
    list(snakemake.input.features),
    int(snakemake.wildcards.k),
    Path(snakemake.output.metrics).parent,
    targets=list(EMI_TARGETS),
    settings=settings,
)
