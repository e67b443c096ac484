"""Applying a fitted ensemble (members.json) to fold predictions: the step the test split and any
predicted video set share, checked against the fit's own test table and a hand computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_ensemble_methods import clip_keys, frame_keys, table, write_run

from affectflow.ensemble import EnsembleError, apply_ensemble, build_ensemble
from affectflow.tasks import task_spec

AU, EMI = task_spec("au"), task_spec("emi")


def _au_members(tmp_path, rng):
    """Two AU runs of 2 folds; OOF correlated with the truth; test rows with NaN holes."""
    targets = list(AU.targets)
    keys = frame_keys([1, 2, 3], 40)
    y = (rng.random((len(keys), len(targets))) > 0.6).astype(float)
    test_keys = frame_keys([7, 8], 15)
    dirs = {}
    for name, noise in (("a", 0.3), ("b", 0.6)):
        oof = table(keys, np.clip(y + rng.normal(0, noise, y.shape), 0, 1), targets)
        test = table(test_keys, rng.random((len(test_keys), len(targets))), targets)
        test.loc[test.index[:5], targets[0]] = np.nan  # a member without a prediction for some rows
        dirs[name] = write_run(tmp_path / "runs", name, oof, test, test_noise=0.05, rng=rng)
    truth = table(keys, y, targets)
    return dirs, truth


def test_apply_equals_the_fits_test_table_with_weights_and_thresholds(tmp_path):
    dirs, truth = _au_members(tmp_path, np.random.default_rng(0))
    out = tmp_path / "ens"
    build_ensemble(dirs, truth, out, spec=AU, method="weighted", thresholds=True)
    applied = apply_ensemble(out / "members.json", {n: [f"{d}/test.csv" for d in ds] for n, ds in dirs.items()},
                             task="au")
    written = pd.read_csv(out / "test.csv")
    assert list(applied.columns) == list(written.columns)
    np.testing.assert_allclose(applied.to_numpy(float), written.to_numpy(float), atol=5e-7, equal_nan=True)
    assert set(np.unique(applied[list(AU.targets)].to_numpy()[np.isfinite(applied[list(AU.targets)])])) <= {0, 1}


def test_apply_by_hand_weighted_mean_renormalised_over_members_that_predict(tmp_path):
    targets = list(EMI.targets)
    keys = clip_keys(4)
    a = [table(keys, np.full((4, 6), 0.2), targets), table(keys, np.full((4, 6), 0.4), targets)]  # fold mean 0.3
    b = [table(keys, np.full((4, 6), 0.9), targets)]
    a[1].loc[0, targets] = np.nan  # fold 1 of a has no row 1: a's mean there is fold 0's 0.2
    b[0].loc[1, targets] = np.nan  # b has no row 2: a alone
    paths = {}
    for name, folds in (("a", a), ("b", b)):
        paths[name] = []
        for k, frame in enumerate(folds):
            path = tmp_path / f"{name}{k}.csv"
            frame.to_csv(path, index=False)
            paths[name].append(path)
    weights = {t: {"a": 0.25, "b": 0.75} for t in targets}
    (tmp_path / "members.json").write_text(json.dumps({"members": ["a", "b"], "weights": weights,
                                                        "thresholds": None, "task": "emi"}))
    out = apply_ensemble(tmp_path / "members.json", paths, task="emi")
    expected = [0.25 * 0.2 + 0.75 * 0.9, 0.3, 0.25 * 0.3 + 0.75 * 0.9, 0.25 * 0.3 + 0.75 * 0.9]
    np.testing.assert_allclose(out["Joy"].to_numpy(), expected)
    with pytest.raises(EnsembleError, match="members"):
        apply_ensemble(tmp_path / "members.json", {"a": paths["a"]}, task="emi")
    with pytest.raises(EnsembleError, match="task 'emi'"):
        apply_ensemble(tmp_path / "members.json", paths, task="eri")
