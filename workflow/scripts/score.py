"""Score the submission against held-out test labels (the demo's ground truth)."""

from affectflow.evaluate import score_submission
from affectflow.runtime.job import job

log = job(snakemake)
score = score_submission(snakemake.input.submission, snakemake.input.ground_truth, snakemake.output.score)
log.info("test mean Pearson: %.4f", score["mean_pearson"])
