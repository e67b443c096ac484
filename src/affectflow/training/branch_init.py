"""Unimodal branches trained first, then loaded (and frozen) in a fused run (Yu et al. 2023, 001).

The run keys (:data:`BRANCH_KEYS`) and what the training job turns them into (the model
parameters :data:`BRANCH_PARAMS`) live here; the checkpoints a fold reads and the start-up checks
are in :mod:`affectflow.config.runs`. The key mapping from a unimodal model onto a branch is
:data:`affectflow.models.fusion.BRANCH_KEY_MAP`. Torch-free: the workflow's start-up checks import it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

__all__ = ["BRANCH_KEYS", "BRANCH_PARAMS", "branch_runs", "check_freeze_needs_init", "with_branch_checkpoints"]

#: Run keys of the branch inits, read by the workflow and the training job, not by the settings.
BRANCH_KEYS = ("init_branches", "freeze_branches")
#: The ``model_params`` :func:`with_branch_checkpoints` gives the fusion model (its arguments).
BRANCH_PARAMS = ("branch_checkpoints", "freeze_branches")


def branch_runs(run: Mapping) -> list[str | None]:
    """The run's ``init_branches`` (one run name or None per modality); [] when it has none."""
    return list(run.get("init_branches") or [])


def check_freeze_needs_init(run: Mapping, where: str = "freeze_branches") -> None:
    """A run with ``freeze_branches`` and no ``init_branches`` fails, naming ``where`` (the key)."""
    if run.get("freeze_branches") and not branch_runs(run):
        raise ValueError(f"{where}: needs init_branches (the unimodal runs whose trained branches are frozen)")


def with_branch_checkpoints(run: Mapping, paths: list[str]) -> dict:
    """The run without :data:`BRANCH_KEYS`, its ``model_params`` given :data:`BRANCH_PARAMS`:
    ``branch_checkpoints`` (a path or None per modality, in ``init_branches`` order) and
    ``freeze_branches``.

    ``paths`` are the files of :func:`affectflow.config.runs.branch_model_paths` for the fold being
    trained, in order.
    """
    check_freeze_needs_init(run)
    names = branch_runs(run)
    out = {k: copy.deepcopy(v) for k, v in run.items() if k not in BRANCH_KEYS}
    if not names:
        return out
    named = [n for n in names if n is not None]
    if len(paths) != len(named):
        raise ValueError(f"init_branches names {len(named)} run(s) ({', '.join(named)}) but "
                         f"{len(paths)} checkpoint path(s) were given: {paths}")
    given = iter(paths)
    checkpoints = [None if name is None else str(next(given)) for name in names]
    branch_checkpoints, freeze = BRANCH_PARAMS
    out["model_params"] = {**out.get("model_params", {}), branch_checkpoints: checkpoints,
                           freeze: bool(run.get("freeze_branches", False))}
    return out
