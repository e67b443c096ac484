"""Tests of the OOF-fitted ensembles: mean, weighted (NNLS), greedy (Caruana), best, AU thresholds.

Each fitted quantity is checked against an independent computation: scipy's NNLS and Pearson,
scikit-learn's F1, numpy means over the fold files written by the test itself.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from affectflow.ensemble import (
    ENSEMBLERS,
    THRESHOLD_GRID,
    EnsembleError,
    build_ensemble,
    build_ensemble_job,
    combine,
    run_predictions,
    tune_thresholds,
)
from affectflow.metrics import AU_THRESHOLD
from affectflow.registry import UnknownNameError
from affectflow.scoring import MIN_SCORED_ROWS, read_truth
from affectflow.tasks import key_columns, task_spec

EMI, VA, AU = task_spec("emi"), task_spec("va"), task_spec("au")


def write_run(root, name, oof: pd.DataFrame, test: pd.DataFrame, *, k=2, test_noise=0.0, rng=None):
    """Split ``oof`` into ``k`` fold dirs (rows by position); each fold's test = ``test`` (+ noise)."""
    dirs = []
    for fold in range(k):
        d = root / name / f"fold{fold}"
        d.mkdir(parents=True)
        oof.iloc[fold::k].to_csv(d / "oof.csv", index=False)
        t = test.copy()
        if test_noise:
            cols = [c for c in t.columns if c not in ("id", "frame")]
            t[cols] = t[cols] + rng.normal(0, test_noise, t[cols].shape)
        t.to_csv(d / "test.csv", index=False)
        dirs.append(str(d))
    return dirs


def table(keys: pd.DataFrame, values: np.ndarray, targets) -> pd.DataFrame:
    frame = keys.reset_index(drop=True).copy()
    frame[list(targets)] = values
    return frame


def clip_keys(n, start=1):
    return pd.DataFrame({"id": np.arange(start, start + n)})


def frame_keys(videos, frames):
    return pd.DataFrame([(v, f) for v in videos for f in range(1, frames + 1)], columns=["id", "frame"])


def read_out(out):
    return (pd.read_csv(out / "oof.csv"), pd.read_csv(out / "test.csv"),
            json.loads((out / "members.json").read_text()), json.loads((out / "score.json").read_text()))


# -- weighted: NNLS ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [VA, EMI], ids=["ccc-raw", "pearson-centred"])
def test_weighted_matches_scipy_nnls_on_planted_mixture(tmp_path, spec):
    rng = np.random.default_rng(0)
    n, targets = 600, list(spec.targets)
    keys = frame_keys(range(1, 7), 100) if spec.per_frame else clip_keys(n)
    a, b, c = (rng.uniform(-1, 1, (n, len(targets))) for _ in range(3))
    y = 0.7 * a + 0.3 * b + rng.normal(0, 0.05, (n, len(targets)))
    test_keys = frame_keys([50], 10) if spec.per_frame else clip_keys(10, start=1000)
    members = {name: write_run(tmp_path, name, table(keys, p, targets),
                               table(test_keys, rng.uniform(-1, 1, (10, len(targets))), targets))
               for name, p in (("a", a), ("b", b), ("c", c))}
    build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=spec, method="weighted")
    oof, _, chosen, score = read_out(tmp_path / "out")

    for j, t in enumerate(targets):
        design, rhs = np.column_stack([a[:, j], b[:, j], c[:, j]]), y[:, j]
        if spec.metric == "pearson":  # documented: centred for Pearson
            design, rhs = design - design.mean(axis=0), rhs - rhs.mean()
        expected, _ = nnls(design, rhs)
        expected /= expected.sum()
        got = np.array([chosen["weights"][t][m] for m in ("a", "b", "c")])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert got.min() >= 0 and got.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(got, [0.7, 0.3, 0.0], atol=0.03)
        raw = np.column_stack([a[:, j], b[:, j], c[:, j]])
        np.testing.assert_allclose(oof[t].to_numpy(), raw @ got, atol=2e-6)
    assert score["oof"]["rows"] == n
    assert score["oof"]["mean"] > max(score["members"][m]["mean"] for m in "abc")


# -- greedy: Caruana forward selection -------------------------------------------------------------


def test_greedy_prefers_better_member_and_never_loses_to_first_pick(tmp_path):
    rng = np.random.default_rng(1)
    n, targets = 300, list(EMI.targets)
    keys = clip_keys(n)
    y = rng.uniform(0, 1, (n, len(targets)))
    preds = {"good": y + rng.normal(0, 0.3, y.shape), "fair": y + rng.normal(0, 0.6, y.shape),
             "noise": rng.uniform(0, 1, y.shape)}
    test = table(clip_keys(4, 900), np.zeros((4, len(targets))), targets)
    members = {m: write_run(tmp_path, m, table(keys, p, targets), test) for m, p in preds.items()}
    build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=EMI, method="greedy",
                   params={"rounds": 10})
    oof, _, chosen, score = read_out(tmp_path / "out")
    assert chosen["params"] == {"rounds": 10}
    for j, t in enumerate(targets):
        w = chosen["weights"][t]
        assert w["good"] > w["fair"] >= 0 and w["good"] > w["noise"]
        assert sum(w.values()) == pytest.approx(1.0)
        # selection counts of at most 10 rounds: weights are counts / c for some c <= 10
        assert any(all(abs(v * c - round(v * c)) < 1e-9 for v in w.values()) for c in range(1, 11))
        first_pick = max(pearsonr(y[:, j], p[:, j])[0] for p in preds.values())
        ensemble_r = pearsonr(y[:, j], oof[t].to_numpy())[0]
        assert ensemble_r >= first_pick - 1e-5
        assert score["oof"]["per_target"][t] == pytest.approx(ensemble_r, abs=1e-5)


def test_greedy_with_replacement_can_repeat_a_member():
    rng = np.random.default_rng(2)
    y = rng.normal(size=400)
    strong, weak = y + rng.normal(0, 0.2, 400), y + rng.normal(0, 2.0, 400)
    w = ENSEMBLERS.get("greedy")(np.vstack([strong, weak]), y, metric="ccc", rounds=8)
    # the weak member only hurts: the best prefix is the strong member alone (picked repeatedly)
    np.testing.assert_allclose(w, [1.0, 0.0])


# -- best per target ------------------------------------------------------------------------------


def test_best_picks_a_different_member_per_target(tmp_path):
    rng = np.random.default_rng(3)
    n, targets = 200, list(VA.targets)
    keys = frame_keys(range(1, 5), 50)
    y = rng.uniform(-1, 1, (n, 2))
    face = np.column_stack([y[:, 0] + rng.normal(0, 0.1, n), rng.uniform(-1, 1, n)])  # good valence
    voice = np.column_stack([rng.uniform(-1, 1, n), y[:, 1] + rng.normal(0, 0.1, n)])  # good arousal
    test = table(frame_keys([9], 3), np.zeros((3, 2)), targets)
    members = {"face": write_run(tmp_path, "face", table(keys, face, targets), test),
               "voice": write_run(tmp_path, "voice", table(keys, voice, targets), test)}
    build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=VA, method="best")
    oof, _, chosen, _ = read_out(tmp_path / "out")
    assert chosen["weights"]["valence"] == {"face": 1.0, "voice": 0.0}
    assert chosen["weights"]["arousal"] == {"face": 0.0, "voice": 1.0}
    np.testing.assert_allclose(oof["valence"], face[:, 0], atol=2e-6)
    np.testing.assert_allclose(oof["arousal"], voice[:, 1], atol=2e-6)


# -- fold averaging on test ------------------------------------------------------------------------


def test_run_test_predictions_are_numpy_mean_over_fold_files(tmp_path):
    rng = np.random.default_rng(4)
    targets = list(EMI.targets)
    oof = table(clip_keys(30), rng.uniform(0, 1, (30, 6)), targets)
    test = table(clip_keys(5, 500), rng.uniform(0, 1, (5, 6)), targets)
    dirs = write_run(tmp_path, "run", oof, test, k=3, test_noise=0.1, rng=rng)
    # one fold model could not predict clip 502 (NaN): the others still average
    t2 = pd.read_csv(f"{dirs[2]}/test.csv")
    t2.loc[t2["id"] == 502, targets] = np.nan
    t2.to_csv(f"{dirs[2]}/test.csv", index=False)

    run_oof, run_test = run_predictions(dirs, EMI)
    stacked = np.stack([pd.read_csv(f"{d}/test.csv").sort_values("id")[targets].to_numpy() for d in dirs])
    np.testing.assert_allclose(run_test[targets].to_numpy(), np.nanmean(stacked, axis=0), atol=1e-12)
    assert list(run_test["id"]) == list(range(500, 505))
    assert list(run_oof["id"]) == list(range(1, 31))
    np.testing.assert_allclose(run_oof[targets].to_numpy(), oof[targets].to_numpy())

    build_ensemble({"run": dirs}, oof, tmp_path / "out", spec=EMI, method="mean")
    written = pd.read_csv(tmp_path / "out" / "test.csv")
    np.testing.assert_allclose(written[targets].to_numpy(), np.nanmean(stacked, axis=0), atol=1e-6)


def test_a_member_trained_on_every_labelled_clip_joins_a_mean_and_is_refused_by_fitted_methods(tmp_path):
    # fold_scheme mix (Hallmen et al. 2024's train+val model): one fold, an oof.csv with no row
    rng = np.random.default_rng(5)
    targets = list(EMI.targets)
    truth = table(clip_keys(30), rng.uniform(0, 1, (30, 6)), targets)
    test = table(clip_keys(4, 500), rng.uniform(0, 1, (4, 6)), targets)
    mix = write_run(tmp_path, "mix", truth.iloc[:0], test, k=1)
    scored = write_run(tmp_path, "scored", truth.assign(**{t: truth[t] + rng.normal(0, 0.1, 30) for t in targets}),
                        test.assign(**{t: test[t] + 0.2 for t in targets}), k=2)
    # alone: its test predictions pass through, and the OOF score is undefined, not invented
    score = build_ensemble({"mix": mix}, truth, tmp_path / "alone", spec=EMI, method="mean")
    oof, written, _, saved = read_out(tmp_path / "alone")
    assert oof.empty and score["oof"]["rows"] == 0 and saved["oof"]["mean"] is None
    assert saved["unscored_members"] == ["mix"]
    np.testing.assert_allclose(written[targets].to_numpy(), test[targets].to_numpy(), atol=1e-6)
    # with a scored member: the test rows average both, the OOF rows are the scored member's
    score = build_ensemble({"mix": mix, "scored": scored}, truth, tmp_path / "both", spec=EMI, method="mean")
    oof, written, _, _ = read_out(tmp_path / "both")
    np.testing.assert_allclose(written[targets].to_numpy(), test[targets].to_numpy() + 0.1, atol=1e-6)
    assert score["oof"]["rows"] == 30 and score["oof"]["mean"] == pytest.approx(score["members"]["scored"]["mean"])
    assert score["unscored_members"] == ["mix"]
    for method in ("weighted", "greedy", "best"):
        with pytest.raises(EnsembleError, match=r"member\(s\) \['mix'\] have no out-of-fold rows.*" + method):
            build_ensemble({"mix": mix, "scored": scored}, truth, tmp_path / method, spec=EMI, method=method)


def test_a_row_predicted_by_two_folds_is_an_error_naming_them(tmp_path):
    targets = list(EMI.targets)
    oof = table(clip_keys(4), np.zeros((4, 6)), targets)
    dirs = write_run(tmp_path, "run", oof, oof.iloc[:1], k=2)
    pd.concat([oof.iloc[0::2], oof.iloc[1:2]]).to_csv(f"{dirs[0]}/oof.csv", index=False)
    with pytest.raises(EnsembleError, match=r"more than one fold: .*fold0.*fold1"):
        run_predictions(dirs, EMI)


# -- AU thresholds -----------------------------------------------------------------------------


def test_au_thresholds_improve_f1_and_match_sklearn(tmp_path):
    rng = np.random.default_rng(5)
    targets = list(AU.targets)
    keys = frame_keys(range(1, 9), 150)
    n = len(keys)
    y = (rng.uniform(size=(n, 12)) < np.linspace(0.05, 0.5, 12)).astype(float)
    # under-confident members: the best cut is well below 0.5 for most AUs
    probs = [np.clip(0.35 * y + rng.uniform(0, 0.5, (n, 12)), 0, 1) for _ in range(2)]
    test_keys = frame_keys([77], 20)
    test_probs = [rng.uniform(0, 1, (20, 12)) for _ in range(2)]
    members = {f"m{i}": write_run(tmp_path, f"m{i}", table(keys, p, targets), table(test_keys, tp, targets))
               for i, (p, tp) in enumerate(zip(probs, test_probs, strict=True))}
    truth = table(keys, y, targets)
    build_ensemble(members, truth, tmp_path / "out", spec=AU, method="mean", thresholds=True)
    oof, test, chosen, score = read_out(tmp_path / "out")

    mean_prob = (probs[0] + probs[1]) / 2
    assert set(np.unique(oof[targets].to_numpy())) <= {0.0, 1.0}
    assert set(np.unique(test[targets].to_numpy())) <= {0.0, 1.0}
    for j, t in enumerate(targets):
        cut = chosen["thresholds"][t]
        assert cut in THRESHOLD_GRID
        at_half = f1_score(y[:, j], mean_prob[:, j] >= 0.5, zero_division=0)
        by_grid = [f1_score(y[:, j], mean_prob[:, j] >= g, zero_division=0) for g in THRESHOLD_GRID]
        tuned = f1_score(y[:, j], oof[t].to_numpy(), zero_division=0)
        assert tuned == pytest.approx(max(by_grid), abs=1e-9)
        assert tuned >= at_half
        assert score["oof"]["per_target"][t] == pytest.approx(tuned, abs=1e-9)
        assert score["oof_at_0.5"]["per_target"][t] == pytest.approx(at_half, abs=1e-9)
        # test rows are binarised with the same OOF-tuned cut
        mean_test = (test_probs[0][:, j] + test_probs[1][:, j]) / 2
        np.testing.assert_array_equal(test[t].to_numpy(), (np.round(mean_test, 6) >= cut).astype(float))
    assert score["oof"]["mean"] > score["oof_at_0.5"]["mean"]
    assert score["thresholds"] == chosen["thresholds"]
    # the thresholds were fitted on the rows the OOF score is measured on: it says it is in-sample
    assert score["in_sample"] is True
    assert "thresholds" in score["in_sample_note"] and "in-sample" in score["in_sample_note"]
    assert "weights" not in score["in_sample_note"]  # mean: nothing else was fitted


@pytest.mark.parametrize(("method", "thresholds", "fitted"), [
    ("mean", False, []), ("mean", True, ["thresholds"]), ("weighted", False, ["weights"]),
    ("greedy", True, ["thresholds", "weights"]),
])
def test_oof_score_says_when_it_is_in_sample(tmp_path, method, thresholds, fitted):
    """Thresholds tuned or weights fitted on the OOF rows make their OOF score in-sample; the mean
    at the challenge's 0.5 fits nothing (Deng et al. 2023, 004: no tuned thresholds)."""
    rng = np.random.default_rng(6)
    targets = list(AU.targets)
    keys = frame_keys(range(1, 5), 60)
    y = (rng.uniform(size=(len(keys), 12)) < 0.3).astype(float)
    test = table(frame_keys([9], 5), np.full((5, 12), 0.5), targets)
    members = {}
    for i in range(2):
        oof = table(keys, np.clip(0.4 * y + rng.uniform(0, 0.6, y.shape), 0, 1), targets)
        members[f"m{i}"] = write_run(tmp_path, f"m{i}", oof, test)
    score = build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=AU, method=method,
                           thresholds=thresholds)
    saved = json.loads((tmp_path / "out" / "score.json").read_text())
    for result in (score, saved):
        assert result["in_sample"] is bool(fitted)
        note = result["in_sample_note"]
        if not fitted:
            assert note is None
            continue
        assert "in-sample" in note
        assert ("thresholds" in note) == ("thresholds" in fitted) and ("weights" in note) == ("weights" in fitted)
    assert ("oof_at_0.5" in saved) == thresholds


def test_thresholds_need_a_binary_task(tmp_path):
    with pytest.raises(EnsembleError, match="binary task"):
        build_ensemble({"a": []}, pd.DataFrame(columns=["id", *EMI.targets]), tmp_path, spec=EMI,
                       method="mean", thresholds=True)


# -- alignment and missing predictions --------------------------------------------------------


def test_per_frame_members_in_different_row_orders_align_on_id_and_frame(tmp_path):
    rng = np.random.default_rng(6)
    targets = list(VA.targets)
    keys = frame_keys([11, 3, 7], 40)
    y = rng.uniform(-1, 1, (len(keys), 2))
    a = table(keys, rng.uniform(-1, 1, (len(keys), 2)), targets)
    b = table(keys, rng.uniform(-1, 1, (len(keys), 2)), targets).sample(frac=1, random_state=1)
    test = table(frame_keys([20], 5), rng.uniform(-1, 1, (5, 2)), targets)
    members = {"a": write_run(tmp_path, "a", a, test), "b": write_run(tmp_path, "b", b, test.iloc[::-1])}
    truth = table(keys, y, targets).sample(frac=1, random_state=2)
    build_ensemble(members, truth, tmp_path / "out", spec=VA, method="mean")
    oof, written_test, _, score = read_out(tmp_path / "out")

    merged = a.merge(b, on=["id", "frame"], suffixes=("_a", "_b")).sort_values(["id", "frame"])
    assert list(oof.columns) == key_columns(VA) + targets
    np.testing.assert_array_equal(oof[["id", "frame"]].to_numpy(), merged[["id", "frame"]].to_numpy())
    for t in targets:
        np.testing.assert_allclose(oof[t].to_numpy(), (merged[f"{t}_a"] + merged[f"{t}_b"]).to_numpy() / 2,
                                   atol=2e-6)
    np.testing.assert_allclose(written_test[targets].to_numpy(), test[targets].to_numpy(), atol=2e-6)
    # score against truth joined by key, not by position
    joined = merged.merge(truth, on=["id", "frame"])
    for t in targets:
        pred = (joined[f"{t}_a"] + joined[f"{t}_b"]) / 2
        t_, p_ = joined[t].to_numpy(), pred.to_numpy()
        ccc = 2 * np.cov(t_, p_, bias=True)[0, 1] / (t_.var() + p_.var() + (t_.mean() - p_.mean()) ** 2)
        assert score["oof"]["per_target"][t] == pytest.approx(ccc, abs=1e-5)


def test_missing_predictions_renormalise_the_weights(tmp_path):
    rng = np.random.default_rng(7)
    targets = list(EMI.targets)
    n = 200
    keys = clip_keys(n)
    a, b = rng.uniform(0, 1, (n, 6)), rng.uniform(0, 1, (n, 6))
    y = 0.6 * a + 0.4 * b + rng.normal(0, 0.02, (n, 6))
    b_nan, both_nan = [5, 17], 30
    b_oof = table(keys, b, targets)
    b_oof.loc[b_oof["id"].isin(b_nan + [both_nan]), targets] = np.nan
    a_oof = table(keys, a, targets)
    a_oof.loc[a_oof["id"] == both_nan, targets] = np.nan
    test_keys = clip_keys(3, 900)
    a_test, b_test = rng.uniform(0, 1, (3, 6)), rng.uniform(0, 1, (3, 6))
    b_test_table = table(test_keys, b_test, targets).iloc[:2]  # clip 902 missing from run b entirely
    members = {"a": write_run(tmp_path, "a", a_oof, table(test_keys, a_test, targets)),
               "b": write_run(tmp_path, "b", b_oof, b_test_table)}
    build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=EMI, method="weighted")
    oof, test, chosen, _ = read_out(tmp_path / "out")
    oof, test = oof.set_index("id"), test.set_index("id")

    # weights were fitted on the rows both members predict
    both = ~np.isin(keys["id"], b_nan + [both_nan])
    for j, t in enumerate(targets):
        design = np.column_stack([a[both, j], b[both, j]])
        expected, _ = nnls(design - design.mean(0), y[both, j] - y[both, j].mean())
        wa, wb = expected / expected.sum()
        assert chosen["weights"][t] == pytest.approx({"a": wa, "b": wb}, abs=1e-6)
        assert oof.loc[1, t] == pytest.approx(wa * a[0, j] + wb * b[0, j], abs=2e-6)
        for i in b_nan:  # only a predicts: a's value, renormalised weight 1
            assert oof.loc[i, t] == pytest.approx(a[i - 1, j], abs=2e-6)
        assert np.isnan(oof.loc[both_nan, t])
        assert test.loc[902, t] == pytest.approx(a_test[2, j], abs=2e-6)
        assert test.loc[900, t] == pytest.approx(wa * a_test[0, j] + wb * b_test[0, j], abs=2e-6)
    assert list(oof.index) == list(range(1, n + 1))


def test_combine_falls_back_to_plain_mean_when_predicting_members_have_zero_weight():
    preds = np.array([[1.0, np.nan, np.nan, 4.0], [3.0, 5.0, np.nan, 6.0], [7.0, 9.0, np.nan, np.nan]])
    weights = np.array([1.0, 0.0, 0.0])
    out = combine(preds, weights)
    np.testing.assert_allclose(out[[0, 3]], [1.0, 4.0])
    assert out[1] == pytest.approx(7.0)  # only zero-weight members predict: their mean
    assert np.isnan(out[2])


# -- outputs for every registered method -------------------------------------------------------


@pytest.mark.parametrize("method", ENSEMBLERS.names())
def test_every_method_writes_outputs_with_weights_summing_to_one(tmp_path, method):
    rng = np.random.default_rng(8)
    targets = list(VA.targets)
    keys = frame_keys(range(1, 4), 30)
    y = rng.uniform(-1, 1, (len(keys), 2))
    test = table(frame_keys([9], 4), rng.uniform(-1, 1, (4, 2)), targets)
    members = {m: write_run(tmp_path, m, table(keys, y + rng.normal(0, s, y.shape), targets), test)
               for m, s in (("a", 0.3), ("b", 0.6), ("c", 1.0))}
    score = build_ensemble(members, table(keys, y, targets), tmp_path / "out", spec=VA, method=method)
    oof, written_test, chosen, saved = read_out(tmp_path / "out")
    assert len(oof) == len(keys) and len(written_test) == 4
    assert chosen["method"] == saved["method"] == method and chosen["members"] == ["a", "b", "c"]
    for t in targets:
        w = chosen["weights"][t]
        assert set(w) == {"a", "b", "c"} and min(w.values()) >= 0
        assert sum(w.values()) == pytest.approx(1.0)
    assert saved["weights"] == chosen["weights"]
    assert set(saved["members"]) == {"a", "b", "c"} and saved["oof"]["rows"] == len(keys)
    assert saved["oof"]["mean"] == pytest.approx(score["oof"]["mean"])
    assert set(saved["oof"]) == {"per_target", "mean", "rows"}


# -- bad input ---------------------------------------------------------------------------------


def test_unknown_method_and_parameter_fail_listing_the_known(tmp_path):
    with pytest.raises(UnknownNameError, match="known: best, greedy, mean, weighted"):
        build_ensemble({"a": []}, pd.DataFrame(columns=["id", *EMI.targets]), tmp_path, spec=EMI,
                       method="stacking")
    with pytest.raises(EnsembleError, match=r"unknown parameter\(s\) \['round'\]; accepted: \['rounds'\]"):
        build_ensemble({"a": []}, pd.DataFrame(columns=["id", *EMI.targets]), tmp_path, spec=EMI,
                       method="greedy", params={"round": 3})


def test_bad_prediction_table_names_file_and_line(tmp_path):
    targets = list(EMI.targets)
    oof = table(clip_keys(4), np.zeros((4, 6)), targets).astype({t: object for t in targets})
    oof.loc[2, "Joy"] = "oops"
    dirs = write_run(tmp_path, "run", oof, oof.iloc[:1].astype({t: float for t in targets if t != "Joy"}), k=1)
    with pytest.raises(EnsembleError, match=r"fold0/oof\.csv: line 4: Joy 'oops' is not a number"):
        run_predictions(dirs, EMI)
    missing = tmp_path / "nowhere"
    with pytest.raises(EnsembleError, match="nowhere/oof.csv: prediction table not found"):
        run_predictions([missing], EMI)


def test_read_truth_from_frame_labels_and_manifest(tmp_path):
    # the ensemble's truth is the shared scorer's (affectflow.scoring.read_truth)
    from affectflow.data import write_manifest

    labels = table(frame_keys([1, 2], 3), np.arange(12).reshape(6, 2) / 10, VA.targets)
    labels.to_csv(tmp_path / "frame_labels.csv.gz", index=False)
    pd.testing.assert_frame_equal(read_truth(tmp_path / "frame_labels.csv.gz", VA), labels)

    manifest = pd.DataFrame({"id": [1, 2, 3], "split": ["train", "val", "test"], "subject": "",
                             "media": ["a", "b", "c"]})
    manifest[list(EMI.targets)] = [[0.1] * 6, [0.2] * 6, [np.nan] * 6]
    write_manifest(manifest, tmp_path / "manifest.tsv")
    truth = read_truth(tmp_path / "manifest.tsv", EMI)
    assert list(truth.columns) == ["id", *EMI.targets] and list(truth["id"]) == [1, 2]
    with pytest.raises(ValueError, match="manifest.tsv: missing column"):
        read_truth(tmp_path / "manifest.tsv", VA)


def _ccc(y, p):
    return 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


@pytest.mark.parametrize("metric", ["pearson", "ccc"])
def test_greedy_keeps_the_best_prefix_of_the_selection_on_small_noisy_problems(metric):
    # On tiny noisy problems later forced additions often lower the score: Caruana's rule keeps
    # the best-scoring prefix of the selection, never worse than the first pick.
    rng = np.random.default_rng(9)
    fit = ENSEMBLERS.get("greedy")
    score = (lambda y, p: pearsonr(y, p)[0]) if metric == "pearson" else _ccc
    for _ in range(40):
        y = rng.normal(size=8)
        preds = y + rng.normal(0, 2.0, (4, 8))
        w = fit(preds, y, metric=metric, rounds=7)
        # independent forward selection with replacement, recording every prefix's score
        total, prefix_scores = np.zeros(8), []
        for r in range(1, 8):
            cand = [score(y, (total + p) / r) for p in preds]
            total += preds[int(np.argmax(cand))]
            prefix_scores.append(max(cand))
        assert score(y, w @ preds) == pytest.approx(max(prefix_scores), abs=1e-9)
        assert score(y, w @ preds) >= max(score(y, p) for p in preds) - 1e-12


# -- integer keys, the minimum of rows, partially labelled truth --------------------------------


def test_non_integer_keys_name_the_table_and_line(tmp_path):
    targets = list(EMI.targets)
    oof = table(clip_keys(4), np.zeros((4, 6)), targets).astype({"id": object})
    oof.loc[1, "id"] = "3a"
    dirs = write_run(tmp_path, "run", oof, table(clip_keys(1, 50), np.zeros((1, 6)), targets), k=1)
    with pytest.raises(EnsembleError, match=r"fold0/oof\.csv: line 3: id '3a' is not an integer"):
        run_predictions(dirs, EMI)
    good = table(clip_keys(4), np.zeros((4, 6)), targets)
    dirs = write_run(tmp_path, "good", good, table(clip_keys(1, 50), np.zeros((1, 6)), targets), k=1)
    truth = good.astype({"id": object})
    truth.loc[2, "id"] = "x"
    with pytest.raises(EnsembleError, match=r"truth table: line 4: id 'x' is not an integer"):
        build_ensemble({"good": dirs}, truth, tmp_path / "out", spec=EMI, method="mean")


def test_fitting_weights_needs_the_minimum_of_scored_rows(tmp_path):
    targets = list(EMI.targets)
    rng = np.random.default_rng(10)
    keys = clip_keys(6)
    members = {m: write_run(tmp_path, m, table(keys, rng.uniform(0, 1, (6, 6)), targets),
                            table(clip_keys(2, 90), rng.uniform(0, 1, (2, 6)), targets)) for m in "ab"}
    truth = table(keys, rng.uniform(0, 1, (6, 6)), targets)
    truth.loc[truth.index[MIN_SCORED_ROWS - 1:], "Joy"] = np.nan  # Joy labelled on one row too few
    with pytest.raises(EnsembleError, match=rf"weighted: target 'Joy' has {MIN_SCORED_ROWS - 1} OOF row\(s\).*"
                                            rf"at least {MIN_SCORED_ROWS} are needed"):
        build_ensemble(members, truth, tmp_path / "out", spec=EMI, method="weighted")
    # equal weights need no fit: the mean ensemble still builds, Joy's score undefined (null)
    build_ensemble(members, truth, tmp_path / "out", spec=EMI, method="mean")
    _, _, chosen, score = read_out(tmp_path / "out")
    assert chosen["fit_rows"]["Joy"] == MIN_SCORED_ROWS - 1 and chosen["fit_rows"]["Admiration"] == 6
    assert score["oof"]["per_target"]["Joy"] is None and score["oof"]["mean"] is None


def test_a_row_labelled_for_some_targets_is_scored_for_those(tmp_path):
    rng = np.random.default_rng(11)
    targets = list(VA.targets)
    keys = frame_keys([1, 2], 50)
    y = rng.uniform(-1, 1, (100, 2))
    pred = y + rng.normal(0, 0.3, y.shape)
    members = {"a": write_run(tmp_path, "a", table(keys, pred, targets), table(frame_keys([9], 3), np.zeros((3, 2)),
                                                                               targets))}
    truth = table(keys, y, targets)
    truth.loc[truth.index[:30], "arousal"] = np.nan  # valence labelled on every row, arousal on 70
    score = build_ensemble(members, truth, tmp_path / "out", spec=VA, method="mean")
    written = pd.read_csv(tmp_path / "out" / "oof.csv")
    v_true, v_pred = y[:, 0], written["valence"].to_numpy()
    a_true, a_pred = y[30:, 1], written["arousal"].to_numpy()[30:]
    assert score["oof"]["per_target"]["valence"] == pytest.approx(_ccc(v_true, v_pred), abs=1e-5)
    assert score["oof"]["per_target"]["arousal"] == pytest.approx(_ccc(a_true, a_pred), abs=1e-5)
    assert score["oof"]["rows"] == 100 and score["members"]["a"]["rows"] == 100


def test_ensemble_job_reads_the_truth_and_matches_build_ensemble(tmp_path):
    from affectflow.data import write_manifest

    rng = np.random.default_rng(12)
    targets = list(EMI.targets)
    keys = clip_keys(40)
    y = rng.uniform(0, 1, (40, 6))
    members = {m: write_run(tmp_path, m, table(keys, y + rng.normal(0, s, y.shape), targets),
                            table(clip_keys(3, 100), rng.uniform(0, 1, (3, 6)), targets))
               for m, s in (("a", 0.2), ("b", 0.5))}
    manifest = pd.DataFrame({"id": list(range(1, 44)), "split": ["train"] * 40 + ["test"] * 3, "subject": "",
                             "media": [f"m{i}" for i in range(43)]})
    manifest[targets] = np.vstack([y, np.full((3, 6), np.nan)])
    write_manifest(manifest, tmp_path / "manifest.tsv")
    score = build_ensemble_job(members, tmp_path / "manifest.tsv", tmp_path / "job", task="emi", method="greedy",
                               params={"rounds": 5}, thresholds=False)
    direct = build_ensemble(members, read_truth(tmp_path / "manifest.tsv", EMI), tmp_path / "direct", spec=EMI,
                            method="greedy", params={"rounds": 5})
    assert score == direct and score["oof"]["rows"] == 40
    for name in ("oof.csv", "test.csv", "members.json", "score.json"):
        assert (tmp_path / "job" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()


def test_workflow_script_runs_the_ensemble_job_of_the_rule(tmp_path):
    # the contract the ensemble rule wires: input.truth, output.score, params members, method,
    # method_params, thresholds, task
    import logging
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    from affectflow.data import write_manifest

    rng = np.random.default_rng(13)
    targets = list(EMI.targets)
    keys = clip_keys(20)
    y = rng.uniform(0, 1, (20, 6))
    members = {m: write_run(tmp_path, m, table(keys, y + rng.normal(0, 0.3, y.shape), targets),
                            table(clip_keys(2, 100), rng.uniform(0, 1, (2, 6)), targets)) for m in "ab"}
    manifest = pd.DataFrame({"id": range(1, 21), "split": "train", "subject": "", "media": "m"})
    manifest[targets] = y
    write_manifest(manifest, tmp_path / "manifest.tsv")
    out = tmp_path / "ensemble" / "late"
    fake = SimpleNamespace(
        input=SimpleNamespace(truth=str(tmp_path / "manifest.tsv")),
        output=SimpleNamespace(score=str(out / "score.json")),
        log=[str(tmp_path / "ensemble.log")],
        params=SimpleNamespace(members=members, method="weighted", method_params={}, thresholds=False, task="emi",
                               test=False),
    )
    scripts = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
    runpy.run_path(str(scripts / "ensemble.py"), init_globals={"snakemake": fake})
    logging.getLogger("affectflow").handlers.clear()  # the script pointed it at the log file
    saved = json.loads((out / "score.json").read_text())
    assert saved["method"] == "weighted" and saved["oof"]["rows"] == 20
    # fitted on OOF only; the test split is the apply rule's (ensemble_test), as any predicted set
    assert sorted(p.name for p in out.iterdir()) == ["members.json", "oof.csv", "score.json"]
    assert "OOF pearson" in (tmp_path / "ensemble.log").read_text()
    tables = {m: [f"{d}/test.csv" for d in dirs] for m, dirs in members.items()}
    apply = SimpleNamespace(input=SimpleNamespace(members=str(out / "members.json")), output=[str(out / "test.csv")],
                            log=[str(tmp_path / "apply.log")], params=SimpleNamespace(tables=tables, task="emi"))
    runpy.run_path(str(scripts / "apply_ensemble.py"), init_globals={"snakemake": apply})
    logging.getLogger("affectflow").handlers.clear()
    build_ensemble(members, read_truth(tmp_path / "manifest.tsv", EMI), tmp_path / "whole", spec=EMI,
                   method="weighted")  # fit and apply in one call: the same table
    pd.testing.assert_frame_equal(pd.read_csv(out / "test.csv"), pd.read_csv(tmp_path / "whole" / "test.csv"))


def test_tune_thresholds_scores_with_the_metrics_f1_ties_and_empty_columns_take_the_rule():
    # brute force with scikit-learn's F1 on random columns with NaN rows and tied grid scores
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(5, 80))
        y = rng.integers(0, 2, (n, 3)).astype(float)
        p = np.round(rng.uniform(0, 1, (n, 3)), 1)  # coarse probabilities: many tied thresholds
        y[rng.uniform(size=y.shape) < 0.2] = np.nan
        p[rng.uniform(size=p.shape) < 0.1] = np.nan
        chosen = tune_thresholds(y, p, ["a", "b", "c"])
        for j, name in enumerate("abc"):
            ok = np.isfinite(y[:, j]) & np.isfinite(p[:, j])
            by_grid = {g: f1_score(y[ok, j], p[ok, j] >= g, zero_division=0) if ok.any() else 0.0
                       for g in THRESHOLD_GRID}
            best = max(by_grid.values())
            closest = min((g for g, f in by_grid.items() if f == best), key=lambda g: (abs(g - AU_THRESHOLD), g))
            assert chosen[name] == closest
    # no usable row (a), F1 0 at every cut (b), F1 undefined at every cut (c): the challenge's threshold
    y = np.array([[np.nan, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    p = np.array([[0.3, 0.99, 0.0], [0.7, 0.99, 0.01]])
    assert tune_thresholds(y, p, ["a", "b", "c"]) == {"a": AU_THRESHOLD, "b": AU_THRESHOLD, "c": AU_THRESHOLD}
