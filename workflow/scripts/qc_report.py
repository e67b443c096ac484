"""Data-quality tables and plots of the data set (rule qc_report)."""

from affectflow.report.qc import write_qc_report
from affectflow.runtime.job import job

job(snakemake)
write_qc_report(
    snakemake.input.media,
    snakemake.input.faces,
    clips_tsv=snakemake.output.clips,
    summary_tsv=snakemake.output.summary,
    plots=dict(zip(snakemake.params.plots, snakemake.output.plots, strict=True)),
    plot_tables=dict(zip(snakemake.params.plots, snakemake.output.plot_tables, strict=True)),
)
