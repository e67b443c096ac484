"""Late fusion of the configured runs."""

from pathlib import Path

from affectflow.datasets.emi import read_manifest
from affectflow.ensemble import late_mean
from affectflow.tasks import EMI_TARGETS
from affectflow.workflow_io import setup_logging

log = setup_logging(snakemake.log[0])
score = late_mean(
    dict(snakemake.params.members),
    read_manifest(snakemake.input.manifest),
    Path(snakemake.output.score).parent,
    targets=list(EMI_TARGETS),
)
log.info("OOF mean Pearson: %s", score["oof"].get("mean_pearson"))
