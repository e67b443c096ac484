"""Metrics checked against scipy / scikit-learn and an independent CCC formula."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from affectflow.metrics import (
    AU_THRESHOLD,
    UndefinedMetricWarning,
    ccc,
    ccc_per_target,
    f1_per_au,
    mean_f1,
    mean_pearson,
    pearson_per_target,
)

NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def reference_ccc(t, p):
    """CCC from numpy's covariance matrix with population normalisation (bias=True)."""
    c = np.cov(t, p, bias=True)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (np.mean(t) - np.mean(p)) ** 2)


def test_pearson_matches_scipy(rng):
    t = rng.random((200, 4))
    p = 0.5 * t + rng.normal(scale=[0.05, 0.2, 0.5, 2.0], size=(200, 4))
    got = pearson_per_target(t, p, NAMES)
    assert list(got) == NAMES
    for j, name in enumerate(NAMES):
        assert got[name] == pytest.approx(pearsonr(t[:, j], p[:, j])[0], abs=1e-12)
    expected_mean = np.mean([pearsonr(t[:, j], p[:, j])[0] for j in range(4)])
    assert mean_pearson(t, p, NAMES) == pytest.approx(expected_mean, abs=1e-12)


def test_pearson_sign_and_extremes(rng):
    t = rng.random((50, 2))
    got = pearson_per_target(t, np.c_[3 * t[:, 0] + 1, -t[:, 1]], ["pos", "neg"])
    assert got["pos"] == pytest.approx(1.0)
    assert got["neg"] == pytest.approx(-1.0)


def test_pearson_constant_prediction_is_nan_with_warning(rng):
    t = rng.random((30, 4))
    p = rng.random((30, 4))
    p[:, 2] = 0.4
    with pytest.warns(UndefinedMetricWarning, match=r"target 'c'.*constant prediction"):
        got = pearson_per_target(t, p, NAMES)
    assert np.isnan(got["c"])
    assert not np.isnan(got["a"])
    with pytest.warns(UndefinedMetricWarning, match="'c'"):
        assert np.isnan(mean_pearson(t, p, NAMES))


def test_pearson_constant_truth_is_nan_with_warning(rng):
    t = rng.random((30, 4))
    t[:, 0] = 1.0
    with pytest.warns(UndefinedMetricWarning, match=r"target 'a'.*constant truth"):
        got = pearson_per_target(t, rng.random((30, 4)), NAMES)
    assert np.isnan(got["a"])


def test_no_warning_on_regular_data(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pearson_per_target(rng.random((20, 4)), rng.random((20, 4)), NAMES)


def test_shape_mismatch_names_shapes(rng):
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(10, 3\)"):
        pearson_per_target(rng.random((10, 4)), rng.random((10, 3)), NAMES)
    with pytest.raises(ValueError, match=r"\(5,\).*\(6,\)"):
        ccc(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match=r"3 target names"):
        pearson_per_target(rng.random((10, 4)), rng.random((10, 4)), NAMES[:3])


def test_nan_input_rejected(rng):
    p = rng.random((10, 4))
    p[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"y_pred contains non-finite values.*'b'"):
        pearson_per_target(rng.random((10, 4)), p, NAMES)


def test_ccc_matches_independent_formula(rng):
    t = rng.normal(size=500)
    p = 0.7 * t + 0.3 + rng.normal(scale=0.5, size=500)
    assert ccc(t, p) == pytest.approx(reference_ccc(t, p), abs=1e-12)
    T = rng.normal(size=(100, 2))
    P = T * [1.0, 0.5] + rng.normal(size=(100, 2))
    got = ccc_per_target(T, P, ["valence", "arousal"])
    assert got["valence"] == pytest.approx(reference_ccc(T[:, 0], P[:, 0]), abs=1e-12)
    assert got["arousal"] == pytest.approx(reference_ccc(T[:, 1], P[:, 1]), abs=1e-12)


def test_ccc_known_cases(rng):
    t = rng.normal(size=100)
    assert ccc(t, t) == pytest.approx(1.0)
    shifted = ccc(t, t + 0.5)
    assert shifted < 1.0
    # Pearson is blind to the shift; CCC is not.
    assert pearsonr(t, t + 0.5)[0] == pytest.approx(1.0)
    centred = t - t.mean()
    assert ccc(centred, -centred) == pytest.approx(-1.0)  # mirrored about a common mean
    # Constant prediction against varying truth: zero covariance, defined value 0.
    assert ccc(t, np.full_like(t, 0.3)) == pytest.approx(0.0)


def test_ccc_undefined_when_both_same_constant():
    with pytest.warns(UndefinedMetricWarning, match="'arousal'"):
        got = ccc_per_target(
            np.full((5, 2), [0.1, 0.2]),
            np.c_[np.linspace(0, 1, 5), np.full(5, 0.2)],
            ["valence", "arousal"],
        )
    assert np.isnan(got["arousal"])
    assert got["valence"] == pytest.approx(0.0)


def test_f1_matches_sklearn_macro(rng):
    t = (rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.8]).astype(int)
    prob = np.clip(0.6 * t + rng.random((300, 4)) * 0.7, 0, 1)
    got = f1_per_au(t, prob, NAMES)
    pred = (prob >= 0.5).astype(int)
    for j, name in enumerate(NAMES):
        assert got[name] == pytest.approx(f1_score(t[:, j], pred[:, j]))
    assert mean_f1(t, prob, NAMES) == pytest.approx(f1_score(t, pred, average="macro"))
    strict = f1_per_au(t, prob, NAMES, threshold=0.9)
    pred9 = (prob >= 0.9).astype(int)
    assert strict["a"] == pytest.approx(f1_score(t[:, 0], pred9[:, 0]))
    assert strict != got


def test_f1_undefined_au_is_nan_with_warning():
    t = np.array([[0, 1], [0, 0], [0, 1]])
    prob = np.array([[0.1, 0.9], [0.2, 0.1], [0.3, 0.8]])
    with pytest.warns(UndefinedMetricWarning, match=r"F1.*'AU1'"):
        got = f1_per_au(t, prob, ["AU1", "AU2"])
    assert np.isnan(got["AU1"])
    assert got["AU2"] == pytest.approx(1.0)


def test_f1_rejects_non_binary_truth():
    with pytest.raises(ValueError, match="binary"):
        f1_per_au(np.array([[0.5], [1.0]]), np.array([[0.2], [0.9]]), ["AU1"])


def test_the_challenge_au_threshold_is_half_and_inclusive():
    # one constant (AU_THRESHOLD) is the F1 rule of the metric, the ensemble and the submission writer
    assert AU_THRESHOLD == 0.5
    t = np.array([[1], [0], [1]])
    assert f1_per_au(t, np.array([[0.5], [0.4999], [0.7]]), ["AU1"]) == {"AU1": 1.0}
