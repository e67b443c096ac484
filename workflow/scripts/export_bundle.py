"""Export the trained ensemble as a bundle folder."""

from affectflow.predict.bundle import export_bundle
from affectflow.runtime.job import job

log = job(snakemake)
p = snakemake.params
record = export_bundle(
    snakemake.output.bundle,
    config=p.config,
    train_dir=p.train_dir,
    runs=p.runs,
    members_json=snakemake.input.members,
    score_json=snakemake.input.score,
    manifest=snakemake.input.manifest,
    backbones=p.backbones,
)
log.info("bundle %s: runs %s, %d files", snakemake.output.bundle, list(p.runs), len(record["files"]))
