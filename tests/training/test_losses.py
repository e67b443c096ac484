"""Tests of the losses: values against numpy/scipy, masks, guards against constant predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from affectflow.training.losses import LOSSES, create_loss, label_mask


def ccc_np(t, p):
    return 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 2))
    p = 0.6 * t + rng.normal(scale=0.5, size=(50, 2)) + 0.3
    return t, p


def test_mse_ccc_pearson_values(pair):
    t, p = pair
    T, P = torch.tensor(t), torch.tensor(p)
    assert create_loss("mse")(P, T).item() == pytest.approx(np.mean((p - t) ** 2), rel=1e-5)
    expected_ccc = sum(1 - ccc_np(t[:, j], p[:, j]) for j in range(2))  # 003: summed over V and A
    assert create_loss("ccc")(P, T).item() == pytest.approx(expected_ccc, rel=1e-5)
    expected_r = np.mean([1 - pearsonr(t[:, j], p[:, j])[0] for j in range(2)])
    assert create_loss("pearson")(P, T).item() == pytest.approx(expected_r, rel=1e-5)


def test_bce_with_positive_weights():
    rng = np.random.default_rng(1)
    y = (rng.random((40, 3)) > 0.7).astype(float)
    p = rng.uniform(0.05, 0.95, (40, 3))
    w = np.array([1.0, 3.0, 0.5])
    expected = np.mean(-(w * y * np.log(p) + (1 - y) * np.log(1 - p)))
    got = create_loss("bce", pos_weight=w.tolist())(torch.tensor(p), torch.tensor(y)).item()
    assert got == pytest.approx(expected, rel=1e-5)
    unweighted = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y)).item()
    assert create_loss("bce")(torch.tensor(p), torch.tensor(y)).item() == pytest.approx(unweighted, rel=1e-5)
    logits = torch.logit(torch.tensor(p))
    assert create_loss("bce", logits=True)(logits, torch.tensor(y)).item() == pytest.approx(unweighted, rel=1e-5)


def test_invalid_frames_never_reach_the_loss():
    rng = np.random.default_rng(2)
    t = rng.uniform(-1, 1, (30, 2))
    t[[3, 7, 11]] = -5  # Aff-Wild2's invalid VA frames
    p = rng.uniform(-1, 1, (30, 2))
    mask = label_mask(torch.tensor(t), "va")
    assert (~mask).sum() == 6 and not mask[3].any()
    keep = np.ones(30, bool)
    keep[[3, 7, 11]] = False
    for name in ("mse", "ccc", "pearson"):
        got = create_loss(name)(torch.tensor(p), torch.tensor(t), mask).item()
        expected = create_loss(name)(torch.tensor(p[keep]), torch.tensor(t[keep])).item()
        assert got == pytest.approx(expected, rel=1e-6), name
    au = np.zeros((5, 12))
    au[2, 4] = -1  # a frame with any -1 is dropped whole
    m = label_mask(torch.tensor(au), "au")
    assert not m[2].any() and m[[0, 1, 3, 4]].all()
    nan = torch.tensor([[0.2, float("nan")]])
    assert label_mask(nan, "emi").tolist() == [[True, False]]
    with pytest.raises(ValueError, match="unknown task"):
        label_mask(nan, "xyz")


@pytest.mark.parametrize("name", LOSSES.names())
def test_constant_predictions_and_empty_masks_give_finite_gradients(name):
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    for pred in (torch.full((4, 2), 0.5, requires_grad=True), torch.zeros(4, 2, requires_grad=True)):
        loss = create_loss(name)(pred, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all(), name
    # nothing valid: zero loss, still differentiable, no NaN from the -5 labels
    pred = torch.rand(4, 2, requires_grad=True)
    loss = create_loss(name)(pred, torch.full((4, 2), -5.0), torch.zeros(4, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_unknown_loss_and_parameters():
    with pytest.raises(KeyError, match="known: bce, ccc, mse, pearson"):
        create_loss("huber")
    with pytest.raises(TypeError, match="alpha"):
        create_loss("mse", alpha=1)
    with pytest.raises(ValueError, match="shape"):
        create_loss("mse")(torch.zeros(3, 2), torch.zeros(3, 3))


def test_nan_predictions_at_masked_steps_do_not_leak():
    pred = torch.tensor([[0.1, 0.2], [float("nan"), float("nan")], [0.4, 0.9]], requires_grad=True)
    target = torch.tensor([[0.0, 0.3], [-5.0, -5.0], [0.5, 1.0]])
    mask = label_mask(target, "va")
    for name in ("mse", "ccc", "pearson", "bce"):
        loss = create_loss(name)(pred, target.clamp(0, 1), mask)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all(), name
        pred.grad = None
