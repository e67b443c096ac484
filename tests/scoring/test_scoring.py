"""The one scorer: rows labelled for some targets only count for those targets (checked with scipy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectflow.scoring import MIN_SCORED_ROWS, read_truth, score_arrays, score_predictions
from affectflow.tasks import task_spec


def test_each_target_is_scored_on_its_own_labelled_rows():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(40, 2))
    pred = truth + rng.normal(scale=0.5, size=truth.shape)
    truth[:10, 1] = np.nan  # the second target unlabelled on 10 rows
    pred[35:, 0] = np.nan  # no prediction of the first target on 5 rows
    score = score_arrays("pearson", truth, pred, ["a", "b"])
    assert score["per_target"]["a"] == pytest.approx(pearsonr(truth[:35, 0], pred[:35, 0])[0])
    assert score["per_target"]["b"] == pytest.approx(pearsonr(truth[10:, 1], pred[10:, 1])[0])
    assert score["mean"] == pytest.approx(np.mean(list(score["per_target"].values())))
    assert score["rows"] == 40


def test_too_few_rows_leave_a_target_undefined():
    truth = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, np.nan]])
    score = score_arrays("pearson", truth, truth * 2, ["a", "b"])
    assert MIN_SCORED_ROWS == 2
    assert score["per_target"]["a"] == pytest.approx(1.0)
    assert math.isnan(score["per_target"]["b"]) and math.isnan(score["mean"])


def test_read_truth_keeps_rows_with_any_label_and_scores_a_table(tmp_path):
    spec = task_spec("au")
    targets = list(spec.targets)
    rows = []
    for i in range(6):
        values = {t: float((i + k) % 2) for k, t in enumerate(targets)}
        if i == 0:
            values[targets[0]] = np.nan  # partly labelled: kept
        rows.append({"id": 1, "frame": i + 1, **values})
    rows.append({"id": 1, "frame": 9, **{t: np.nan for t in targets}})  # unlabelled: left out
    pd.DataFrame(rows).to_csv(tmp_path / "frame_labels.csv.gz", index=False)
    truth = read_truth(tmp_path / "frame_labels.csv.gz", spec)
    assert list(truth["frame"]) == [1, 2, 3, 4, 5, 6]
    pred = truth.copy()
    score = score_predictions(pred, truth, spec)
    assert score["n"] == 6 and score["mean"] == pytest.approx(1.0)
