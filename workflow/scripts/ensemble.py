"""Ensemble of the configured runs, fitted on their out-of-fold predictions."""

from pathlib import Path

from affectflow.ensemble.build import build_ensemble, load_truth
from affectflow.tasks import task_spec
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
spec = task_spec(snakemake.params.task)
score = build_ensemble(
    dict(snakemake.params.members),
    load_truth(snakemake.input.truth, spec),  # manifest.tsv (clip tasks) or frame_labels.csv.gz
    Path(snakemake.output.score).parent,
    spec=spec,
    method=snakemake.params.method,
    params=dict(snakemake.params.method_params or {}),
    thresholds=bool(snakemake.params.thresholds),
)
log.info("OOF %s: %s on %d rows", spec.metric, score["oof"]["mean"], score["oof"]["rows"])
