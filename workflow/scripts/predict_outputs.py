"""Per-video tables and timeline plots, the summary and the page of a predicted video set."""

from affectflow.predict.outputs import write_predict_outputs
from affectflow.runtime.job import job

log = job(snakemake)
i, o = snakemake.input, snakemake.output
summary = write_predict_outputs(
    i.predictions,
    i.manifest,
    list(i.media_qc),
    list(i.faces),
    list(i.faces_qc),
    o.videos,
    o.summary,
    o.page,
    task=snakemake.params.task,
    title=snakemake.params.title,
)
log.info("%d video(s): %s", len(summary), summary["status"].value_counts().to_dict())
