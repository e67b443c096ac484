"""The held-out score of an EMI submission (affectflow.evaluate), checked with scipy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectflow.evaluate import main, score_submission
from affectflow.tasks import EMI_TARGETS


def _tables(rng, n):
    truth = pd.DataFrame({"Filename": np.arange(100, 100 + n)})
    truth[list(EMI_TARGETS)] = rng.uniform(0, 1, (n, len(EMI_TARGETS)))
    submission = truth.copy()
    submission[list(EMI_TARGETS)] = np.clip(truth[list(EMI_TARGETS)] + rng.normal(0, 0.3, (n, 6)), 0, 1)
    return truth, submission


def test_score_is_the_mean_pearson_over_targets_on_the_truth_ids(tmp_path, capsys):
    truth, submission = _tables(np.random.default_rng(0), 30)
    extra = submission.iloc[:2].assign(Filename=[1, 2])  # ids beyond the truth's are not scored
    pd.concat([submission.iloc[::-1], extra]).to_csv(tmp_path / "sub.csv", index=False)
    truth.to_csv(tmp_path / "gt.csv", index=False)
    score = score_submission(tmp_path / "sub.csv", tmp_path / "gt.csv", tmp_path / "score.json")
    want = {t: pearsonr(truth[t], submission[t])[0] for t in EMI_TARGETS}
    assert score["clips"] == 30 and list(score["per_target"]) == list(EMI_TARGETS)
    assert score["per_target"] == pytest.approx(want)
    assert score["mean_pearson"] == pytest.approx(np.mean(list(want.values())))
    assert json.loads((tmp_path / "score.json").read_text()) == score
    main([str(tmp_path / "sub.csv"), str(tmp_path / "gt.csv")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"  {'Admiration':<14} {score['per_target']['Admiration']:+.4f}"
    assert printed[-1] == f"mean Pearson on 30 held-out test clips: {score['mean_pearson']:.4f}"


def test_a_ground_truth_id_missing_from_the_submission_is_an_error(tmp_path):
    truth, submission = _tables(np.random.default_rng(1), 5)
    submission.iloc[1:].to_csv(tmp_path / "sub.csv", index=False)
    truth.to_csv(tmp_path / "gt.csv", index=False)
    with pytest.raises(ValueError, match=r"sub\.csv: 1 ground-truth ids missing, e\.g\. \[100\]"):
        score_submission(tmp_path / "sub.csv", tmp_path / "gt.csv")
