"""Out-of-fold predictions against truth, of a run or the ensemble (rules report_oof_run, report_oof_ensemble)."""

from affectflow.report.figures import write_oof_figure
from affectflow.runtime.job import job

job(snakemake)
write_oof_figure(
    snakemake.input.predictions,
    snakemake.input.truth,
    task=snakemake.params.task,
    svg=snakemake.output.svg,
    tsv=snakemake.output.tsv,
    title=snakemake.params.title,
)
