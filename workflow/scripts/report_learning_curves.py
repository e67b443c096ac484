"""Learning curves of a run's folds (rule report_learning_curves)."""

from affectflow.report.curves import write_learning_curves
from affectflow.runtime.job import job

job(snakemake)
write_learning_curves(
    snakemake.input.metrics,
    svg=snakemake.output.svg,
    tsv=snakemake.output.tsv,
    title=snakemake.params.title,
)
