"""Training losses by name, masked and guarded against constant predictions.

Every loss takes ``(pred, target, mask=None)`` with ``mask`` a boolean array of the target's
shape (or broadcastable to it) that is False where the label is invalid (Aff-Wild2's -5 VA and
-1 AU frames, padding); masked elements never reach the loss. A batch without one valid element
gives a zero loss that still depends on ``pred`` (so backward works) instead of NaN.
"""

from __future__ import annotations

import torch

from affectflow.registry import Registry
from affectflow.tasks import task_spec
from affectflow.training.settings import CLIP_TASKS, FRAME_TASKS

LOSSES: Registry = Registry("loss")

_EPS = 1e-8


def create_loss(name: str, **params):
    """The loss function registered under ``name``, with its parameters bound."""
    factory = LOSSES.get(name)
    return factory(**params)


def _flatten(pred: torch.Tensor, target: torch.Tensor, mask):
    """(N, K) views of pred, target and a float weight (1 valid, 0 invalid) over the last axis."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    k = pred.shape[-1]
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    mask = torch.broadcast_to(mask if mask.dim() == target.dim() else mask.unsqueeze(-1), target.shape)
    p, t, w = pred.reshape(-1, k).float(), target.reshape(-1, k).float(), mask.reshape(-1, k).float()
    # Invalid labels (-5, -1, NaN) and predictions at padded steps must not leak even through 0 * NaN.
    t = torch.where(w > 0, t, torch.zeros_like(t))
    p = torch.where(w > 0, p, p.detach().nan_to_num(0.0, 0.0, 0.0))
    return p, t, w


@LOSSES.register("mse")
def mse(**params):
    """Mean squared error over the valid elements."""
    _no_params("mse", params)

    def loss(pred, target, mask=None):
        p, t, w = _flatten(pred, target, mask)
        return ((p - t) ** 2 * w).sum() / w.sum().clamp_min(1.0)

    return loss


def _moments(p, t, w):
    n = w.sum(0).clamp_min(1.0)
    mp, mt = (p * w).sum(0) / n, (t * w).sum(0) / n
    dp, dt = (p - mp) * w, (t - mt) * w
    return mp, mt, (dp * dt).sum(0) / n, (dp * dp).sum(0) / n, (dt * dt).sum(0) / n


@LOSSES.register("ccc")
def ccc(*, reduction: str = "sum", **params):
    """1 - CCC per target dimension (population moments), summed over dimensions (Liu et al. 2023, 003) or averaged.

    The denominator carries a small epsilon: truth and prediction at the same constant give a
    loss of 1 with finite gradients instead of 0/0.
    """
    _no_params("ccc", params)
    _check_reduction(reduction)

    def loss(pred, target, mask=None):
        p, t, w = _flatten(pred, target, mask)
        mp, mt, cov, vp, vt = _moments(p, t, w)
        per_dim = (1.0 - 2.0 * cov / (vp + vt + (mp - mt) ** 2 + _EPS)) * (w.sum(0) > 0)
        return per_dim.sum() if reduction == "sum" else per_dim.mean()

    return loss


@LOSSES.register("pearson")
def pearson(*, reduction: str = "mean", **params):
    """1 - Pearson r per target dimension. A constant prediction has r undefined: the variances
    carry an epsilon so it counts as r = 0 with a finite gradient (002's failure mode)."""
    _no_params("pearson", params)
    _check_reduction(reduction)

    def loss(pred, target, mask=None):
        p, t, w = _flatten(pred, target, mask)
        _, _, cov, vp, vt = _moments(p, t, w)
        # A dimension without one valid label contributes nothing.
        per_dim = (1.0 - cov / torch.sqrt((vp + _EPS) * (vt + _EPS))) * (w.sum(0) > 0)
        return per_dim.sum() if reduction == "sum" else per_dim.mean()

    return loss


@LOSSES.register("bce")
def bce(*, pos_weight=None, logits: bool = False, **params):
    """Binary cross-entropy over valid elements, with optional per-target positive weights (Deng et al. 2023, 004).

    ``logits=False`` (default) expects probabilities (models ending in a sigmoid); they are clamped
    away from 0 and 1 so the log never gives inf.
    """
    _no_params("bce", params)
    weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)

    def loss(pred, target, mask=None):
        p, t, w = _flatten(pred, target, mask)
        pw = torch.ones(p.shape[-1], device=p.device) if weight is None else weight.to(p.device)
        if weight is not None and len(pw) != p.shape[-1]:
            raise ValueError(f"pos_weight has {len(pw)} values for {p.shape[-1]} targets")
        if logits:
            log_p, log_not_p = torch.nn.functional.logsigmoid(p), torch.nn.functional.logsigmoid(-p)
        else:
            p = p.clamp(1e-7, 1 - 1e-7)
            log_p, log_not_p = torch.log(p), torch.log1p(-p)
        elementwise = -(pw * t * log_p + (1 - t) * log_not_p)
        return (elementwise * w).sum() / w.sum().clamp_min(1.0)

    return loss


def _check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def _no_params(name: str, params: dict) -> None:
    if params:
        raise TypeError(f"loss {name!r}: unknown parameter(s) {sorted(params)}")


def label_mask(target: torch.Tensor, task: str) -> torch.Tensor:
    """Validity of each label element: NaN labels are invalid (clip tasks with a missing value); a
    per-frame task's frame is invalid as a whole when one of its labels is NaN or the task's invalid
    code (:attr:`affectflow.tasks.TaskSpec.invalid`: -5 VA, -1 AU)."""
    valid = torch.isfinite(target)
    if task in CLIP_TASKS:
        return valid
    if task not in FRAME_TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(CLIP_TASKS + FRAME_TASKS)}")
    valid &= target != task_spec(task).invalid
    return valid.all(-1, keepdim=True).expand_as(target)
