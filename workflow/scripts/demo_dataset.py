"""Build the bundled demo set in the Hume-Vidmimic2 layout."""

from pathlib import Path

from affectflow.demo import build_demo_dataset
from affectflow.runtime.job import job

log = job(snakemake)
demo = snakemake.params.demo  # the schema fills in every key
build_demo_dataset(
    demo["resources"], Path(snakemake.output.splits[0]).parent, snakemake.output.ground_truth,
    snakemake.output.properties, n_clips=demo["n_clips"], max_duration_s=demo["max_duration_s"], seed=demo["seed"],
)
