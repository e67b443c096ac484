"""Score a submission file against a ground-truth file of the same format."""

from __future__ import annotations

import json
import os

import pandas as pd

from affectflow.runtime.atomic import write_text_atomic
from affectflow.scoring import score_arrays
from affectflow.tasks import task_spec


def score_submission(
    submission_csv: str | os.PathLike, ground_truth_csv: str | os.PathLike, out_json: str | os.PathLike | None = None
) -> dict:
    """Mean Pearson (and per target) of an EMI submission on the ids of the ground truth.

    Every ground-truth id must be in the submission; an id missing is an error naming it. The
    score is :func:`affectflow.scoring.score_arrays`' (per target, on the clips labelled and
    predicted); ``clips`` counts the clips scored.
    """
    spec = task_spec("emi")
    submission = pd.read_csv(submission_csv).set_index(spec.submission_key)
    truth = pd.read_csv(ground_truth_csv).set_index(spec.submission_key)
    missing = truth.index.difference(submission.index)
    if len(missing):
        raise ValueError(f"{submission_csv}: {len(missing)} ground-truth ids missing, e.g. {list(missing[:10])}")
    targets = list(spec.targets)
    result = score_arrays(spec.metric, truth[targets].to_numpy(), submission.loc[truth.index, targets].to_numpy(),
                          targets)
    score = {"clips": result["rows"], "mean_pearson": result["mean"], "per_target": result["per_target"]}
    if out_json is not None:
        write_text_atomic(out_json, json.dumps(score, indent=2))
    return score


def main(argv: list[str] | None = None) -> None:
    """``python -m affectflow.evaluate SUBMISSION GROUND_TRUTH``: print the held-out score."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("submission")
    parser.add_argument("ground_truth")
    args = parser.parse_args(argv)
    score = score_submission(args.submission, args.ground_truth)
    for target, value in score["per_target"].items():
        print(f"  {target:<14} {value:+.4f}")
    print(f"mean Pearson on {score['clips']} held-out test clips: {score['mean_pearson']:.4f}")


if __name__ == "__main__":
    main()
