"""Apply the fitted ensemble to its members' fold predictions (the test split, or predicted videos)."""

from affectflow.ensemble import apply_ensemble_job
from affectflow.runtime.job import job

log = job(snakemake)
table = apply_ensemble_job(
    snakemake.input.members,
    snakemake.params.tables,
    snakemake.output[0],
    task=snakemake.params.task,
)
log.info("%s: %d row(s)", snakemake.output[0], len(table))
