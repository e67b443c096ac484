"""Write the validated submission of the configured task (EMI, ERI, VA or AU)."""

import pandas as pd

from affectflow.data import read_manifest
from affectflow.data.affwild2 import read_sample_frames
from affectflow.submission.write import expected_rows, training_fallback, write_submission
from affectflow.tasks import task_spec
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
spec = task_spec(snakemake.params.task)
manifest = read_manifest(snakemake.input.manifest)
sample = snakemake.input.sample_frames[0] if snakemake.input.sample_frames else None
expected = expected_rows(
    spec, manifest, sample_frames=read_sample_frames(sample) if sample else None
)
# Documented fallback for what no run could predict: the training mean per target (clip tasks:
# the manifest's labelled rows; per-frame tasks: the frame label table).
labelled = pd.read_csv(snakemake.input.frame_labels[0]) if spec.per_frame else manifest
summary = write_submission(
    spec,
    pd.read_csv(snakemake.input.test),
    expected,
    snakemake.output[0],
    fallback=training_fallback(spec, labelled),
)
log.info("submission: %s", summary)
