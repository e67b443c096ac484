"""Out-of-fold score table and bar chart of every run and ensemble (rule report_scores)."""

from affectflow.report.figures import write_score_figure
from affectflow.runtime.job import job

job(snakemake)
write_score_figure(
    dict(snakemake.params.runs),
    list(snakemake.input.ensembles),
    snakemake.input.truth,
    task=snakemake.params.task,
    svg=snakemake.output.svg,
    tsv=snakemake.output.tsv,
)
