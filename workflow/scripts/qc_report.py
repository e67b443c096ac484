"""Data-quality table and plots of the data set."""

from affectflow.report.qc import write_qc_report
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
write_qc_report(
    snakemake.input.media,
    snakemake.input.faces,
    clips_tsv=snakemake.output.clips,
    summary_tsv=snakemake.output.summary,
    plots=dict(zip(snakemake.params.plots, snakemake.output.plots)),
)
