"""Figures of the Snakemake report (scores, OOF predictions, learning curves)."""

from affectflow.report.figures import write_learning_curves, write_oof_figure, write_score_figure
from affectflow.tasks import task_spec
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
figure = snakemake.params.figure
if figure == "scores":
    table = write_score_figure(
        dict(snakemake.params.runs),
        dict(snakemake.params.ensembles),
        snakemake.input.truth,
        spec=task_spec(snakemake.params.task),
        svg=snakemake.output.svg,
        tsv=snakemake.output.tsv,
    )
    log.info("scores:\n%s", table.to_string(index=False))
elif figure == "oof":
    write_oof_figure(
        snakemake.input.predictions,
        snakemake.input.truth,
        spec=task_spec(snakemake.params.task),
        svg=snakemake.output.svg,
        title=snakemake.params.title,
    )
elif figure == "learning_curves":
    write_learning_curves(snakemake.input.metrics, svg=snakemake.output.svg, title=snakemake.params.title)
else:
    raise ValueError(f"unknown report figure {figure!r}; known: scores, oof, learning_curves")
