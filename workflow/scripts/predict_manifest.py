"""The manifest of the videos to predict."""

from affectflow.predict.videos import write_video_manifest
from affectflow.runtime.job import job

log = job(snakemake)
p = snakemake.params
table = write_video_manifest(p.clips, p.root, snakemake.output.manifest, per_frame=p.per_frame)
log.info("%d video(s) under %s", len(table), p.root)
