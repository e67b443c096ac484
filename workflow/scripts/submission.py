"""Write the validated submission of the configured task (EMI, ERI, VA or AU)."""

from affectflow.runtime.job import job
from affectflow.submission import write_task_submission

log = job(snakemake)
summary = write_task_submission(
    snakemake.params.task,
    snakemake.input.test,
    snakemake.input.manifest,
    snakemake.input.test_manifest,
    snakemake.output[0],
    root=snakemake.params.root,
    test_list=snakemake.params.test_list,
    frame_labels_csv=snakemake.input.frame_labels[0] if snakemake.input.frame_labels else None,
    sample_file=snakemake.input.sample_frames[0] if snakemake.input.sample_frames else None,
)
log.info("submission: %s", summary)
