"""Collect the valid labelled frames of every train/val track into one table."""

from affectflow.runtime.atomic import atomic_path
from affectflow.data import read_manifest
from affectflow.data.affwild2 import frame_label_table
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
table = frame_label_table(read_manifest(snakemake.input.manifest), snakemake.params.task)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6g", compression="gzip")
log.info("%d labelled frames in %d tracks", len(table), table["id"].nunique())
