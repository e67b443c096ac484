"""Score the submission against held-out test labels (the demo's ground truth)."""

from affectflow.evaluate import score_submission
from affectflow.runtime.logs import setup_logging

log = setup_logging(snakemake.log[0])
score = score_submission(snakemake.input.submission, snakemake.input.ground_truth, snakemake.output[0])
log.info("test mean Pearson: %.4f", score["mean_pearson"])
