"""Unimodal branches trained first, then loaded (and frozen) in a fused run (Yu et al. 2023, 001).

The config keys (``init_branches``, ``freeze_branches``), the checkpoints a fold reads and the
start-up checks live in :mod:`affectflow.config.runs`; here the training job turns them into
model parameters. The key mapping from a unimodal model onto a branch is
:data:`affectflow.models.fusion.BRANCH_KEY_MAP`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from affectflow.config.runs import BRANCH_KEYS, branch_runs


def with_branch_checkpoints(run: Mapping, paths: list[str]) -> dict:
    """The run without :data:`~affectflow.config.runs.BRANCH_KEYS`, its ``model_params`` given
    ``branch_checkpoints`` (a path or None per modality, in ``init_branches`` order) and
    ``freeze_branches``.

    ``paths`` are the files of :func:`affectflow.config.runs.branch_model_paths` for the fold being
    trained, in order.
    """
    names = branch_runs(run)
    out = {k: copy.deepcopy(v) for k, v in run.items() if k not in BRANCH_KEYS}
    if not names:
        if run.get("freeze_branches"):
            raise ValueError("freeze_branches needs init_branches (the unimodal runs to load)")
        return out
    named = [n for n in names if n is not None]
    if len(paths) != len(named):
        raise ValueError(f"init_branches names {len(named)} run(s) ({', '.join(named)}) but "
                         f"{len(paths)} checkpoint path(s) were given: {paths}")
    given = iter(paths)
    checkpoints = [None if name is None else str(next(given)) for name in names]
    out["model_params"] = {**out.get("model_params", {}), "branch_checkpoints": checkpoints,
                           "freeze_branches": bool(run.get("freeze_branches", False))}
    return out
