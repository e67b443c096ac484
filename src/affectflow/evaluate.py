"""Score a submission file against a ground-truth file of the same format."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from affectflow.metrics import pearson_per_target
from affectflow.runtime.atomic import write_text_atomic
from affectflow.tasks import EMI_ID_COLUMN, EMI_TARGETS


def score_submission(
    submission_csv: str | os.PathLike, ground_truth_csv: str | os.PathLike, out_json: str | os.PathLike | None = None
) -> dict:
    """Mean Pearson (and per target) of an EMI submission on the ids of the ground truth.

    Every ground-truth id must be in the submission; an id missing is an error naming it.
    """
    submission = pd.read_csv(submission_csv).set_index(EMI_ID_COLUMN)
    truth = pd.read_csv(ground_truth_csv).set_index(EMI_ID_COLUMN)
    missing = truth.index.difference(submission.index)
    if len(missing):
        raise ValueError(f"{submission_csv}: {len(missing)} ground-truth ids missing, e.g. {list(missing[:10])}")
    targets = list(EMI_TARGETS)
    per_target = pearson_per_target(
        truth[targets].to_numpy(), submission.loc[truth.index, targets].to_numpy(), targets
    )
    score = {"clips": len(truth), "mean_pearson": float(np.mean(list(per_target.values()))),
             "per_target": per_target}
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
