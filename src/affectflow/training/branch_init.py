"""Unimodal branches trained first, then loaded (and frozen) in a fused run (Yu et al. 2023, 001).

The run keys (:data:`BRANCH_KEYS`) and what the training job turns them into (the model
parameters :data:`BRANCH_PARAMS`) live here; the checkpoints a fold reads and the start-up checks
are in :mod:`affectflow.config.runs`. The key mapping from a unimodal model onto a branch is
:data:`affectflow.models.fusion.BRANCH_KEY_MAP`. Torch-free: the workflow's start-up checks import it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path

from affectflow.training.best_fold import best_fold, fold_of

__all__ = ["BRANCH_FOLDS", "BRANCH_KEYS", "BRANCH_PARAMS", "branch_fold", "branch_runs", "check_freeze_needs_init",
           "with_branch_checkpoints"]

log = logging.getLogger(__name__)

#: Run keys of the branch inits, read by the workflow and the training job, not by the settings.
BRANCH_KEYS = ("init_branches", "freeze_branches", "branch_fold")
#: Which fold model of each named run a fused run's fold k loads (``branch_fold``): fold k's
#: (``same``, the default: no branch saw fold k's out-of-fold clips) or the run's best-scoring fold
#: (``best``, 001: "We freeze the unimodal's model parameters with the highest ρ"; every fused fold
#: then loads the same branches, which saw the other folds' out-of-fold clips).
BRANCH_FOLDS = ("same", "best")
#: The ``model_params`` :func:`with_branch_checkpoints` gives the fusion model (its arguments).
BRANCH_PARAMS = ("branch_checkpoints", "freeze_branches")


def branch_runs(run: Mapping) -> list[str | None]:
    """The run's ``init_branches`` (one run name or None per modality); [] when it has none."""
    return list(run.get("init_branches") or [])


def branch_fold(run: Mapping) -> str:
    """The run's ``branch_fold`` (:data:`BRANCH_FOLDS`; default ``same``); an unknown value fails."""
    value = run.get("branch_fold", "same")
    if value not in BRANCH_FOLDS:
        raise ValueError(f"branch_fold {value!r}; known: {', '.join(BRANCH_FOLDS)}")
    return value


def check_freeze_needs_init(run: Mapping, where: str = "freeze_branches") -> None:
    """A run with ``freeze_branches`` and no ``init_branches`` fails, naming ``where`` (the key)."""
    if run.get("freeze_branches") and not branch_runs(run):
        raise ValueError(f"{where}: needs init_branches (the unimodal runs whose trained branches are frozen)")


def with_branch_checkpoints(run: Mapping, paths: list[str]) -> dict:
    """The run without :data:`BRANCH_KEYS`, its ``model_params`` given :data:`BRANCH_PARAMS`:
    ``branch_checkpoints`` (a path or None per modality, in ``init_branches`` order) and
    ``freeze_branches``.

    ``paths`` are the files of :func:`affectflow.config.runs.branch_model_paths` for the fold being
    trained, in order: one ``model.pt`` per named run, or with ``branch_fold: best`` every fold's
    ``model.pt`` of each named run, of which the best-scoring fold's is taken
    (:func:`~affectflow.training.best_fold.best_fold`, from the folds' ``metrics.json``).
    """
    check_freeze_needs_init(run)
    names = branch_runs(run)
    out = {k: copy.deepcopy(v) for k, v in run.items() if k not in BRANCH_KEYS}
    if not names:
        return out
    named = [n for n in names if n is not None]
    if branch_fold(run) == "best":
        paths = _best_of_each_run(paths, named)
    if len(paths) != len(named):
        raise ValueError(f"init_branches names {len(named)} run(s) ({', '.join(named)}) but "
                         f"{len(paths)} checkpoint path(s) were given: {paths}")
    given = iter(paths)
    checkpoints = [None if name is None else str(next(given)) for name in names]
    branch_checkpoints, freeze = BRANCH_PARAMS
    out["model_params"] = {**out.get("model_params", {}), branch_checkpoints: checkpoints,
                           freeze: bool(run.get("freeze_branches", False))}
    return out


def _best_of_each_run(paths: list[str], named: list[str]) -> list[str]:
    """Of the fold ``model.pt`` files of each run in ``named`` (``.../<run>/fold<k>/model.pt``), the
    best-scoring fold's, one per run in order."""
    chosen = []
    for name in named:
        mine = [Path(p) for p in paths if Path(p).name == "model.pt" and Path(p).parent.parent.name == name]
        if not mine:
            raise ValueError(f"init_branches: no fold model of run {name!r} among {paths}")
        run_dir = mine[0].parent.parent
        best = best_fold(run_dir, [fold_of(p.parent) for p in mine])
        log.warning("branch of run %s: its best fold, %d (branch_fold best); this fold's out-of-fold score is "
                    "in-sample wherever that fold trained on its clips", name, best)
        chosen.append(str(run_dir / f"fold{best}" / "model.pt"))
    return chosen
