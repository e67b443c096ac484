"""The one scorer: rows labelled for some targets only count for those targets (checked with scipy);
the truth's reader, which rows of a prediction table are scored, the mean over targets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectflow.scoring import (
    MIN_SCORED_ROWS,
    mean_over_targets,
    read_truth,
    score_arrays,
    score_predictions,
    scored_rows,
)
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


def test_read_truth_picks_the_reader_by_the_task_not_the_file_name(tmp_path):
    from affectflow.data import write_manifest

    # a clip task reads the manifest (its own reader), whatever the file is called
    emi = task_spec("emi")
    manifest = pd.DataFrame({"id": [4, 2, 9], "split": ["train", "val", "test"], "subject": "",
                             "media": ["a", "b", "c"]})
    manifest[list(emi.targets)] = [[0.1] * 6, [0.2] * 6, [np.nan] * 6]
    write_manifest(manifest, tmp_path / "labels.txt")
    truth = read_truth(tmp_path / "labels.txt", emi)
    assert list(truth.columns) == ["id", *emi.targets] and list(truth["id"]) == [4, 2]
    # a per-frame task reads the frame label table (csv), even under a .tsv name
    va = task_spec("va")
    pd.DataFrame({"id": [1, 1], "frame": [1, 2], "valence": [0.5, np.nan], "arousal": [0.1, np.nan]}).to_csv(
        tmp_path / "frames.tsv", index=False)
    truth = read_truth(tmp_path / "frames.tsv", va)
    assert truth.to_dict("list") == {"id": [1], "frame": [1], "valence": [0.5], "arousal": [0.1]}
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv: truth table not found"):
        read_truth(tmp_path / "nowhere.csv", va)


def test_read_truth_fails_naming_the_file_and_line(tmp_path):
    va = task_spec("va")
    path = tmp_path / "frame_labels.csv.gz"
    bad = pd.DataFrame({"id": [1, 1, 1], "frame": [1, 2, 2], "valence": [0.1, 0.2, 0.3], "arousal": [0.0, 0.0, 0.0]})
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"frame_labels\.csv\.gz: line 4: duplicate row for \{'id': 1, 'frame': 2\}"):
        read_truth(path, va)
    bad.assign(frame=[1, 2, 3], valence=["0.1", "high", "0.3"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"frame_labels\.csv\.gz: line 3: valence 'high' is not a number"):
        read_truth(path, va)
    bad.assign(frame=[1, 2.5, 3]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"frame_labels\.csv\.gz: line 3: frame 2\.5 is not an integer"):
        read_truth(path, va)


def test_scored_rows_are_the_rows_the_scorer_scores():
    spec = task_spec("va")
    truth = pd.DataFrame({"id": [3, 1, 2, 5], "frame": 1, "valence": [0.1, 0.5, np.nan, 0.3],
                          "arousal": [0.2, np.nan, 0.4, -0.1]})
    pred = pd.DataFrame({"id": [1, 2, 3, 5, 7], "frame": 1, "valence": [0.4, 0.1, 0.2, np.nan, 0.0],
                         "arousal": [0.3, np.nan, 0.1, 0.2, 0.0]})
    rows = scored_rows(pred, truth, spec)
    # id 2 has no target with both a label and a prediction; id 7 has no truth; truth's order kept
    assert rows["id"].tolist() == [3, 1, 5]
    assert list(rows.columns) == ["id", "frame", "valence_true", "arousal_true", "valence_pred", "arousal_pred"]
    assert rows.loc[1, ["valence_true", "valence_pred"]].tolist() == [0.5, 0.4]
    score = score_predictions(pred, truth, spec)
    direct = score_arrays("ccc", rows[["valence_true", "arousal_true"]].to_numpy(),
                          rows[["valence_pred", "arousal_pred"]].to_numpy(), spec.targets)
    assert score["n"] == len(rows) == direct["rows"] == 3
    assert score["per_target"] == direct["per_target"] and score["mean"] == direct["mean"]


def test_the_mean_over_targets_is_plain_and_nan_when_any_target_is():
    assert mean_over_targets({"a": 0.2, "b": 0.4}) == pytest.approx(0.3)
    assert math.isnan(mean_over_targets({"a": 0.2, "b": math.nan}))
    assert math.isnan(mean_over_targets({}))
