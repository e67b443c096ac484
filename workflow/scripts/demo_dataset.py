"""Build the bundled demo set in the Hume-Vidmimic2 layout."""

from pathlib import Path

from affectflow.demo.build import build_demo_dataset
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
demo = snakemake.params.demo
build_demo_dataset(
    demo.get("resources", "resources/demo"),
    Path(snakemake.output.train).parent,
    snakemake.output.ground_truth,
    snakemake.output.properties,
    n_clips=demo.get("n_clips", 72),
    max_duration_s=demo.get("max_duration_s", 20.0),
    seed=demo.get("seed", 0),
)
